"""Runs browser: every stored Result, its metrics, notes and figures."""

from __future__ import annotations

import json

import streamlit as st
from state import call, model_picker, model_spec, show_error, workbench

from interp.viz import figures

model_picker()  # only here: on every page, a sidebar widget cost each page load a slow tail (0.3-0.5 s)
wb = workbench()
runs = call("runs")
st.title("interp: MLP-neuron workbench")
st.caption(f"Model: `{model_spec()}` · runs from the store ($INTERP_RUNS)")

if runs.empty:
    st.info("No stored runs yet. `make run` builds the LM-head decoding; `interp --help` lists the analyses.")
    st.stop()

analyses = ["all", *sorted(runs.analysis.unique())]
which = st.selectbox("Analysis", analyses)
shown = runs if which == "all" else runs[runs.analysis == which]
st.dataframe(shown[["created", "analysis", "model", "run_id", "metrics"]], hide_index=True, width="stretch")

labels = {r.path: f"{r.analysis} · {r.run_id}" for r in shown.itertuples()}
choice = st.selectbox("Open a run", shown.path.tolist(), format_func=labels.get)
if choice:
    try:
        result = wb.result(choice)
        st.subheader(f"{result.analysis} · {result.run_id}")
        for note in result.notes:
            st.warning(note)
        cols = st.columns(2)
        cols[0].markdown("**Metrics**")
        cols[0].json(json.loads(json.dumps(result.metrics, default=str)), expanded=False)
        cols[1].markdown("**Config and provenance**")
        cols[1].json({"config": result.config.to_dict(), "provenance": result.provenance}, expanded=False)
        for name, fig in figures(result).items():
            st.plotly_chart(fig, width="stretch", key=f"fig-{name}")
    except Exception as exc:  # a run from an older format, a missing file
        show_error(exc)
