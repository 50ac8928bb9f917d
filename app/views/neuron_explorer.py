"""Neuron explorer: pick a neuron (or search by token), see its decoded tokens,
weight norms, and clamp it live on a prompt."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import streamlit as st
from components import neuron_link
from state import get_atlas, model_and_decoding

from interp.analyses.clamping import clamped_generation, next_token_table
from interp.analyses.lm_head_decoding import neuron_tokens, neurons_for
from interp.analyses.neuron_atlas import contexts
from interp.errors import InterpError
from interp.viz.atlas import context_html, histogram, scale_of
from interp.viz.decoding import promoters_bar, token_bars

st.title("Neuron explorer")
spec, model, decoding = model_and_decoding()
st.caption(f"`{spec}`: {model.n_layers} layers × {model.d_mlp} neurons; "
           "activation = input of the MLP's output projection (`blocks.L.mlp.hook_post`)")

if "neuron" not in st.session_state:  # from ?neuron=L.N, else the top " Paris" promoter
    first = neurons_for(decoding, model.token_id(" Paris", policy="first"), k=1).iloc[0]
    st.session_state.neuron = st.query_params.get("neuron", f"{int(first.layer)}.{int(first.neuron)}")

# --- search by token -----------------------------------------------------------------
with st.expander("Search by token: which neurons most promote it?", expanded=True):
    default = model.token_str(model.token_id(" Paris", policy="first"))  # " Paris" where it is one token
    token = st.text_input("Token (mind the leading space)", value=default, key="token_query")
    try:
        token_id = model.token_id(token)
        table = neurons_for(decoding, token_id, k=10)
        cols = st.columns([2, 3])
        cols[0].markdown("\n".join(
            f"{r.rank + 1}. {neuron_link(r.layer, r.neuron)} &nbsp; score {r.score:+.2f}" for r in table.itertuples()
        ))
        cols[1].plotly_chart(promoters_bar(table, token), width="stretch")
        picked = cols[0].selectbox("Open one", [f"{l}.{n}" for l, n in zip(table.layer, table.neuron)],
                                   key="token_pick")
        if cols[0].button("Open this neuron", key="open_from_token"):
            st.session_state.neuron = picked
    except InterpError as exc:
        st.error(str(exc))

# --- the neuron ------------------------------------------------------------------------
text = st.text_input("Neuron (layer.index)", key="neuron")
try:
    nid = model.check_neuron(text)
except InterpError as exc:
    st.error(str(exc))
    st.stop()
st.query_params["neuron"] = str(nid)

rows = neuron_tokens(decoding, nid.layer, nid.index)
summary = decoding.table("neurons")
info = summary[(summary.layer == nid.layer) & (summary.neuron == nid.index)].iloc[0]
st.subheader(f"Neuron {nid}")
norm_cols = [c for c in summary.columns if c.endswith("_norm")]
metric_cols = st.columns(len(norm_cols) + 1)
for col, name in zip(metric_cols, norm_cols):
    layer_median = summary[summary.layer == nid.layer][name].median()
    col.metric(f"‖{name.removesuffix('_norm')}‖", f"{info[name]:.3f}",
               f"{info[name] / layer_median - 1:+.0%} vs layer median", delta_color="off")
metric_cols[-1].metric("top promoted", repr(info["out_top"]))

st.markdown("**Output side**: what the neuron writes, read through the unembedding (final-norm weight folded in). "
            "A negative activation swaps promoted and suppressed.")
c1, c2 = st.columns(2)
c1.plotly_chart(token_bars(rows, "out+"), width="stretch", key="out+")
c2.plotly_chart(token_bars(rows, "out-"), width="stretch", key="out-")
st.markdown("**Input side**: which token embeddings most excite what the neuron reads "
            "(MLP-norm weight folded in). For GLU models, gate and up are shown separately.")
sides = [s for s in ("up+", "up-", "gate+", "gate-") if (rows.side == s).any()]
for i in range(0, len(sides), 2):
    cols = st.columns(2)
    for col, side in zip(cols, sides[i:i + 2]):
        col.plotly_chart(token_bars(rows, side), width="stretch", key=side)

# --- live clamp --------------------------------------------------------------------------
st.subheader("Clamp it live")
with st.form("clamp"):
    prompt = st.text_area("Prompt", value="Let me tell you about", height=70)
    c1, c2 = st.columns(2)
    value_text = c1.text_input("Clamp value (activation)", value="20")
    n_new = c2.slider("Tokens to generate (clamp held)", 0, 40, 20)
    submitted = st.form_submit_button("Run")
if submitted:
    try:
        value = float(value_text)
    except ValueError:
        value = None
        st.error(f"clamp value must be a number, got {value_text!r}")
    if value is not None and not math.isfinite(value):
        value = None
        st.error(f"clamp value must be a finite number, got {value_text!r}")
    if value is not None:
        try:
            table = next_token_table(model, prompt, [nid], value, k=8)
            fig = go.Figure([go.Bar(name="before", y=[repr(t) for t in table.token], x=table.p_before,
                                    orientation="h", marker_color="#a0aec0"),
                             go.Bar(name=f"clamped to {value:g}", y=[repr(t) for t in table.token], x=table.p_after,
                                    orientation="h", marker_color="#2b6cb0")])
            fig.update_layout(barmode="group", yaxis={"autorange": "reversed"}, height=30 * len(table) + 120,
                              title="Next-token probability", xaxis_title="probability")
            st.plotly_chart(fig, width="stretch", key="clamp_fig")
            if n_new:
                plain, clamped = clamped_generation(model, model.to_tokens(prompt), [nid], value, n_new)
                st.markdown(f"**Before:** {prompt}*{plain}*")
                st.markdown(f"**Clamped:** {prompt}*{clamped}*")
        except InterpError as exc:
            st.error(str(exc))

# --- the atlas: what text makes it fire ----------------------------------------------------
st.subheader("What makes it fire")
atlas = get_atlas(spec)
if atlas is None:
    st.info("No neuron atlas for this model yet: `interp atlas --corpus sampled:4096+stdlib-docs --tokens 16384` "
            "(or `make run`) builds one.")
elif nid.layer not in atlas.tensors["layers"].tolist():
    st.info(f"The stored atlas covers layers {atlas.tensors['layers'].tolist()}, not {nid.layer}.")
else:
    stats = atlas.table("neurons")
    row = stats[(stats.layer == nid.layer) & (stats.neuron == nid.index)].iloc[0]
    st.caption(f"Over {atlas.metrics['tokens']:,} tokens of `{atlas.metrics['corpus']}` "
               f"(run `{atlas.run_id}`); quantiles are read from the histogram bins.")
    cols = st.columns(6)
    for col, (label, value) in zip(cols, [("max", row["max"]), ("min", row["min"]), ("mean", row["mean"]),
                                          ("std", row["var"] ** 0.5), ("median", row["q50"]),
                                          ("positive", f"{row['frac_positive']:.1%}")]):
        col.metric(label, value if isinstance(value, str) else f"{value:+.3f}")
    st.plotly_chart(histogram(atlas, nid.layer, nid.index), width="stretch", key="atlas_hist")
    for which, title in (("top", "Top activations"), ("bottom", "Most negative activations")):
        try:
            ctxs = contexts(model, atlas, nid.layer, nid.index, which, k=10, width=12)
        except InterpError as exc:
            st.error(str(exc))
            continue
        st.markdown(f"**{title}** (blue: positive, red: negative; the example's token is outlined; "
                    "hover a token for its activation)")
        scale = scale_of(ctxs)
        st.html("".join(context_html(c, scale) for c in ctxs))
