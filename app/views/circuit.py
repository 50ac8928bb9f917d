"""Circuit: attribution graphs over MLP neurons (which neurons compute the answer, and how they are wired)."""

from __future__ import annotations

import json

import streamlit as st
from components import card_url, job_panel, start_job
from state import call, workbench

from interp.viz.graph import faithfulness_figure, graph_figure, knockout_figure

st.title("Circuit")
st.caption("An attribution graph over the model's own MLP neurons for one prompt: an edge is the direct effect of a "
           "source on a target in the model linearised around the prompt (norm scales, attention patterns and GLU "
           "gates frozen; MLPs in between cut), pruned by influence on the answer as circuit-tracer does. "
           "Layer runs up, position across; orange/purple: a neuron's activation is positive/negative, size: "
           "influence; blue/red edges raise/lower their target.")
wb = workbench()

with st.expander("Build a graph", expanded=False):
    with st.form("graph"):
        prompt = st.text_input("Prompt", "When Mary and John went to the store, John gave a drink to")
        c = st.columns(4)
        target = c[0].text_input("Target token", " Mary", help="empty: the top prediction")
        wrong = c[1].text_input("Wrong token", " John", help="optional: the target becomes a logit difference")
        max_nodes = c[2].number_input("Neurons expanded", 10, 5000, 800, step=100)
        verify = c[3].checkbox("Verify", help="knock-outs, a faithfulness curve and random controls (~5 s more)")
        if st.form_submit_button("Build"):
            start_job("graph-job", "neuron_graph", prompt=prompt, target=target, wrong=wrong,
                      max_nodes=int(max_nodes), verify=verify)
    job_panel("graph-job")

runs = call("graph_runs")
if not runs:
    st.info("No neuron graph of this model yet: build one above, or run "
            "`interp graph --prompt \"When Mary and John went to the store, John gave a drink to\" "
            "--target \" Mary\" --wrong \" John\" --verify`.")
    st.stop()

labels = {r["path"]: f"{r['prompt']!r} → {', '.join(r['targets'])}  ({r['neurons']} neurons; {r['run_id']}, "
                     f"{r['created'][:16]}{', verified' if r['verified'] else ''})" for r in runs}
path = st.selectbox("Graph", list(labels), format_func=labels.get)
result = wb.result(path)
m = result.metrics
cols = st.columns(6)
cols[0].metric("neurons kept", m["n_neurons_kept"],
               help=f"of {m['n_expanded']} expanded, {m['n_candidates']} candidates")
cols[1].metric("edges shown", f"{m['n_edges']:,}")
cols[2].metric("replacement", f"{m['replacement']:.3f}", help="share of the targets' influence that reaches the "
               "embeddings through kept neurons rather than the other nodes")
cols[3].metric("completeness", f"{m['completeness']:.3f}", help="share of the nodes' incoming edge mass from kept "
               "nodes, weighted by influence")
cols[4].metric("backward passes", m["backward_passes"])
cols[5].metric("seconds", f"{m['seconds']:.1f}")
for text in result.notes:
    st.info(text)

edges = result.table("edges")
top = float(edges[edges.shown].weight.abs().quantile(0.999)) if edges.shown.any() else 1.0
c = st.columns([3, 1])
threshold = c[0].slider("Hide edges weaker than |weight|", 0.0, max(top, 1e-6), 0.0, format="%.3g",
                        help="the graph keeps edges up to 98% of the influence, and the 400 strongest are drawn; "
                             "this hides the weaker ones")
others = c[1].toggle("Show other nodes", False, help="one per layer and position: every neuron not kept there")
fig = graph_figure(result, threshold, call("graph_labels", path), others)
event = st.plotly_chart(fig, width="stretch", key=f"graph-{path}", on_select="rerun", selection_mode="points")
picked = [p.get("customdata") for p in (event.selection.points if event else []) if p.get("customdata")]
neurons = [p for p in picked if isinstance(p, str) and p.startswith("n")]
if neurons:
    layer, rest = neurons[0][1:].split(".")
    index, pos = rest.split("@")
    st.markdown(f"**{neurons[0]}** (layer {layer}, neuron {index}, position {pos}): "
                f"[open its card]({card_url(int(layer), int(index))})")
else:
    st.caption("Click a neuron to open its card.")

if "faithfulness" in result.tables:
    st.subheader("Verification")
    def corr(name: str) -> str:
        return f"{m[name + '_pearson']:.2f}" if f"{name}_pearson" in m else "n/a"

    st.caption(f"Knock-outs: the measured change of the metric against the linear model's prediction (Pearson "
               f"{corr('knockout')}; a 10% nudge: {corr('nudge')}); downstream kept neurons against the graph's "
               f"own paths (Pearson {corr('downstream')}). Faithfulness: the top x% of neuron-positions kept, the "
               "rest mean-ablated, against random sets of the same size.")
    c = st.columns(2)
    c[0].plotly_chart(knockout_figure(result), width="stretch", key=f"ko-{path}")
    c[1].plotly_chart(faithfulness_figure(result), width="stretch", key=f"fc-{path}")

c = st.columns(2)
c[0].download_button("Graph JSON (circuit-tracer format)", json.dumps(call("graph_json", path)),
                     file_name=f"{result.run_id}.json", mime="application/json")
