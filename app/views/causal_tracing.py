"""Causal tracing (ROME) and unlearning (SHA256's constrained training, NPO, a rank-one edit, MEMIT, RMU)."""

from __future__ import annotations

import plotly.express as px
import streamlit as st
from components import choose_run, continuation, job_panel, start_job
from state import call, show_error, workbench

from interp.viz.causal_tracing import trace_heatmaps, unlearning_bars

st.title("Causal tracing & unlearning")
st.caption("ROME's causal tracing (Meng et al., 2022) locates where a fact is recalled; "
           "Selective Amnesia (SHA256, SemEval-2025 Task 4) then trains only those MLPs to forget it.")
wb = workbench()

st.header("Causal tracing")
with st.expander("Trace facts", expanded=False):
    with st.form("trace"):
        c = st.columns(3)
        facts = c[0].text_input("Facts", "builtin:capitals")
        n = c[1].number_input("Facts to trace", 1, 100, 2)
        samples = c[2].number_input("Noise samples", 1, 50, 3)
        if st.form_submit_button("Trace"):
            start_job("trace-job", "causal_tracing", facts=facts, n=int(n), samples=int(samples))
    job_panel("trace-job")
traced = choose_run("causal_tracing", "Traces")
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
with st.expander("Unlearn the forget set", expanded=False):
    st.caption("Trains a private copy of the model (the shared one is never edited); about 3 minutes on 2 CPU "
               "cores for the embedded model.")
    if st.button("Run unlearning (SHA256, NPO, rank-one, MEMIT, RMU)"):
        start_job("unlearn-job", "unlearning")
    job_panel("unlearn-job")
result = choose_run("unlearning", "Figures and the edited models")
if result is None:
    st.info("No unlearning run of this model yet: run it above, or `interp unlearn`.")
    st.stop()
for note in result.notes:
    st.info(note)
m = result.metrics
st.caption(f"Split: forget `{result.config.forget}`, retain `{result.config.retain}` · MLP layers "
           f"{m['layers']} (from {m['layers_from']}); {m['n_forget']} facts to forget; of the retain facts the "
           f"methods used {m.get('n_retain_used', '?')}, and {m['n_retain']} they never saw give retain kept "
           f"({result.run_id})")
cols = st.columns(2)
cols[0].plotly_chart(unlearning_bars(result), width="stretch", key="ul-bars")
log = result.table("log")
if len(log):
    fig = px.line(log, x="step", y=["forget_ce", "retain_ce"], facet_col="run", facet_col_wrap=4,
                  title="Training losses (memit: the target's margin loss per round)", height=420)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    cols[1].plotly_chart(fig, width="stretch", key="ul-log")
st.dataframe(result.table("summary"), hide_index=True)
if "split" in result.tables:
    with st.expander("The split: which retain facts the methods used, and which they never saw"):
        st.dataframe(result.table("split"), hide_index=True)

st.subheader("Ask the original and the edited model")
variant = st.radio("Edited model", [v for v in ("constrained", "unconstrained", "npo", "rank_one", "memit", "rmu")
                                    if v in result.metrics], horizontal=True)
edit = result.metrics[variant]["edit"]
if not wb.has_edit(edit):  # a committed run ships its tables, not its edited weights (tens of MB per variant)
    st.info(f"The {variant} model's edited weights are not on this machine (committed runs keep only their "
            "tables). Rebuild them: this runs unlearning again with this run's config, as a job (about 3 "
            "minutes for the embedded model on 2 CPU cores) and stores a new run beside it.")
    if st.button("Rebuild the edited models", key="rebuild-edits"):
        start_job("rebuild-job", "unlearning", **result.config.to_dict())
    job_panel("rebuild-job")
    st.stop()
prompt = st.text_input("Prompt", "The capital of France is")
if prompt.strip():
    try:
        answers = call("ask", prompt, edit)
        cols = st.columns(2)
        for col, name, key in ((cols[0], "original", "original"), (cols[1], variant, "edited")):
            continuation(name, prompt, answers[key], where=col)
    except Exception as exc:
        show_error(exc)
