"""Figures of a neuron card, and its export to one self-contained HTML file.

The dashboard's card page and ``interp card --html`` draw the same figures from the same
``NeuronCard`` (``interp.analyses.neurons.card``)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from interp.viz.atlas import context_html, scale_of

MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
QUADRANT_TITLES = {"g+u+": "gate open, up +", "g+u-": "gate open, up −", "g-u+": "gate closed, up +",
                   "g-u-": "gate closed, up −"}


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


# --- light figures: inline SVG, for the card page (no plotly.js to load when a card opens) ----------

def svg_bars(heights: list[float | int], labels: list[str], title: str, log: bool = False,
             colors: list[str] | None = None,
             ticks: list[tuple[int, str]] | None = None, width: int = 520, height: int = 170,
             fmt: str = "{:g}") -> str:
    """A bar chart as inline SVG: one bar per value (hover: its label and value), optional log scale,
    x tick labels at ``ticks`` (index, text)."""
    import math

    n = max(len(heights), 1)
    top, bottom, left = 22, 22, 4
    inner_h, inner_w = height - top - bottom, width - 2 * left
    scaled = [math.log10(1 + h) if log else h for h in heights]
    peak = max(scaled) if scaled and max(scaled) > 0 else 1.0
    bar_w = inner_w / n
    bars = []
    for i, (h, s) in enumerate(zip(heights, scaled)):
        bh = inner_h * s / peak
        color = colors[i] if colors else "#4a5568"
        bars.append(f'<rect x="{left + i * bar_w:.1f}" y="{top + inner_h - bh:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                    f'height="{bh:.1f}" fill="{color}"><title>{html.escape(labels[i])}: {fmt.format(h)}</title></rect>')
    tick = "".join(f'<text x="{left + (i + 0.5) * bar_w:.1f}" y="{height - 6}" font-size="10" text-anchor="middle" '
                   f'fill="#4a5568">{html.escape(t)}</text>' for i, t in (ticks or []))
    return (f'<svg width="{width}" height="{height}" style="font-family:sans-serif">'
            f'<text x="{left}" y="14" font-size="13" font-weight="600" fill="#1a202c">{html.escape(title)}</text>'
            f'{"".join(bars)}<line x1="{left}" x2="{width - left}" y1="{top + inner_h}" y2="{top + inner_h}" '
            f'stroke="#a0aec0"/>{tick}</svg>')


def histogram_svg(data: dict) -> str:
    h = data["histogram"]
    labels = [f"[{a:.3g}, {b:.3g})" for a, b in zip(h["lo"], h["hi"])]
    centers = h["centers"]
    ticks = []
    for i in range(0, len(centers), max(1, len(centers) // 6)):
        ticks.append((i, f"{centers[i]:.2g}"))
    colors = ["#2b6cb0" if c >= 0 else "#c53030" for c in centers]
    return svg_bars(h["counts"], labels, "Activation histogram (log count; hover a bar)", log=True, colors=colors,
                    ticks=ticks)


def quadrants_svg(quadrants: dict) -> str:
    names = list(quadrants)
    return svg_bars([quadrants[n]["share"] for n in names], [QUADRANT_TITLES.get(n, n) for n in names],
                    "Share of tokens by gate/up sign", colors=["#2b6cb0", "#c53030", "#90cdf4", "#feb2b2"],
                    ticks=[(i, n) for i, n in enumerate(names)], width=320, fmt="{:.1%}")


def tracing_svg(run: dict, layer: int) -> str:
    layers = list(run["by_layer"])
    values = [max(v, 0.0) for v in run["by_layer"].values()]
    colors = ["#dd6b20" if l == layer else "#a0aec0" for l in layers]
    step = max(1, len(layers) // 10)
    return svg_bars(values, [f"layer {l}" for l in layers], "Indirect effect of each MLP layer (last subject token)",
                    colors=colors, ticks=[(i, str(l)) for i, l in enumerate(layers) if i % step == 0 or l == layer],
                    fmt="{:.3f}")




# --- the card as HTML: the dashboard page draws it section by section, the export as one file -------

def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:+.4g}"
    return "" if v is None else str(v)


def table_html(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table class='card'><tr>{head}</tr>{body}</table>"


def chips(tokens: list[dict], rgb: str) -> str:
    """Tokens as shaded chips (the shade: |score| over the list's largest; hover: score and id)."""
    if not tokens:
        return "<i>none</i>"
    peak = max(abs(t["score"]) for t in tokens) or 1.0
    return " ".join(
        f'<span title="{t["score"]:+.3f} (id {t["token_id"]})" style="background:rgba({rgb},'
        f'{0.15 + 0.6 * abs(t["score"]) / peak:.2f});padding:1px 5px;border-radius:4px;font-family:monospace;'
        f'white-space:pre">{html.escape(repr(t["token"]))}</span>' for t in tokens)


def metrics_html(items: list[tuple[str, str, str]]) -> str:
    """Big numbers in a row: (label, value, note)."""
    cells = "".join(f'<div style="min-width:120px"><div style="font-size:13px;color:#4a5568">{html.escape(l)}</div>'
                    f'<div style="font-size:28px">{html.escape(v)}</div>'
                    f'<div style="font-size:12px;color:#718096">{html.escape(n)}</div></div>' for l, v, n in items)
    return f'<div style="display:flex;gap:28px;flex-wrap:wrap;margin:6px 0 10px 0">{cells}</div>'


INPUT_NAMES = {"up+": "excite up", "up-": "inhibit up", "gate+": "open the gate", "gate-": "close the gate"}


def section_body(card, key: str) -> str:
    """One section's content as HTML (no heading), or the command that fills it."""
    section, nid = card.sections[key], card.neuron
    d = section.data
    if d is None:  # the command in `backticks` as code
        text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(section.missing or ""))
        return f"<p class='missing'>Not computed yet: {text}</p>"
    if key == "identity":
        items = [("layer · index", f"{d['layer']} · {d['index']}", "")]
        items += [(f"‖{side}‖", f"{n['value']:.3f}", f"{n['ratio'] - 1:+.0%} vs layer median" if n["ratio"] else "")
                  for side, n in d["norms"].items()]
        items.append(("activation", str(d["activation"]), f"{d['n_layers']} layers × {d['d_mlp']} neurons"))
        return metrics_html(items) + f"<p class='note'>{html.escape(d['formula'])}</p>"
    if key == "decoding":
        blocks = [f"<b>Promoted</b> ({d['promoted_side']})<br>{chips(d['promoted'], '43,108,176')}",
                  f"<b>Suppressed</b><br>{chips(d['suppressed'], '197,48,48')}"]
        blocks += [f"<b>Input side: {INPUT_NAMES.get(side, side)}</b> ({side})<br>"
                   f"{chips(tokens, '47,133,90' if side.endswith('+') else '151,90,22')}"
                   for side, tokens in d["inputs"].items()]
        return f"<p class='note'>{html.escape(d['note'])}</p>" + "".join(
            f'<div style="margin:0 0 10px 0;line-height:1.9">{b}</div>' for b in blocks)
    if key == "activations":
        st_ = d["stats"]
        dens = f"{st_['density']:.1%}" if st_["density"] is not None else "n/a"
        out = [metrics_html([("max", f"{st_['max']:+.3f}", ""), ("min", f"{st_['min']:+.3f}", ""),
                             ("mean", f"{st_['mean']:+.3f}", ""), ("std", f"{st_['std']:.3f}", ""),
                             ("median", f"{st_['quantiles'].get('q50', float('nan')):+.3f}", ""),
                             ("density", dens, "|act| ≥ 10% of its peak")]),
               f"<p class='note'>Over {d['tokens']:,} tokens of <code>{html.escape(str(d['corpus']))}</code>. "
               "Density: the share of positions where |activation| is at least a tenth of the neuron's peak (not "
               "the share of positive values, about half for any signed GLU neuron).</p>",
               f'<div style="display:flex;gap:24px;flex-wrap:wrap">{histogram_svg(d)}'
               f'{quadrants_svg(d["quadrants"]) if "quadrants" in d else ""}</div>']
        out += [f"<p><b>{title}</b> (blue positive, red negative; the example's token is outlined)</p>"
                + contexts_html(d["contexts"][which])
                for which, title in (("top", "Top activations"), ("bottom", "Most negative activations"))]
        if "quadrants" in d:
            out.append("<p><b>By gate/up sign quadrant</b>: the strongest |activation| in each</p>")
            out += [f"<p><i>{QUADRANT_TITLES[name]}</i>: {q['share']:.1%} of tokens</p>"
                    + contexts_html(q["contexts"]) for name, q in d["quadrants"].items()]
        return "".join(out)
    if key == "patching":
        return table_html(d["runs"], ["method", "dataset", "n_pairs", "metric", "score", "rank", "of"]) + (
            "<p class='note'>score: the neuron's mean over pairs; rank: by |score| among the layer's neurons.</p>")
    if key == "factual":
        out = []
        for e in d["sets"]:
            out.append(f"<p><code>{html.escape(e['facts'])}</code>: mean DLA <b>{e['mean_dla']:+.4f}</b>, rank "
                       f"{e['rank']} of {e['of']} in layer {nid.layer} over {e['n_facts']} facts</p>")
            if "pushes" in e:
                out.append('<div style="display:flex;gap:24px;flex-wrap:wrap"><div><b>Pushes most</b>'
                           + table_html(e["pushes"], ["prompt", "answer", "dla"]) + "</div><div><b>Suppresses most"
                           "</b>" + table_html(e["suppresses"], ["prompt", "answer", "dla"]) + "</div></div>")
        out += [f"<p>Factual fix: mean effect on the answer {f['mean_effect']:+.4f} (rank {f['rank']}); "
                f"{'one of' if f['chosen'] else 'not among'} the neurons the fix scales.</p>" for f in d["fixes"]]
        return "".join(out)
    if key == "tracing":
        run = d["runs"][0]
        return (f"<p>Layer {nid.layer}'s MLP: indirect effect <b>{run['effect']:+.3f}</b>, rank {run['rank']} of "
                f"{run['of']} layers (<code>{html.escape(run['facts'])}</code>, {run['n_facts']} facts). "
                f"{html.escape(d['note'])}.</p>" + tracing_svg(run, nid.layer))
    if key == "unlearning":
        show = [c for c in d["edits"][0] if c == "variant" or c.startswith(("d_", "act_"))]
        return ("<p class='note'>d_*: relative change |ΔW|/|W| of its gate row, up row and down column; act_*: its "
                "mean activation at the last token of the forget and the retain prompts, before and after.</p>"
                + table_html(d["edits"], show))
    if key == "bigram":
        out = []
        for r in d["runs"]:
            items = [(f"{p} kept", f"{r[p]['kept']:.1%}", f"layer {r[p]['layer_mean']:.1%}")
                     for p in ("gate", "up", "down") if p in r]
            out.append(metrics_html(items + [("whole subnetwork", f"{r['kept_fraction']:.1%}", f"{r['steps']} steps")]))
        return "".join(out)
    if key == "clamp":
        return f"<p>Dose-response for {html.escape(repr(d.get('target', '')))} computed.</p>"
    return ""


STYLE = ("table.card{border-collapse:collapse;margin:.4em 0}table.card td,table.card th{border:1px solid #cbd5e0;"
         "padding:2px 6px;font-size:13px}.missing{color:#4a5568;background:#ebf8ff;padding:10px;border-radius:6px}"
         ".note{color:#718096;font-size:13px}")


def card_html(card, clamp: pd.DataFrame | None = None, clamp_target: str | None = None) -> str:
    """The card as one HTML document: every section; the dose-response (when given) as a plotly figure with
    plotly.js inline (the file needs no network)."""
    nid = card.neuron
    parts = [f"<h1>Neuron {nid} of {html.escape(card.model)}</h1>", f"<p class='note'>weights {card.weights_hash}</p>"]
    for key, section in card.sections.items():
        parts.append(f"<h2 id='{key}'>{html.escape(section.title)}</h2>")
        if key == "clamp" and clamp is not None:
            parts.append(dose_response_figure(clamp, clamp_target or "").to_html(full_html=False,
                                                                                  include_plotlyjs="inline"))
        else:
            parts.append(section_body(card, key))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Neuron {nid} · {html.escape(card.model)}"
            f"</title><style>body{{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}}{STYLE}</style>"
            f"</head><body>{''.join(parts)}</body></html>")


def export_html(card, path: str | Path, **kw) -> Path:
    path = Path(path)
    path.write_text(card_html(card, **kw), encoding="utf-8")
    return path
