"""Dashboard state: the model loads once per process; Results are cached by path.

This is the only place that combines streamlit caching with interp; the library
never imports streamlit.
"""

from __future__ import annotations

import os

import streamlit as st

import interp
from interp.analyses.base import cached_run
from interp.errors import InterpError
from interp.storage import runs_root


def model_spec() -> str:
    return os.environ.get("INTERP_MODEL", "smollm2-135m")


@st.cache_resource(show_spinner="Loading the model (once per process)…")
def get_model(spec: str):
    return interp.load_model(spec)


def get_decoding(spec: str):
    """The decoding Result for ``spec`` from the current store (built once if missing)."""
    return _decoding(spec, str(runs_root().resolve()))


@st.cache_resource(show_spinner="Decoding every neuron through the LM head (once; then cached on disk)…")
def _decoding(spec: str, runs: str):
    return cached_run("lm_head_decoding", get_model(spec))


@st.cache_resource(show_spinner=False)
def get_result(path: str):
    return interp.load_result(path)


def show_error(exc: Exception) -> None:
    """User errors as a one-line message; anything else as the exception."""
    if isinstance(exc, InterpError):
        st.error(str(exc))
    else:
        st.exception(exc)


def model_and_decoding():
    """``(spec, model, decoding)`` for the page, or an error message and a stopped page."""
    spec = model_spec()
    try:
        return spec, get_model(spec), get_decoding(spec)
    except Exception as exc:
        show_error(exc)
        st.stop()


def get_atlas(spec: str):
    """The newest stored neuron atlas of this model, or None (``make run`` builds one)."""
    return newest_result("neuron_atlas", get_model(spec))


def page_model():
    """``(spec, model)`` for a page, or an error message and a stopped page."""
    spec = model_spec()
    try:
        return spec, get_model(spec)
    except Exception as exc:
        show_error(exc)
        st.stop()


def newest_result(analysis: str, model):
    """The newest stored Result of ``analysis`` computed on this model's weights, or None."""
    from interp.storage import list_runs

    runs = list_runs(analysis)
    runs = runs[runs.weights_hash == model.weights_hash] if len(runs) else runs
    return get_result(runs.path.iloc[0]) if len(runs) else None
