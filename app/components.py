"""Small page pieces shared by the dashboard pages: neuron links, the job panel, the run chooser."""

from __future__ import annotations

import html
import math
from urllib.parse import quote

import streamlit as st
from state import show_error, workbench


def neuron_input(key: str, where=st, help: str | None = None):
    """A "layer.index" box (``key`` in the session state), checked against the model: the NeuronId, put
    into the URL as ``?neuron=``; a bad neuron stops the page with a one-line message."""
    text = where.text_input("Neuron (layer.index)", key=key, help=help)
    try:
        nid = workbench().check_neuron(text)
    except Exception as exc:
        show_error(exc)
        st.stop()
    if st.query_params.get("neuron") != str(nid):  # writing the URL when it is already right costs a round trip
        st.query_params["neuron"] = str(nid)
    return nid


def clamp_value(text: str) -> float | None:
    """The clamp value typed in, or None after a one-line message when it is not a finite number."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):
        st.error(f"clamp value must be a finite number, got {text!r}")
        return None
    return value


def clamp_form(key: str, button: str, n_default: int = 16) -> tuple[str, float, int] | None:
    """A prompt, a clamp value and a number of tokens to generate; (prompt, value, n) once submitted with
    a finite value, else None (a bad value gets a one-line message)."""
    with st.form(key):
        c1, c2, c3 = st.columns([3, 1, 1])
        prompt = c1.text_input("Prompt", value="Let me tell you about", key=f"{key}-prompt")
        value_text = c2.text_input("Clamp value", value="20", help="the activation to hold the neuron at",
                                   key=f"{key}-value")
        n_new = c3.number_input("Tokens", 0, 40, n_default, help="greedy tokens to generate, clamp held")
        submitted = st.form_submit_button(button)
    value = clamp_value(value_text) if submitted else None
    return None if value is None else (prompt, value, int(n_new))


def card_url(layer: int, index: int) -> str:
    """The neuron card's URL (relative), on this session's model."""
    return f"./neuron?model={quote(workbench().spec, safe='')}&neuron={layer}.{index}"


def neuron_link(layer: int, index: int) -> str:
    """A markdown link to the neuron's card."""
    return f"[{layer}.{index}]({card_url(layer, index)})"


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


def continuation(label: str, prompt: str, generated: str, where=st) -> None:
    """``label: prompt`` and the model's continuation (in blue, italic), as escaped HTML: a prompt or a generation
    is shown as typed, never read as markdown (no stray asterisks, no image a generation could make the page
    fetch), with its newlines shown as ⏎."""
    def one_line(text: str) -> str:
        return html.escape(text).replace("\n", " ⏎ ")

    where.html(f"<div style='margin:4px 0'><b>{html.escape(label)}:</b> {one_line(prompt)}"
               f"<i style='color:#2b6cb0'>{one_line(generated)}</i></div>")


def choose_run(analysis: str, what: str):
    """The run a page shows for ``analysis``: the pinned one, else the newest (``wb.latest``), named in a caption
    (id, date, the config fields that tell runs apart), with a popover to pin another run of this model or to
    unpin. A pin is kept in the store (``<store>/pins.json``), so every tab, restart and the card see it.
    Returns the Result, or None when the model has no run of ``analysis``."""
    from state import call

    wb = workbench()
    runs = call("run_choices", analysis)
    if not len(runs):
        return None
    first = runs.iloc[0]
    c = st.columns([5, 1])
    c[0].caption(f"{what} from run {first.label}" + ("" if first.pinned else " · the newest; pin another →"
                                                     if len(runs) > 1 else ""))
    with c[1].popover("Runs", help=f"{len(runs)} run(s) of {analysis} on this model"):
        labels = dict(zip(runs.path, runs.label))
        pick = st.selectbox("Run", list(runs.path), format_func=labels.get, key=f"pick-{analysis}")
        if st.button("Pin this run", key=f"pin-{analysis}"):
            wb.pin(pick)
            st.rerun()
        if first.pinned and st.button("Unpin (use the newest)", key=f"unpin-{analysis}"):
            wb.unpin(analysis)
            st.rerun()
    return wb.result(first.path)
