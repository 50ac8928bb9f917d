"""Neuron card: everything the stored analyses say about one neuron, with checks on the spot.

URL: ``/neuron?model=smollm2-135m&neuron=29.808``. Every section reads stored Results (cached);
the verify, dose-response, generation and diff actions run only when asked."""

from __future__ import annotations

import html

import pandas as pd
import streamlit as st
from components import card_url, clamp_form, neuron_input
from state import call, show_error, workbench

from interp.viz.card import (
    QUADRANT_TITLES,
    card_html,
    contexts_html,
    dose_response_figure,
    histogram,
    quadrant_bar,
    tracing_line,
    verify_scatter,
)

wb = workbench()
st.title("Neuron card")

if "card_neuron" not in st.session_state:
    st.session_state.card_neuron = st.query_params.get("neuron", "")
    if not st.session_state.card_neuron:  # the neuron most specific to a default token
        try:
            top = call("neurons_for", wb.default_token(" Paris"), k=1).iloc[0]
            st.session_state.card_neuron = f"{int(top.layer)}.{int(top.neuron)}"
        except Exception:
            st.session_state.card_neuron = f"{wb.info()['n_layers'] - 1}.0"

cols = st.columns([2, 3])
nid = neuron_input("card_neuron", cols[0], help="e.g. 29.808; the URL's ?neuron= opens a card directly")
try:
    card = call("card", str(nid))
except Exception as exc:
    show_error(exc)
    st.stop()
s = card.sections
cols[1].caption(f"`{card.model}` · weights `{card.weights_hash}` · sections: "
                + " · ".join(f"[{sec.title}](#{key})" for key, sec in s.items()))


def missing(section) -> bool:
    if section.available:
        return False
    st.info(f"Not computed yet: {section.missing}")
    return True


def chips(tokens: list[dict], color: str) -> str:
    if not tokens:
        return "<i>none</i>"
    peak = max(abs(t["score"]) for t in tokens) or 1.0
    return " ".join(
        f'<span title="{t["score"]:+.3f} (id {t["token_id"]})" style="background:rgba({color},'
        f'{0.15 + 0.6 * abs(t["score"]) / peak:.2f});padding:1px 5px;border-radius:4px;font-family:monospace;'
        f'white-space:pre">{html.escape(repr(t["token"]))}</span>' for t in tokens)


# --- identity ----------------------------------------------------------------------------------
st.header(s["identity"].title, anchor="identity")
d = s["identity"].data
metric_cols = st.columns(len(d["norms"]) + 2)
metric_cols[0].metric("layer · index", f"{d['layer']} · {d['index']}")
for col, (side, n) in zip(metric_cols[1:], d["norms"].items()):
    col.metric(f"‖{side}‖", f"{n['value']:.3f}", f"{n['ratio'] - 1:+.0%} vs layer median" if n["ratio"] else None,
               delta_color="off")
metric_cols[-1].metric("activation", str(d["activation"]))
st.caption(f"{d['formula']} · {d['n_layers']} layers × {d['d_mlp']} neurons")

# --- decoding ----------------------------------------------------------------------------------
st.header(s["decoding"].title, anchor="decoding")
if not missing(s["decoding"]):
    d = s["decoding"].data
    st.caption(d["note"])
    st.markdown(f"**Promoted** ({d['promoted_side']})<br>{chips(d['promoted'], '43,108,176')}", unsafe_allow_html=True)
    st.markdown(f"**Suppressed**<br>{chips(d['suppressed'], '197,48,48')}", unsafe_allow_html=True)
    names = {"up+": "excite up", "up-": "inhibit up", "gate+": "open the gate", "gate-": "close the gate"}
    for side, tokens in d["inputs"].items():
        st.markdown(f"**Input side: {names.get(side, side)}** ({side})<br>"
                    f"{chips(tokens, '47,133,90' if side.endswith('+') else '151,90,22')}", unsafe_allow_html=True)

# --- activations -------------------------------------------------------------------------------
st.header(s["activations"].title, anchor="activations")
if not missing(s["activations"]):
    d = s["activations"].data
    st_ = d["stats"]
    mcols = st.columns(6)
    for col, (label, value) in zip(mcols, [("max", f"{st_['max']:+.3f}"), ("min", f"{st_['min']:+.3f}"),
                                           ("mean", f"{st_['mean']:+.3f}"), ("std", f"{st_['std']:.3f}"),
                                           ("median", f"{st_['quantiles'].get('q50', float('nan')):+.3f}"),
                                           ("density", f"{st_['density']:.1%}" if st_["density"] is not None
                                            else "n/a")]):
        col.metric(label, value)
    st.caption(f"Over {d['tokens']:,} tokens of `{d['corpus']}`. Density: the share of positions where |activation| "
               "is at least a tenth of the neuron's peak (not the share of positive values, about half for any "
               "signed GLU neuron).")
    hcol, qcol = st.columns(2)
    hcol.plotly_chart(histogram(d, "Activation histogram"), width="stretch", key="card_hist")
    if "quadrants" in d:
        qcol.plotly_chart(quadrant_bar(d["quadrants"]), width="stretch", key="card_quadrants")
    for which, title in (("top", "Top activations"), ("bottom", "Most negative activations")):
        st.markdown(f"**{title}** (blue positive, red negative; the example's token is outlined)")
        st.html(contexts_html(d["contexts"][which]))
    if "quadrants" in d:
        st.markdown("**By gate/up sign quadrant**: the strongest |activation| in each")
        for name, q in d["quadrants"].items():
            st.markdown(f"*{QUADRANT_TITLES[name]}*: {q['share']:.1%} of tokens")
            if q["contexts"]:
                st.html(contexts_html(q["contexts"]))

# --- patching ----------------------------------------------------------------------------------
st.header(s["patching"].title, anchor="patching")
if not missing(s["patching"]):
    runs = s["patching"].data["runs"]
    st.table(pd.DataFrame(runs)[["method", "dataset", "n_pairs", "metric", "score", "rank", "of"]]
             .rename(columns={"of": "of (layer)"}).style.format({"score": "{:+.4f}"}), hide_index=True)
    cheap = [r for r in runs if r["method"] != "activation"]
    if cheap:
        with st.form("verify"):
            labels = [f"{r['method']} · {r['dataset']} · n={r['n_pairs']}" for r in cheap]
            pick = st.selectbox("Verify a cheap score against activation patching", labels)
            k = st.slider("…and the layer's top neurons by that score", 1, 10, 5)
            go_verify = st.form_submit_button("Verify")
        if go_verify:
            run = cheap[labels.index(pick)]
            try:
                with st.spinner("Activation patching these neurons (one forward pass per batch of rows)…"):
                    out = wb.verify_patching(str(nid), run["path"], k=k)
                c1, c2 = st.columns([3, 2])
                c1.plotly_chart(verify_scatter(out), width="stretch", key="verify_fig")
                r, rho = out["pearson"], out["spearman"]
                c2.metric(f"{nid}: activation patching", f"{out['neuron']['activation']:+.4f}",
                          f"{out['method']} predicted {out['neuron']['predicted']:+.4f}", delta_color="off")
                c2.markdown(f"Over {len(out['table'])} neurons: Pearson {r if r is None else f'{r:.3f}'}, "
                            f"Spearman {rho if rho is None else f'{rho:.3f}'}, signs agree "
                            f"{out['sign_agreement']:.0%}; stored as `{out['result'].run_id}`.")
                c2.dataframe(out["table"], hide_index=True)
            except Exception as exc:
                show_error(exc)

# --- factual recall ----------------------------------------------------------------------------
st.header(s["factual"].title, anchor="factual")
if not missing(s["factual"]):
    d = s["factual"].data
    for entry in d["sets"]:
        st.markdown(f"`{entry['facts']}`: mean DLA **{entry['mean_dla']:+.4f}**, rank {entry['rank']} of "
                    f"{entry['of']} in layer {nid.layer} over {entry['n_facts']} facts")
        if "pushes" in entry:
            c1, c2 = st.columns(2)
            c1.markdown("Pushes most")
            c1.table(pd.DataFrame(entry["pushes"]), hide_index=True)
            c2.markdown("Suppresses most")
            c2.table(pd.DataFrame(entry["suppresses"]), hide_index=True)
    for fix in d["fixes"]:
        st.markdown(f"Factual fix: mean effect on the answer {fix['mean_effect']:+.4f} (rank {fix['rank']}); "
                    f"{'one of' if fix['chosen'] else 'not among'} the neurons the fix scales.")

# --- causal tracing ----------------------------------------------------------------------------
st.header(s["tracing"].title, anchor="tracing")
if not missing(s["tracing"]):
    d = s["tracing"].data
    run = d["runs"][0]
    st.markdown(f"Layer {nid.layer}'s MLP: indirect effect **{run['effect']:+.3f}**, rank {run['rank']} of {run['of']} "
                f"layers (`{run['facts']}`, {run['n_facts']} facts). {d['note']}.")
    st.plotly_chart(tracing_line(run, nid.layer), width="stretch", key="card_tracing")

# --- unlearning --------------------------------------------------------------------------------
st.header(s["unlearning"].title, anchor="unlearning")
if not missing(s["unlearning"]):
    df = pd.DataFrame(s["unlearning"].data["edits"])
    show = [c for c in df.columns if c == "variant" or c.startswith(("d_", "act_"))]
    st.caption("d_*: relative change |ΔW|/|W| of its gate row, up row and down column; act_*: its mean activation "
               "at the last token of the forget and the retain prompts, before and after the edit.")
    st.dataframe(df[show], hide_index=True)

# --- bigram ------------------------------------------------------------------------------------
st.header(s["bigram"].title, anchor="bigram")
if not missing(s["bigram"]):
    for run in s["bigram"].data["runs"]:
        parts = [p for p in ("gate", "up", "down") if p in run]
        mc = st.columns(len(parts) + 1)
        for col, p in zip(mc, parts):
            col.metric(f"{p} kept", f"{run[p]['kept']:.1%}", f"layer {run[p]['layer_mean']:.1%}", delta_color="off")
        mc[-1].metric("whole subnetwork", f"{run['kept_fraction']:.1%}", f"{run['steps']} steps", delta_color="off")

# --- clamp -------------------------------------------------------------------------------------
st.header(s["clamp"].title, anchor="clamp")
promoted = (s["decoding"].data or {}).get("promoted") or [{"token": wb.default_token(" the")}]
with st.form("dose"):
    c1, c2 = st.columns(2)
    target = c1.text_input("Target token", value=promoted[0]["token"])
    values_text = c2.text_input("Clamp values (comma-separated; empty: ±4× its peak, 9 values)", value="")
    go_dose = st.form_submit_button("Run the dose-response")
if go_dose:
    try:
        values = None
        if values_text.strip():
            try:
                values = tuple(float(v) for v in values_text.split(","))
            except ValueError:
                raise ValueError(f"clamp values must be numbers, got {values_text!r}") from None
        table = call("dose_response", str(nid), target, values)
        st.plotly_chart(dose_response_figure(table, target), width="stretch", key="dose_fig")
        st.session_state[f"dose-{nid}"] = (table, target)
    except ValueError as exc:
        st.error(str(exc))
    except Exception as exc:
        show_error(exc)
asked = clamp_form("generate", "Generate with the clamp held")
if asked:
    prompt, value, n_new = asked
    try:
        out = call("clamp_preview", prompt, (str(nid),), value, k=8, n_generate=int(n_new))
        st.markdown(f"**Before:** {html.escape(prompt)}*{html.escape(out['before'])}*")
        st.markdown(f"**Clamped to {value:g}:** {html.escape(prompt)}*{html.escape(out['after'])}*")
    except Exception as exc:
        show_error(exc)

# --- diff and share ----------------------------------------------------------------------------
st.header("Compare and share", anchor="share")
with st.form("diff"):
    other = st.text_input("Diff this model against (a spec of the same architecture: an unlearning edit's "
                          "directory, a .gguf, a hub id)", value="")
    go_diff = st.form_submit_button("Diff")
if go_diff and other.strip():
    try:
        with st.spinner(f"Loading {other} and comparing every neuron…"):
            diff = wb.diff(other.strip(), k=0)
        mine = diff[(diff.layer == nid.layer) & (diff.neuron == nid.index)]
        if len(mine):
            st.markdown(f"**{nid}** changed by " + ", ".join(f"{c}={mine.iloc[0][c]:.2%}" for c in mine.columns
                                                                if c.startswith("d_")))
        top = diff.head(20).copy()
        top.insert(0, "card", [card_url(l, n) for l, n in zip(top.layer, top.neuron)])
        st.markdown("Neurons that changed most (open a card from the link):")
        st.dataframe(top, hide_index=True, column_config={
            "card": st.column_config.LinkColumn("card", display_text=r"neuron=([0-9.]+)")})
    except Exception as exc:
        show_error(exc)
dose = st.session_state.get(f"dose-{nid}")
c1, c2 = st.columns(2)
c1.download_button("Export HTML (one file, plots inline)",  # built when clicked, not on every page run
                   lambda: card_html(card, clamp=dose[0] if dose else None, clamp_target=dose[1] if dose else None),
                   file_name=f"neuron-{nid}-{card.model.replace('/', '_')}.html", mime="text/html")
c2.download_button("Export JSON (Neuronpedia field names)", lambda: card.to_json(indent=1),
                   file_name=f"neuron-{nid}-{card.model.replace('/', '_')}.json", mime="application/json")
st.caption("Sections without a stored Result say which command fills them; the card reads only stored Results.")
