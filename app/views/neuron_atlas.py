"""Neuron atlas: density over all neurons, and which neurons fire most on a pasted text."""

from __future__ import annotations

import streamlit as st
from components import neuron_link
from state import call, show_error, workbench

from interp.viz.atlas import density_scatter

st.title("Neuron atlas")
st.caption("Anchors: Neuroscope's scan_over_data, OpenAI's neuron-explainer, Neuronpedia. "
           "Per-neuron contexts and histograms are in the neuron explorer.")
wb = workbench()
atlas_path = call("atlas_path")
if atlas_path is None:
    st.info("No atlas stored for this model yet: `interp atlas --corpus sampled:4096+stdlib-docs --tokens 16384` "
            "(or `make run`) builds one.")
else:
    atlas = wb.result(atlas_path)
    m = atlas.metrics
    st.markdown(f"{m['layers']} layers, {m['tokens']:,} tokens of `{m['corpus']}`, top/bottom-{m['k']} per neuron. "
                f"Run `{atlas.run_id}`.")
    for note in atlas.notes:
        st.caption(note)
    st.plotly_chart(density_scatter(atlas), width="stretch")

st.subheader("Neurons most active on this text")
text = st.text_area("Paste text", value="The capital of France is Paris.", height=80)
k = st.slider("Neurons per token", 1, 10, 3)
relative = st.toggle("Rank by activation relative to each neuron's max on the atlas corpus",
                     value=atlas_path is not None, disabled=atlas_path is None)
if text.strip():
    try:
        table = call("active_on_text", text, k=k, atlas_path=atlas_path if relative else None)
        lines = []
        for _pos, group in table.groupby("pos"):
            tok = group.token.iloc[0]
            cells = ", ".join(f"{neuron_link(r.layer, r.neuron)} ({r.activation:+.2f}"
                              + (f", {r.relative:.0%} of its max)" if relative else ")") for r in group.itertuples())
            lines.append(f"- `{tok!r}`: {cells}")
        st.markdown("\n".join(lines))
    except Exception as exc:
        show_error(exc)
else:
    st.error("the text is empty: paste some text to see which neurons fire")
