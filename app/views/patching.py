"""Patching: activation, attribution and relevance patching (RelP) side by side."""

from __future__ import annotations

import json

import streamlit as st
from components import choose_run, job_panel, neuron_link, start_job
from state import call, show_error, workbench

from interp.viz.patching import (
    TITLES,
    faithfulness_scatter,
    heatmap,
    interval_dots,
    layer_curves,
    mean_scores,
    per_pair_boxes,
)
from interp.workbench import COMPONENTS, METHODS

st.title("Patching")
st.caption("RelP: Faithful and Efficient Circuit Discovery via Relevance Patching (Jafari et al., 2025) · "
           "activation patching is the ground truth; attribution patching and RelP approximate it "
           "with one backward pass.")
wb = workbench()
n_layers = wb.info()["n_layers"]

with st.expander("Run patching on this model", expanded=False):
    with st.form("patch"):
        c = st.columns(4)
        method = c[0].selectbox("Method", METHODS, index=2)
        dataset = c[1].text_input("Dataset", "ioi",
                                  help="ioi or ioi-fresh (generated) or a JSONL of clean/corrupt/answer/wrong")
        n = c[2].number_input("Pairs", 1, 256, 8)
        comps = c[3].multiselect("Components", list(COMPONENTS), ["resid", "attn_out", "mlp_out", "heads"])
        if st.form_submit_button("Run") and comps:
            start_job("patch-job", "patching", method=method, dataset=dataset, n=int(n), components=comps)
    job_panel("patch-job")

groups = call("patching_groups")
if not groups:
    st.info(f"No patching runs of `{wb.spec}` yet. Run one above, or `interp patch --method relp` "
            "(`make run` copies the precomputed IOI runs of the embedded model).")
    st.stop()

c = st.columns([5, 1])
key = c[0].selectbox("Dataset and metric (comparable runs; the pinned group, else the most complete, first)",
                     list(groups), format_func=lambda k: ", ".join(f"{a}={b}" for a, b in json.loads(k).items()))
comparison = call("patching_comparison", key)
results = {m: wb.result(p) for m, p in comparison["paths"].items()}
methods = comparison["methods"]
pinned = call("run_choices", "patching").query("pinned")
if c[1].button("Unpin" if key == next(iter(groups)) and len(pinned) else "Pin as default",
               help="the default comparison of every tab and restart (kept in the store)"):
    if key == next(iter(groups)) and len(pinned):
        wb.unpin("patching")
    else:
        wb.pin(comparison["paths"][methods[0]])
    st.rerun()
st.caption("Runs shown (the most complete comparable group first; a Verify is its own group): "
           + " · ".join(f"**{m}**: run `{results[m].run_id}`, n={results[m].metrics.get('n_pairs', '?')} pairs, "
                        f"{results[m].metrics['seconds']:.1f} s" for m in methods))

present = [c for c in TITLES if any(c in set(r.table("scores").component) for r in results.values())]
component = st.radio("Component", present, format_func=TITLES.get, horizontal=True)

if component != "neurons":
    st.subheader(f"Heatmaps: {TITLES[component]}, mean over pairs ({results[methods[0]].metrics['direction']})")
    have = [m for m in methods if component in set(results[m].table("scores").component)]
    zmax = max(float(mean_scores(results[m], component).abs().max().max()) for m in have) or 1.0
    cols = st.columns(len(have))
    for col, m in zip(cols, have):
        col.plotly_chart(heatmap(results[m], component, zmax=zmax), width="stretch", key=f"hm-{m}")

if comparison["faithfulness"] is not None:
    st.subheader("Faithfulness to activation patching")
    table = comparison["faithfulness"]
    st.dataframe(table[["component", "method", "pearson", "spearman", "pearson_mean", "top_k_overlap", "n"]],
                 hide_index=True)
    others = [m for m in methods if m != "activation"]
    cols = st.columns(max(1, len(others)))
    for col, m in zip(cols, others):
        both = set(results[m].table("scores").component) & set(results["activation"].table("scores").component)
        if component in both:
            try:
                col.plotly_chart(faithfulness_scatter(results["activation"], results[m], component),
                                 width="stretch", key=f"sc-{m}")
            except Exception as exc:
                show_error(exc)
else:
    st.info("Run activation patching on the same dataset to see faithfulness scatter plots.")

st.subheader("Faithfulness with error bars")
faith = choose_run("faithfulness", "Intervals")
if faith is not None:
    st.markdown(f"{faith.config.dataset}, n={faith.config.n} pairs")
    for note in faith.notes:
        st.caption(note)
    cols = st.columns(2)
    cols[0].plotly_chart(interval_dots(faith), width="stretch", key="faith-intervals")
    cols[1].plotly_chart(per_pair_boxes(faith), width="stretch", key="faith-pairs")

st.subheader("Single neurons, every layer and position")
neuron_faith = choose_run("neuron_faithfulness", "Neuron-level faithfulness")
if neuron_faith is not None:
    st.plotly_chart(layer_curves(neuron_faith), width="stretch", key="neuron-faith")
    for note in neuron_faith.notes:
        st.caption(note)
else:
    st.caption("Not computed yet: `python scripts/neuron_faithfulness_runs.py` (AtP and RelP against activation "
               "patching for sampled neurons at every layer, at subject, last and other positions).")

st.subheader("Top neurons of an MLP layer")
layer = st.selectbox("MLP layer", list(range(n_layers)), index=n_layers - 1)
scored = call("layer_neuron_scores", key, layer)
if scored is None:
    cfg = json.loads(key)
    if st.button(f"Score layer {layer}'s neurons with RelP (one backward pass)"):
        start_job("neurons-job", "patching", method="relp", components=["neurons"], layers=[layer],
                  **{k: cfg[k] for k in cfg})
    job_panel("neurons-job")
else:
    source, top = scored
    st.caption(f"by mean {source} score over pairs, at position {json.loads(key)['neuron_pos']}")
    for row in top.itertuples():
        st.markdown(f"- neuron {neuron_link(layer, int(row.unit))}: {row.mean_score:+.4f}")
