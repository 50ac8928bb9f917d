"""Figures of a neuron card, and its export to one self-contained HTML file.

The dashboard's card page and ``interp card --html`` draw the same figures from the same
``NeuronCard`` (``interp.analyses.neurons.card``)."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from interp.viz.atlas import context_html, scale_of

MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
QUADRANT_TITLES = {"g+u+": "gate open, up +", "g+u-": "gate open, up −", "g-u+": "gate closed, up +",
                   "g-u-": "gate closed, up −"}


def token_bars(tokens: list[dict], title: str, color: str, k: int = 12) -> go.Figure:
    part = tokens[:k]
    fig = go.Figure(go.Bar(x=[t["score"] for t in part], y=[repr(t["token"]) for t in part], orientation="h",
                           marker_color=color, hovertext=[f"token id {t['token_id']}" for t in part]))
    fig.update_layout(title=title, yaxis={"autorange": "reversed", "type": "category"}, height=24 * len(part) + 80,
                      margin=MARGIN)
    return fig


def decoding_figures(data: dict) -> dict[str, go.Figure]:
    out = {"promoted": token_bars(data["promoted"], f"promoted ({data['promoted_side']})", "#2b6cb0"),
           "suppressed": token_bars(data["suppressed"], "suppressed", "#c53030")}
    for side, tokens in data["inputs"].items():
        out[side] = token_bars(tokens, {"up+": "excite up", "up-": "inhibit up", "gate+": "open the gate",
                                        "gate-": "close the gate"}.get(side, side),
                               "#2f855a" if side.endswith("+") else "#975a16")
    return out


def histogram(data: dict, title: str) -> go.Figure:
    h = data["histogram"]
    fig = go.Figure(go.Bar(x=h["centers"], y=h["counts"], width=[b - a for a, b in zip(h["lo"], h["hi"])],
                           marker_color="#4a5568", hovertext=[f"[{a:.3g}, {b:.3g})" for a, b in zip(h["lo"], h["hi"])]))
    fig.update_layout(title=title, yaxis_type="log", height=260, xaxis_title="activation", yaxis_title="positions",
                      margin=MARGIN)
    return fig


def quadrant_bar(quadrants: dict) -> go.Figure:
    names = list(quadrants)
    fig = go.Figure(go.Bar(x=[QUADRANT_TITLES.get(n, n) for n in names], y=[quadrants[n]["share"] for n in names],
                           marker_color=["#2b6cb0", "#c53030", "#90cdf4", "#feb2b2"],
                           text=[f"{quadrants[n]['share']:.1%}" for n in names], textposition="auto"))
    fig.update_layout(title="Share of tokens by gate/up sign", yaxis_tickformat=".0%", height=260, margin=MARGIN)
    return fig


def tracing_line(run: dict, layer: int) -> go.Figure:
    xs, ys = list(run["by_layer"]), list(run["by_layer"].values())
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines+markers", line_color="#4a5568", name="MLP"))
    fig.add_trace(go.Scatter(x=[layer], y=[run["effect"]], mode="markers", marker={"size": 14, "color": "#dd6b20"},
                             name=f"layer {layer}"))
    fig.update_layout(title="Indirect effect of each MLP layer (last subject token)", height=260,
                      xaxis_title="layer", yaxis_title="indirect effect", margin=MARGIN, showlegend=False)
    return fig


def dose_response_figure(table: pd.DataFrame, target: str) -> go.Figure:
    """Δ log p(target) and KL to the unclamped distribution against the clamp value."""
    fig = go.Figure([
        go.Scatter(x=table.value, y=table.dlogp, mode="lines+markers", name=f"Δ log p({target!r})",
                   line_color="#2b6cb0"),
        go.Scatter(x=table.value, y=table.kl, mode="lines+markers", name="KL(unclamped ‖ clamped)",
                   line_color="#c53030", yaxis="y2"),
    ])
    fig.update_layout(title="Clamp dose-response on neutral prompts", xaxis_title="clamp value (activation)",
                      yaxis={"title": "Δ log p"}, yaxis2={"title": "KL (nats)", "overlaying": "y", "side": "right"},
                      height=320, margin=MARGIN, legend={"orientation": "h", "y": -0.25})
    return fig


def verify_scatter(verify: dict) -> go.Figure:
    t = verify["table"]
    fig = go.Figure(go.Scatter(x=t.predicted, y=t.activation, mode="markers+text", text=[str(n) for n in t.neuron],
                               textposition="top center", marker_color="#2b6cb0"))
    lo = float(min(t.predicted.min(), t.activation.min()))
    hi = float(max(t.predicted.max(), t.activation.max()))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"dash": "dot", "color": "#a0aec0"}))
    fig.update_layout(title=f"{verify['method']} score vs activation patching", xaxis_title=f"{verify['method']}",
                      yaxis_title="activation patching", height=320, margin=MARGIN, showlegend=False)
    return fig


def contexts_html(ctxs: list[dict]) -> str:
    scale = scale_of(ctxs)
    return "".join(context_html(c, scale) for c in ctxs)


# --- export -----------------------------------------------------------------------------------

def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:+.4g}"
    return "" if v is None else str(v)


def card_html(card, clamp: pd.DataFrame | None = None, clamp_target: str | None = None) -> str:
    """The card as one HTML document: every section, its figures with plotly.js inline (no network)."""
    first = [True]

    def fig(f: go.Figure) -> str:
        out = f.to_html(full_html=False, include_plotlyjs="inline" if first[0] else False)
        first[0] = False
        return out

    nid, s = card.neuron, card.sections
    parts = [f"<h1>Neuron {nid} of {html.escape(card.model)}</h1>",
             f"<p>weights {html.escape(card.weights_hash)}</p>"]
    for key, section in s.items():
        parts.append(f"<h2 id='{key}'>{html.escape(section.title)}</h2>")
        if not section.available and not (key == "clamp" and clamp is not None):
            parts.append(f"<p class='missing'>Not computed yet: {html.escape(section.missing or '')}</p>")
            continue
        d = section.data or {}
        if key == "identity":
            parts.append(_table([{"side": k, **v} for k, v in d["norms"].items()],
                                ["side", "value", "layer_median", "ratio"]))
            parts.append(f"<p>{html.escape(d['formula'])}; activation {html.escape(str(d['activation']))}</p>")
        elif key == "decoding":
            parts.append(f"<p>{html.escape(d['note'])}</p>")
            parts += [fig(f) for f in decoding_figures(d).values()]
        elif key == "activations":
            st = d["stats"]
            parts.append(_table([{k: v for k, v in st.items() if k != "quantiles"} | st["quantiles"]],
                                [*[k for k in st if k != "quantiles"], *st["quantiles"]]))
            parts.append(fig(histogram(d, f"Activation histogram over {d['tokens']:,} tokens")))
            for which in ("top", "bottom"):
                parts.append(f"<h3>{which} contexts</h3>" + contexts_html(d["contexts"][which]))
            if "quadrants" in d:
                parts.append(fig(quadrant_bar(d["quadrants"])))
                for name, q in d["quadrants"].items():
                    parts.append(f"<h3>{QUADRANT_TITLES[name]} ({q['share']:.1%})</h3>" + contexts_html(q["contexts"]))
        elif key == "patching":
            parts.append(_table(d["runs"], ["method", "dataset", "n_pairs", "metric", "score", "rank", "of"]))
        elif key == "factual":
            parts.append(_table(d["sets"], ["facts", "n_facts", "mean_dla", "rank", "of"]))
            for entry in d["sets"]:
                if "pushes" in entry:
                    parts.append("<h3>pushes</h3>" + _table(entry["pushes"], ["prompt", "answer", "dla"]))
                    parts.append("<h3>suppresses</h3>" + _table(entry["suppresses"], ["prompt", "answer", "dla"]))
            if d["fixes"]:
                parts.append(_table(d["fixes"], ["mean_effect", "rank", "chosen"]))
        elif key == "tracing":
            parts.append(_table(d["runs"], ["facts", "n_facts", "effect", "rank", "of"]))
            parts.append(fig(tracing_line(d["runs"][0], nid.layer)))
        elif key == "unlearning":
            cols = [c for c in d["edits"][0] if c.startswith(("d_", "act_")) or c == "variant"]
            parts.append(_table(d["edits"], cols))
        elif key == "bigram":
            rows = [{"run": r["path"].rsplit("/", 1)[-1], **{f"{p} kept": r[p]["kept"] for p in ("gate", "up", "down")
                                                           if p in r}} for r in d["runs"]]
            parts.append(_table(rows, list(rows[0])))
        elif key == "clamp" and clamp is not None:
            parts.append(fig(dose_response_figure(clamp, clamp_target or "")))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}table{border-collapse:collapse;"
             "margin:.5em 0}td,th{border:1px solid #cbd5e0;padding:2px 6px;font-size:13px}.missing{color:#718096}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Neuron {nid} · {html.escape(card.model)}"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>")


def export_html(card, path: str | Path, **kw) -> Path:
    path = Path(path)
    path.write_text(card_html(card, **kw), encoding="utf-8")
    return path
