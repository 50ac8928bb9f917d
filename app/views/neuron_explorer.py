"""Neuron explorer: pick a neuron (or search by token), see its decoded tokens,
weight norms, and clamp it live on a prompt."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
from components import clamp_form, continuation, neuron_input, neuron_link
from state import call, decoding, show_error, workbench

from interp.viz.atlas import context_html, histogram, scale_of
from interp.viz.decoding import promoters_bar, token_bars

st.title("Neuron explorer")
wb = workbench()
info = wb.info()
decoding()  # a model without a stored decoding shows its build (estimate, progress, Cancel) and stops here
st.caption(f"`{wb.spec}`: {info['n_layers']} layers × {info['d_mlp']} neurons; "
           "activation = input of the MLP's output projection (`blocks.L.mlp.hook_post`)")
default_token = wb.default_token(" Paris")  # " Paris" where it is one token

if "neuron" not in st.session_state:  # from ?neuron=L.N, else the neuron most specific to " Paris"
    first = call("neurons_for", default_token, k=1, by="specificity").iloc[0]
    st.session_state.neuron = st.query_params.get("neuron", f"{int(first.layer)}.{int(first.neuron)}")

def open_one(found, pick_key: str, button_key: str, where=st) -> None:
    """Pick one of the listed neurons and show it below (the search results' "Open this neuron")."""
    picked = where.selectbox("Open one", [f"{l}.{n}" for l, n in zip(found.layer, found.neuron)], key=pick_key)
    if where.button("Open this neuron", key=button_key):
        st.session_state.neuron = picked


# --- search by token -----------------------------------------------------------------
with st.expander("Search by token: which neurons promote it?", expanded=True):
    c1, c2 = st.columns([3, 2])
    token = c1.text_input("Token (mind the leading space)", value=default_token, key="token_query")
    by = c2.radio("Rank by", ["specificity", "raw"], horizontal=True, key="token_rank",
                  help="specificity: neurons with the token among their own top-10 promoted tokens first (on the "
                       "side their typical activation takes), then by the token's z-score in their own decoding, "
                       "weighted by their typical |activation| in the atlas. raw: the dot product W_out·W_U, which "
                       "favours high-norm neurons and sees positive scores only.")
    try:
        table = call("neurons_for", token, k=10, by=by)
        if len(table) and st.session_state.get("token_shown") != (token, by):  # a new search shows its first neuron
            if "token_shown" in st.session_state:
                st.session_state.neuron = f"{int(table.layer.iloc[0])}.{int(table.neuron.iloc[0])}"
            st.session_state.token_shown = (token, by)
        cols = st.columns([2, 3])
        if by == "specificity":
            def own(r) -> str:
                ranked = r.own_rank == r.own_rank  # NaN beyond the decoding's top-k
                return f"**#{int(r.own_rank) + 1} in its own list**" if ranked else "beyond its top 20"

            lines = [f"{r.rank + 1}. {neuron_link(r.layer, r.neuron)} ({r.side}) &nbsp; {own(r)}, z {r.z:+.1f}"
                     for r in table.itertuples()]
        else:
            lines = [f"{r.rank + 1}. {neuron_link(r.layer, r.neuron)} &nbsp; score {r.score:+.2f}"
                     for r in table.itertuples()]
        cols[0].markdown("\n".join(lines))
        cols[1].plotly_chart(promoters_bar(table, token), width="stretch")
        open_one(table, "token_pick", "open_from_token", cols[0])
    except Exception as exc:
        show_error(exc)

# --- search explanations -----------------------------------------------------------------
with st.expander("Search explanations: which neurons are about something?", expanded=False):
    query = st.text_input("Words (every one must match a label, an LLM explanation or a token it fires on)",
                          value="", key="explain_query", placeholder="France")
    if query:
        try:
            found = call("search_explanations", query, k=20)
            if not len(found):
                st.info("No stored explanation matches (or none is stored: `interp explain` builds them).")
            else:
                st.caption("Labels are token statistics, not prose. i.i.d. corr: the explanation's correlation with "
                           "the neuron on held-out tokens; flagged: it does not beat random explanations.")
                st.markdown("\n".join(  # labels hold corpus text: in code spans, with their backticks replaced
                    f"{i + 1}. {neuron_link(r.layer, r.neuron)} &nbsp; i.i.d. corr {r.iid_corr:.2f}"
                    f"{' (flagged)' if r.flagged else ''} &nbsp; `{r.label.replace('`', 'ˋ')}`"
                    for i, r in enumerate(found.itertuples())))
                open_one(found, "explain_pick", "open_from_explanation")
        except Exception as exc:
            show_error(exc)

# --- the neuron ------------------------------------------------------------------------
nid = neuron_input("neuron")

rows = call("neuron_decoding", str(nid))
norms = call("neuron_norms", str(nid))
st.subheader(f"Neuron {nid}")
explained = call("explanation", str(nid))
if explained:
    iid = explained["scores"]["iid_corr"]
    st.markdown(f"**What it does** (token statistics, not prose): `{explained['label'].replace('`', 'ˋ')}`")
    st.caption(f"held-out i.i.d. correlation {iid['score']:.2f} (a random explanation: {iid['random']:.2f})"
               + (" — flagged: it does not beat random explanations" if explained["flagged"] else "")
               + "; the card shows every score and baseline")
metric_cols = st.columns(len(norms["norms"]) + 1)
for col, (side, value) in zip(metric_cols, norms["norms"].items()):
    col.metric(f"‖{side}‖", f"{value:.3f}", f"{value / norms['layer_median'][side] - 1:+.0%} vs layer median",
               delta_color="off")
metric_cols[-1].metric("top promoted", repr(norms["top_promoted"]))

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
asked = clamp_form("clamp", "Run", n_default=20)
if asked:
    prompt, value, n_new = asked
    try:
        preview = call("clamp_preview", prompt, (str(nid),), value, k=8, n_generate=n_new)
        table = preview["table"]
        fig = go.Figure([go.Bar(name="before", y=[repr(t) for t in table.token], x=table.p_before,
                                orientation="h", marker_color="#a0aec0"),
                         go.Bar(name=f"clamped to {value:g}", y=[repr(t) for t in table.token], x=table.p_after,
                                orientation="h", marker_color="#2b6cb0")])
        fig.update_layout(barmode="group", yaxis={"autorange": "reversed"}, height=30 * len(table) + 120,
                          title="Next-token probability", xaxis_title="probability")
        st.plotly_chart(fig, width="stretch", key="clamp_fig")
        if n_new:
            continuation("Before", prompt, preview["before"])
            continuation(f"Clamped to {value:g}", prompt, preview["after"])
    except Exception as exc:
        show_error(exc)

# --- the atlas: what text makes it fire ----------------------------------------------------
st.subheader("What makes it fire")
atlas_path = call("atlas_path")
activity = call("neuron_activity", atlas_path, str(nid)) if atlas_path else None
if atlas_path is None:
    st.info("No neuron atlas for this model yet: `interp atlas --corpus sampled:4096+stdlib-docs --tokens 16384` "
            "(or `make run`) builds one.")
elif activity is None:
    st.info(f"The stored atlas covers layers {wb.result(atlas_path).tensors['layers'].tolist()}, not {nid.layer}.")
else:
    atlas = wb.result(atlas_path)
    st.caption(f"Over {atlas.metrics['tokens']:,} tokens of `{atlas.metrics['corpus']}` "
               f"(run `{atlas.run_id}`); quantiles are read from the histogram bins.")
    cols = st.columns(6)
    for col, (label, value) in zip(cols, [("max", activity["max"]), ("min", activity["min"]),
                                          ("mean", activity["mean"]), ("std", activity["var"] ** 0.5),
                                          ("median", activity["q50"]),
                                          ("density", f"{activity['density']:.1%}") if "density" in activity
                                          else ("positive", f"{activity['frac_positive']:.1%}")]):
        col.metric(label, value if isinstance(value, str) else f"{value:+.3f}")
    st.plotly_chart(histogram(atlas, nid.layer, nid.index), width="stretch", key="atlas_hist")
    for which, title in (("top", "Top activations"), ("bottom", "Most negative activations")):
        try:
            ctxs = call("contexts", atlas_path, str(nid), which)  # what the atlas stored: no forward pass
        except Exception as exc:
            show_error(exc)
            continue
        st.markdown(f"**{title}** (blue: positive, red: negative; the example's token is outlined; "
                    "hover a token for its activation)")
        scale = scale_of(ctxs)
        st.html("".join(context_html(c, scale) for c in ctxs))
