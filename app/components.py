"""Small page pieces shared by the dashboard pages: neuron links and the job panel."""

from __future__ import annotations

import streamlit as st
from state import show_error, workbench


def neuron_link(layer: int, index: int) -> str:
    return f"[{layer}.{index}](./neuron_explorer?neuron={layer}.{index})"


def start_job(key: str, analysis: str, **options) -> None:
    """Submit ``analysis`` as a background job and remember it under ``key`` for this session."""
    try:
        st.session_state[key] = workbench().submit(analysis, **options).id
    except Exception as exc:
        show_error(exc)


def job_panel(key: str) -> None:
    """Progress and a cancel button for this session's job under ``key``. When the job ends the
    page reruns (to show the new Result) and says once how it ended."""
    flash = st.session_state.pop(f"{key}-flash", None)
    if flash:
        getattr(st, flash[0])(flash[1])
    job_id = st.session_state.get(key)
    job = workbench().jobs.get(job_id) if job_id else None
    if job is None:
        return

    @st.fragment(run_every=1.0)
    def panel():
        if not job.finished:
            st.progress(job.progress, text=job.message or f"{job.label}: {job.status}")
            if st.button("Cancel", key=f"cancel-{key}"):
                job.cancel()
            return
        st.session_state.pop(key, None)
        st.session_state[f"{key}-flash"] = {
            "failed": ("error", job.error),
            "cancelled": ("warning", f"{job.label} was cancelled; no Result was stored"),
        }.get(job.status, ("success", f"{job.label} finished: {getattr(job.result, 'run_id', '')}"))
        st.rerun()

    panel()
