"""Bigram subnetwork: the weights that make next-token predictions from the current token alone."""

from __future__ import annotations

import streamlit as st
from components import choose_run
from state import call, show_error, workbench

from interp.viz.bigrams import geometry_lines, layout_heatmap, score_bars, sparsity_curve, surprisal_bars

st.title("Bigram subnetwork")
st.caption("Bigram Subnetworks: Mapping to Next Tokens in Transformer Language Models (Chang & Bergen, 2025) · "
           "a continuous-sparsification mask trained to reproduce P(next | current token).")
wb = workbench()
result = choose_run("bigram_subnetworks", "Figures")
if result is None:
    st.info("No bigram-subnetwork run of this model yet: `interp bigram` runs the CPU protocol "
            "(`--device cuda --steps 15000 --lr 5e-5 --t-mult 1.001` for the paper's).")
    st.stop()
path = str(result.path)
m = result.metrics
for note in result.notes:
    st.info(note)
cols = st.columns(4)
cols[0].metric("Weights kept", f"{m['kept_fraction']:.3%}", f"{m['kept_params']:,} of {m['masked_params']:,}",
               delta_color="off")
cols[1].metric("In layer 0's MLP", f"{m['share_in_layer0_mlp']:.0%}")
cols[2].metric("Subnetwork KL to bigram", f"{m['sufficiency_kl']['subnetwork']:.2f}",
               f"random {m['sufficiency_kl']['random subnetwork']:.2f}", delta_color="off")
cols[3].metric("LM loss, subnetwork ablated", f"{m['necessity_lm_loss']['complement']:.2f}",
               f"random {m['necessity_lm_loss']['random complement']:.2f}", delta_color="off")
st.plotly_chart(layout_heatmap(result), width="stretch", key="bg-layout")
cols = st.columns(2)
cols[0].plotly_chart(score_bars(result), width="stretch", key="bg-scores")
cols[1].plotly_chart(geometry_lines(result), width="stretch", key="bg-geometry")
cols = st.columns(2)
cols[0].plotly_chart(sparsity_curve(result), width="stretch", key="bg-sparsity")
surprisal = result.table("surprisal") if "surprisal" in result.tables else None
if surprisal is None:  # an older run: the paper's measure from `interp bigram-surprisal`
    later = wb.latest("bigram_surprisal")
    if later is not None and later.metrics.get("subnetwork_run") == result.run_id:
        surprisal = later.table("surprisal")
if surprisal is not None:
    cols[1].plotly_chart(surprisal_bars(surprisal), width="stretch", key="bg-surprisal")
else:
    cols[1].info("The paper's surprisal correlation is not computed for this run yet: `interp bigram-surprisal`.")
if m.get("overlap"):
    st.markdown("**Overlap with the optimal-pruning subnetwork**: " + ", ".join(
        f"{k.replace('_', ' ')} {v:.3f}" for k, v in m["overlap"].items()))

st.subheader("Next-token distributions after one token")
token = st.text_input("Token", wb.default_token(" the"), help="one token, with its leading space")
try:
    preview = call("bigram_preview", path, token)  # the mask is applied to a private copy of the model
    cols = st.columns(3)
    for col, (name, table) in zip(cols, preview.items()):
        col.markdown(f"**{name}**")
        col.dataframe(table, hide_index=True)
except Exception as exc:
    show_error(exc)
