"""The neurons' card sections: identity (weights), decoding (LM head), activations (the atlas) and the clamp
dose-response. Each registers its builder, its HTML, its terminal line and its export fields
(Neuronpedia's names) with ``interp.analyses.sections``; the look-ups are ``read``'s."""

from __future__ import annotations

import math

from interp.analyses.neurons.read import (
    atlas_layers,
    atlas_row,
    contexts,
    has_examples,
    histogram,
    neuron_explanation,
    neuron_tokens,
    typical_activation,
)
from interp.analyses.sections import CardContext, Section, card_section
from interp.render import chips, contexts_html, esc, metrics_html, note, svg_bars
from interp.tracing.reducers import QUADRANTS

CONTEXT_K = 5  # top and bottom contexts on the card
QUADRANT_CONTEXT_K = 2
WIDTH = 10  # tokens either side of a context (the atlas stores 10)
QUADRANT_TITLES = {"g+u+": "gate open, up +", "g+u-": "gate open, up −", "g-u+": "gate closed, up +",
                   "g-u-": "gate closed, up −"}
INPUT_NAMES = {"up+": "excite up", "up-": "inhibit up", "gate+": "open the gate", "gate-": "close the gate"}


def _atlas(ctx: CardContext):
    """The newest atlas that covers the neuron's layer (read once per card)."""
    layer = ctx.neuron.layer
    return ctx.once("atlas", lambda: ctx.store.newest("neuron_atlas",
                                                      lambda c: not c.get("layers") or layer in c["layers"]))


def _typical(ctx: CardContext) -> dict | None:
    """The neuron's firing sign and RMS activation in the atlas."""
    atlas, nid = _atlas(ctx), ctx.neuron
    if atlas is None or nid.layer not in atlas_layers(atlas):
        return None
    typical = typical_activation(atlas)
    row = typical[(typical.layer == nid.layer) & (typical.neuron == nid.index)].iloc[0]
    return {"sign": int(row["sign"]), "rms": float(row["rms"])}


# --- identity ------------------------------------------------------------------------------------------

@card_section("identity", "Identity", order=0)
def identity_section(ctx: CardContext) -> Section:
    model, nid = ctx.model, ctx.neuron
    norms = {}
    for side, layer_norms in model.weights.neuron_norms(nid.layer).items():
        value, median = float(layer_norms[nid.index]), float(layer_norms.median())
        norms[side] = {"value": value, "layer_median": median, "ratio": value / median if median else None}
    return Section("identity", "Identity", {
        "layer": nid.layer, "index": nid.index, "model": model.spec, "weights_hash": model.weights_hash,
        "n_layers": model.n_layers, "d_mlp": model.d_mlp, "is_glu": model.is_glu,
        "activation": model.info().get("act_fn"), "norms": norms,
        "formula": "act(x·W_gate)·(x·W_in)" if model.is_glu else "act(x·W_in + b_in)"})


@identity_section.html
def _identity_html(section: Section, nid) -> str:
    d = section.data
    items = [("layer · index", f"{d['layer']} · {d['index']}", "")]
    items += [(f"‖{side}‖", f"{n['value']:.3f}", f"{n['ratio'] - 1:+.0%} vs layer median" if n["ratio"] else "")
              for side, n in d["norms"].items()]
    items.append(("activation", str(d["activation"]), f"{d['n_layers']} layers × {d['d_mlp']} neurons"))
    return metrics_html(items) + f"<p class='note'>{esc(d['formula'])}</p>"


@identity_section.text
def _identity_text(d: dict) -> str:
    return ", ".join(f"|{s}| {n['value']:.3f} ({n['ratio']:.2f}x layer median)" for s, n in d["norms"].items())


# --- decoding ------------------------------------------------------------------------------------------

def _tokens(rows: list[dict], side: str) -> list[dict]:
    part = sorted((r for r in rows if r["side"] == side), key=lambda r: r["rank"])
    return [{"token": str(r["token"]), "token_id": int(r["token_id"]), "score": float(r["score"])} for r in part]


@card_section("decoding", "Decoding (LM head)", order=10)
def decoding_section(ctx: CardContext) -> Section:
    """Promoted and suppressed tokens on the side the neuron fires with (``out-`` for a neuron whose strong
    activations are negative), and the up/gate input sides."""
    nid = ctx.neuron
    section = Section("decoding", "Decoding (LM head)", missing=f"`interp decode{ctx.spec_flag}`")
    dec = ctx.store.newest("lm_head_decoding", lambda c: not c.get("layers") or nid.layer in c["layers"])
    if dec is None:
        return section
    typical = _typical(ctx)
    rows = neuron_tokens(dec, nid.layer, nid.index).to_dict("records")
    sign = typical["sign"] if typical else 1
    promoted, suppressed = ("out+", "out-") if sign > 0 else ("out-", "out+")
    section.data = {
        "typical_sign": typical["sign"] if typical else None,
        "promoted_side": promoted, "promoted": _tokens(rows, promoted), "suppressed": _tokens(rows, suppressed),
        "inputs": {side: _tokens(rows, side) for side in ("up+", "up-", "gate+", "gate-")
                   if any(r["side"] == side for r in rows)},
        "note": ("the neuron fires negative (its strong activations in the atlas are negative), so it promotes "
                 "through its out- side: the tokens its output direction scores lowest" if sign < 0 else
                 "promoted: the tokens its output direction scores highest (it fires positive in the atlas)"
                 if typical else "no atlas: the sign it fires with is unknown, out+ is shown as promoted"),
        "fold_norm": bool(dec.config.fold_norm)}
    section.sources = [str(dec.path)]
    return section


@decoding_section.html
def _decoding_html(section: Section, nid) -> str:
    d = section.data
    blocks = [f"<b>Promoted</b> ({d['promoted_side']})<br>{chips(d['promoted'], '43,108,176')}",
              f"<b>Suppressed</b><br>{chips(d['suppressed'], '197,48,48')}"]
    blocks += [f"<b>Input side: {INPUT_NAMES.get(side, side)}</b> ({side})<br>"
               f"{chips(tokens, '47,133,90' if side.endswith('+') else '151,90,22')}"
               for side, tokens in d["inputs"].items()]
    return f"<p class='note'>{esc(d['note'])}</p>" + "".join(
        f'<div style="margin:0 0 10px 0;line-height:1.9">{b}</div>' for b in blocks)


@decoding_section.text
def _decoding_text(d: dict) -> str:
    return f"promotes ({d['promoted_side']}) " + " ".join(repr(t["token"]) for t in d["promoted"][:8])


@decoding_section.export
def _decoding_export(d: dict) -> dict:
    return {"pos_str": [t["token"] for t in d["promoted"]], "pos_values": [t["score"] for t in d["promoted"]],
            "neg_str": [t["token"] for t in d["suppressed"]], "neg_values": [t["score"] for t in d["suppressed"]]}


# --- activations ---------------------------------------------------------------------------------------

@card_section("activations", "Activations", order=20)
def activations_section(ctx: CardContext) -> Section:
    """The atlas's moments, quantiles, density and histogram, top and bottom contexts and, for GLU models,
    each gate/up sign quadrant's share of tokens and top contexts."""
    model, nid, atlas = ctx.model, ctx.neuron, _atlas(ctx)
    section = Section("activations", "Activations", missing=f"`interp atlas{ctx.spec_flag} --corpus "
                                                            "sampled:4096+stdlib-docs --tokens 16384`")
    row = atlas_row(atlas, nid.layer, nid.index) if atlas is not None else None
    if row is None:
        return section
    q = {c: float(v) for c, v in row.items() if c.startswith("q") and c[1:].isdigit()}
    data = {
        "stats": {"max": float(row["max"]), "min": float(row["min"]), "mean": float(row["mean"]),
                  "std": float(math.sqrt(row["var"])), "frac_positive": float(row["frac_positive"]),
                  "density": float(row["density"]) if "density" in row else None,
                  "max_abs": float(max(abs(row["max"]), abs(row["min"]))), "quantiles": q},
        "histogram": histogram(atlas, nid.layer, nid.index),
        "corpus": atlas.metrics.get("corpus"), "tokens": int(atlas.metrics["tokens"]),
        "contexts": {which: contexts(model, atlas, nid.layer, nid.index, which, k=CONTEXT_K, width=WIDTH)
                     for which in ("top", "bottom")},
    }
    if f"share_{QUADRANTS[0]}" in row:
        data["quadrants"] = {
            name: {"share": float(row[f"share_{name}"]),
                   "contexts": contexts(model, atlas, nid.layer, nid.index, name, k=QUADRANT_CONTEXT_K, width=WIDTH)
                   if has_examples(atlas, nid.layer, nid.index, name) else []} for name in QUADRANTS}
    section.data, section.sources = data, [str(atlas.path)]
    return section


def histogram_svg(data: dict) -> str:
    h = data["histogram"]
    labels = [f"[{a:.3g}, {b:.3g})" for a, b in zip(h["lo"], h["hi"])]
    centers = h["centers"]
    ticks = [(i, f"{centers[i]:.2g}") for i in range(0, len(centers), max(1, len(centers) // 6))]
    colors = ["#2b6cb0" if c >= 0 else "#c53030" for c in centers]
    return svg_bars(h["counts"], labels, "Activation histogram (log count; hover a bar)", log=True, colors=colors,
                    ticks=ticks)


def quadrants_svg(quadrants: dict) -> str:
    names = list(quadrants)
    return svg_bars([quadrants[n]["share"] for n in names], [QUADRANT_TITLES.get(n, n) for n in names],
                    "Share of tokens by gate/up sign", colors=["#2b6cb0", "#c53030", "#90cdf4", "#feb2b2"],
                    ticks=[(i, n) for i, n in enumerate(names)], width=320, fmt="{:.1%}")


@activations_section.html
def _activations_html(section: Section, nid) -> str:
    d = section.data
    st_ = d["stats"]
    dens = f"{st_['density']:.1%}" if st_["density"] is not None else "n/a"
    out = [metrics_html([("max", f"{st_['max']:+.3f}", ""), ("min", f"{st_['min']:+.3f}", ""),
                         ("mean", f"{st_['mean']:+.3f}", ""), ("std", f"{st_['std']:.3f}", ""),
                         ("median", f"{st_['quantiles'].get('q50', float('nan')):+.3f}", ""),
                         ("density", dens, "|act| ≥ 10% of its peak")]),
           f"<p class='note'>Over {d['tokens']:,} tokens of <code>{esc(d['corpus'])}</code>. "
           "Density: the share of positions where |activation| is at least a tenth of the neuron's peak (not "
           "the share of positive values, about half for any signed GLU neuron).</p>",
           f'<div style="display:flex;gap:24px;flex-wrap:wrap">{histogram_svg(d)}'
           f'{quadrants_svg(d["quadrants"]) if "quadrants" in d else ""}</div>']
    out += [f"<p><b>{title}</b> (blue positive, red negative; the example's token is outlined)</p>"
            + contexts_html(d["contexts"][which])
            for which, title in (("top", "Top activations"), ("bottom", "Most negative activations"))]
    if "quadrants" in d:
        out.append("<p><b>By gate/up sign quadrant</b>: the strongest |activation| in each</p>")
        out += [f"<p><i>{QUADRANT_TITLES[name]}</i>: {q['share']:.1%} of tokens</p>" + contexts_html(q["contexts"])
                for name, q in d["quadrants"].items()]
    return "".join(out)


@activations_section.text
def _activations_text(d: dict) -> str:
    s = d["stats"]
    dens = f"{s['density']:.1%}" if s["density"] is not None else "n/a"
    quad = "; quadrants " + " ".join(f"{n} {q['share']:.0%}" for n, q in d["quadrants"].items()) \
        if "quadrants" in d else ""
    return f"max {s['max']:+.2f} min {s['min']:+.2f} mean {s['mean']:+.3f} density {dens}{quad}"


def _neuronpedia_activation(ctx: dict) -> dict:
    values = [v if v is not None and math.isfinite(v) else 0.0 for v in ctx["acts"]]
    return {"tokens": ctx["tokens"], "values": values, "maxValue": max(values, key=abs) if values else 0.0,
            "maxValueTokenIndex": ctx["center"]}


@activations_section.export
def _activations_export(d: dict) -> dict:
    return {"frac_nonzero": d["stats"].get("density"), "maxActApprox": d["stats"]["max_abs"],
            "freq_hist_data_bar_heights": d["histogram"]["counts"],
            "freq_hist_data_bar_values": d["histogram"]["centers"],
            "activations": [_neuronpedia_activation(c) for c in d["contexts"]["top"]]}


# --- clamp ---------------------------------------------------------------------------------------------

@card_section("clamp", "Clamp", order=90)
def clamp_section(ctx: CardContext) -> Section:
    """Computed on request (the dose-response runs the model): the builder only says how."""
    return Section("clamp", "Clamp", missing=f"computed on request: the card's Run button, or `interp card "
                                             f"{ctx.neuron}{ctx.spec_flag} --clamp TOKEN`")


@clamp_section.html
def _clamp_html(section: Section, nid) -> str:
    return note(f"Dose-response for {section.data.get('target', '')!r} over {len(section.data.get('sweep', []))} "
                "clamp values.")


@clamp_section.text
def _clamp_text(d: dict) -> str:
    return f"dose-response for {d['target']!r} over {len(d['sweep'])} values"


# --- explanation ---------------------------------------------------------------------------------------

SCORE_NAMES = {"iid_corr": "i.i.d. correlation", "auprc": "AUPRC", "top_random_corr": "top-and-random corr.",
               "detection_auroc": "detection AUROC"}


@card_section("explanation", "What it does (explanation)", order=5)
def explanation_section(ctx: CardContext) -> Section:
    """The newest stored explanation of the neuron: its token-statistics label (and an LLM's, if one was
    asked), each held-out score beside its baselines, and whether it beats random explanations."""
    nid = ctx.neuron
    section = Section("explanation", "What it does (explanation)", missing=f"`interp explain{ctx.spec_flag}`")
    result = ctx.store.newest("neuron_explanations", lambda c: not c.get("layers") or nid.layer in c["layers"])
    found = neuron_explanation(result, nid.layer, nid.index) if result is not None else None
    if found is None:
        return section
    section.data, section.sources = found, [str(result.path)]
    return section


@explanation_section.html
def _explanation_html(section: Section, nid) -> str:
    d = section.data
    rows = "".join(
        f"<tr><td>{esc(SCORE_NAMES.get(m, m))}</td><td><b>{_num(s['score'])}</b></td><td>{_num(s.get('random'))}</td>"
        f"<td>{_num(s.get('shuffled'))}</td><td>{_num(s.get('random_weights_median'))}</td></tr>"
        for m, s in d["scores"].items())
    flag = ("<p class='note' style='color:#b45309'><b>Flagged:</b> its i.i.d. correlation does not beat random "
            "explanations (95th percentile); treat the label as unproven.</p>" if d["flagged"] else "")
    llm = "".join(f"<p><b>{esc(e['explainer'])}</b>: “{esc(e['explanation'])}” (i.i.d. corr. {_num(e['iid_corr'])}, "
                  f"random {_num(e.get('iid_corr_random'))})</p>" for e in d.get("llm", []))
    return (f"<p style='font-size:1.05em'>{esc(d['label'])}</p>"
            f"<p class='note'>{esc(d['note'])}</p>{flag}"
            "<table class='scores'><tr><th>held-out score</th><th>this explanation</th><th>random explanation</th>"
            f"<th>shuffled tokens</th><th>random weights (median)</th></tr>{rows}</table>{llm}")


def _num(x) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.2f}"


@explanation_section.text
def _explanation_text(d: dict) -> str:
    s = d["scores"].get("iid_corr", {})
    return (f"{d['label']}  [i.i.d. corr {_num(s.get('score'))} vs random {_num(s.get('random'))}"
            f"{'; flagged' if d['flagged'] else ''}]")


@explanation_section.export
def _explanation_export(d: dict) -> dict:
    """Neuronpedia's explanation fields: one explanation per explainer, its scores by type name."""
    out = [{"description": d["label"], "typeName": "token statistics",
            "explanationModelName": "interp token statistics",
            "scores": [{"explanationScoreTypeName": m, "value": s["score"]} for m, s in d["scores"].items()
                       if s["score"] is not None and math.isfinite(s["score"])]}]
    out += [{"description": e["explanation"], "typeName": "llm", "explanationModelName": e["explainer"],
             "scores": [{"explanationScoreTypeName": "iid_corr", "value": e["iid_corr"]}]} for e in d.get("llm", [])]
    return {"explanations": out}
