"""Patching: activation, attribution and relevance patching (RelP) side by side."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st
from components import neuron_link
from state import get_result, page_model, show_error

import interp
from interp.analyses.faithfulness import compare
from interp.analyses.patching import COMPONENTS, METHODS
from interp.storage import list_runs
from interp.viz.patching import TITLES, faithfulness_scatter, heatmap, mean_scores

st.title("Patching")
st.caption("RelP: Faithful and Efficient Circuit Discovery via Relevance Patching (Jafari et al., 2025) · "
           "activation patching is the ground truth; attribution patching and RelP approximate it "
           "with one backward pass.")
spec, model = page_model()


def dataset_key(cfg: dict) -> str:
    keys = ("dataset", "n", "seed", "metric", "direction", "neuron_pos")
    return json.dumps({k: cfg.get(k) for k in keys})


with st.expander("Run patching on this model", expanded=False):
    with st.form("patch"):
        c = st.columns(4)
        method = c[0].selectbox("Method", METHODS, index=2)
        dataset = c[1].text_input("Dataset", "ioi", help="ioi (generated) or a JSONL of clean/corrupt/answer/wrong")
        n = c[2].number_input("Pairs", 1, 256, 8)
        comps = c[3].multiselect("Components", list(COMPONENTS), ["resid", "attn_out", "mlp_out", "heads"])
        if st.form_submit_button("Run") and comps:
            try:
                with st.spinner(f"{method} patching…"):
                    interp.run("patching", model, method=method, dataset=dataset, n=int(n), components=comps)
            except Exception as exc:
                show_error(exc)

runs = list_runs("patching")
runs = runs[runs.weights_hash == model.weights_hash] if len(runs) else runs
if not len(runs):
    st.info(f"No patching runs of `{spec}` yet. Run one above, or `interp patch --method relp` "
            "(`make run` copies the precomputed IOI runs of the embedded model).")
    st.stop()

runs = runs.assign(key=runs.config.map(lambda c: dataset_key(json.loads(c))),
                   method=runs.metrics.map(lambda m: json.loads(m)["method"]))
keys = list(dict.fromkeys(runs.key))
key = st.selectbox("Dataset and metric", keys, format_func=lambda k: ", ".join(f"{a}={b}" for a, b in
                                                                             json.loads(k).items()))
chosen = runs[runs.key == key]
components_of = chosen.config.map(lambda c: json.loads(c)["components"])
main = chosen[components_of.map(lambda c: c != ["neurons"])]
newest = (main if len(main) else chosen).drop_duplicates("method")  # the newest run per method
results = {r.method: get_result(r.path) for r in newest.itertuples()}
methods = [m for m in METHODS if m in results]
st.caption(" · ".join(f"**{m}**: {results[m].metrics['seconds']:.1f} s ({results[m].run_id})" for m in methods))

present = [c for c in TITLES if any(c in set(r.table("scores").component) for r in results.values())]
component = st.radio("Component", present, format_func=TITLES.get, horizontal=True)

if component != "neurons":
    st.subheader(f"Heatmaps: {TITLES[component]}, mean over pairs ({results[methods[0]].metrics['direction']})")
    have = [m for m in methods if component in set(results[m].table("scores").component)]
    zmax = max(float(mean_scores(results[m], component).abs().max().max()) for m in have) or 1.0
    cols = st.columns(len(have))
    for col, m in zip(cols, have):
        col.plotly_chart(heatmap(results[m], component, zmax=zmax), width="stretch", key=f"hm-{m}")

if "activation" in results:
    st.subheader("Faithfulness to activation patching")
    others = [m for m in methods if m != "activation"]
    try:
        table = pd.concat([compare(results["activation"], results[m]).assign(method=m) for m in others])
        st.dataframe(table[["component", "method", "pearson", "spearman", "pearson_mean", "top_k_overlap", "n"]],
                     hide_index=True)
        cols = st.columns(max(1, len(others)))
        for col, m in zip(cols, others):
            if component in set(results[m].table("scores").component) & set(results["activation"].table(
                    "scores").component):
                col.plotly_chart(faithfulness_scatter(results["activation"], results[m], component),
                                 width="stretch", key=f"sc-{m}")
    except Exception as exc:
        show_error(exc)
else:
    st.info("Run activation patching on the same dataset to see faithfulness scatter plots.")

st.subheader("Top neurons of an MLP layer")
layer = st.selectbox("MLP layer", list(range(model.n_layers)), index=model.n_layers - 1)
neurons = None
for r in chosen[components_of.map(lambda c: "neurons" in c)].itertuples():
    df = get_result(r.path).table("scores")
    df = df[(df.component == "neurons") & (df.layer == layer)]
    if len(df):
        neurons, source = df, r.method
        break
if neurons is None:
    cfg = json.loads(chosen.config.iloc[0])
    if st.button(f"Score layer {layer}'s neurons with RelP (one backward pass)"):
        try:
            with st.spinner("RelP on neurons…"):
                interp.run("patching", model, method="relp", components=["neurons"], layers=[layer],
                                    **{k: cfg[k] for k in ("dataset", "n", "seed", "metric", "direction",
                                                           "neuron_pos")})
            st.rerun()
        except Exception as exc:
            show_error(exc)
else:
    top = neurons.groupby("unit").score.mean().rename("mean score").to_frame()
    top = top.reindex(top["mean score"].abs().sort_values(ascending=False).index).head(10).reset_index()
    st.caption(f"by mean {source} score over pairs, at position {json.loads(key)['neuron_pos']}")
    for row in top.itertuples():
        st.markdown(f"- neuron {neuron_link(layer, int(row.unit))}: {row[2]:+.4f}")
