"""Causal tracing (ROME) and constrained unlearning (SHA256, SemEval-2025 Task 4)."""

from __future__ import annotations

from pathlib import Path

import plotly.express as px
import streamlit as st
import torch
from state import get_model, newest_result, page_model, show_error

import interp
from interp.generation import generate
from interp.viz.causal_tracing import trace_heatmaps, unlearning_bars

st.title("Causal tracing & unlearning")
st.caption("ROME's causal tracing (Meng et al., 2022) locates where a fact is recalled; "
           "Selective Amnesia (SHA256, SemEval-2025 Task 4) then trains only those MLPs to forget it.")
spec, model = page_model()



st.header("Causal tracing")
with st.expander("Trace facts", expanded=False):
    with st.form("trace"):
        c = st.columns(3)
        facts = c[0].text_input("Facts", "builtin:capitals")
        n = c[1].number_input("Facts to trace", 1, 100, 2)
        samples = c[2].number_input("Noise samples", 1, 50, 3)
        if st.form_submit_button("Trace"):
            try:
                with st.spinner("Tracing…"):
                    interp.run("causal_tracing", model, facts=facts, n=int(n), samples=int(samples))
            except Exception as exc:
                show_error(exc)
traced = newest_result("causal_tracing", model)
if traced is None:
    st.info("No causal-tracing run of this model yet: trace above, or `interp trace --facts builtin:capitals`.")
else:
    for note in traced.notes:
        st.info(note)
    facts_df = traced.table("facts")
    options = [None, *facts_df.fact.tolist()]
    labels = {r.fact: f"{r.prompt} →{r.answer} (p {r.p_clean:.2f} → {r.p_corrupt:.2f} corrupted)"
              for r in facts_df.itertuples()}
    which = st.selectbox("Fact", options, format_func=lambda f: "mean over facts (by token role)" if f is None
                         else labels[f])
    figs = trace_heatmaps(traced, which)
    cols = st.columns(len(figs))
    for col, (name, fig) in zip(cols, figs.items()):
        col.plotly_chart(fig, width="stretch", key=f"trace-{name}")

st.header("Unlearning")
result = newest_result("unlearning", model)
if result is None:
    st.info("No unlearning run of this model yet: `interp unlearn` (about 3 minutes on 2 CPU cores).")
    st.stop()
for note in result.notes:
    st.info(note)
st.caption(f"MLP layers {result.metrics['layers']} (from {result.metrics['layers_from']}); "
           f"{result.metrics['n_forget']} facts to forget, {result.metrics['n_retain']} to retain ({result.run_id})")
cols = st.columns(2)
cols[0].plotly_chart(unlearning_bars(result), width="stretch", key="ul-bars")
log = result.table("log")
if len(log):
    fig = px.line(log, x="step", y=["forget_ce", "retain_ce"], facet_col="run", title="Training losses")
    cols[1].plotly_chart(fig, width="stretch", key="ul-log")
st.dataframe(result.table("summary"), hide_index=True)

st.subheader("Ask the original and the edited model")
variant = st.radio("Edited model", [v for v in ("constrained", "unconstrained") if v in result.metrics],
                   horizontal=True)
prompt = st.text_input("Prompt", "The capital of France is")
edit_dir = Path(result.metrics[variant]["edit"])
if not (edit_dir / "interp_edit.json").is_file():
    st.info(f"The edited weights of this run are not on this machine ({edit_dir}); "
            "`interp unlearn` writes them (committed runs keep only their tables).")
elif prompt.strip():
    try:
        edited = get_model(str(edit_dir))
        cols = st.columns(2)
        for col, (name, m) in zip(cols, [("original", model), (variant, edited)]):
            tokens = m.to_tokens(prompt)
            with torch.no_grad():
                out = generate(m, tokens, 8)
            col.markdown(f"**{name}**: {prompt}**{m.tokenizer.decode(out[0].tolist())}**")
    except Exception as exc:
        show_error(exc)
