"""LM-head decoding overview: where large neurons live, and the decoded table."""

from __future__ import annotations

import streamlit as st
from state import call, decoding, workbench

from interp.viz.decoding import layer_norms_heatmap

st.title("LM-head decoding")
st.caption('"Decoding specialised feature neurons in LLMs with the final projection layer" (2025); '
           "Geva et al. (2022). Every neuron's weights read in token space, with no data.")
wb = workbench()
result = decoding()
st.markdown(f"{result.metrics['n_neurons']:,} neurons, sides {', '.join(result.metrics['sides'])}, "
            f"top-k {result.config.top_k}, norm weights folded: {result.config.fold_norm}. "
            f"Run `{result.run_id}`.")
st.plotly_chart(layer_norms_heatmap(result), width="stretch")

n_layers = wb.info()["n_layers"]
layer = st.slider("Layer", 0, n_layers - 1, n_layers - 1)
st.markdown("Neurons of this layer by output-weight norm, with their top decoded tokens. **fires** is the sign "
            "that carries more of the neuron's firing mass in the atlas (? without an atlas of this layer) and "
            "**promotes** is the top token on that side: a neuron that fires negative writes −W_out, so it "
            "promotes its `out_bottom` token. Open one in the neuron explorer with `?neuron=L.N`.")
st.dataframe(call("layer_neurons", layer), hide_index=True, width="stretch", height=400)
