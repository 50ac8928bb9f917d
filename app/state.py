"""Dashboard state: one Workbench per model per process, and the cache in front of it.

This is the only place that combines streamlit caching with interp; the library never
imports streamlit, and pages import only ``interp.workbench`` and ``interp.viz``.

- ``workbench()``: the page's Workbench (``st.cache_resource``: the model loads once);
- ``call(method, *args)``: a facade call, cached once with ``st.cache_data`` keyed on the
  weights hash, the method and its arguments. Arguments that name a stored run are its
  path and modification time (``ref``), so a re-saved run is read again.
"""

from __future__ import annotations

import os

import streamlit as st

from interp.workbench import DEFAULT_MODEL, EMBEDDED_MODELS, InterpError, Workbench

OTHER = "another model…"


def model_spec() -> str:
    """This session's model: the picker's choice, else the URL's ``?model=``, else ``$INTERP_MODEL``."""
    if "model_spec" not in st.session_state:
        st.session_state.model_spec = st.query_params.get("model") or os.environ.get("INTERP_MODEL", DEFAULT_MODEL)
    return st.session_state.model_spec


def model_picker() -> None:
    """The sidebar's model picker: the embedded models, or any spec typed in (a .gguf file, a
    Hugging Face id, a local directory). The choice is this session's and goes into the URL."""
    current = model_spec()
    options = [*EMBEDDED_MODELS, OTHER]
    pick = st.sidebar.selectbox("Model", options, index=options.index(current) if current in EMBEDDED_MODELS
                                else len(options) - 1, help="Embedded models need no network; any other spec "
                                "loads once per dashboard process")
    spec = pick
    if pick == OTHER:
        typed = st.sidebar.text_input("Model spec", value="" if current in EMBEDDED_MODELS else current,
                                      placeholder="org/name, /path/to/model or file.gguf").strip()
        spec = typed or current
    if spec != current:
        st.session_state.model_spec = spec
        st.rerun()
    st.query_params["model"] = spec


@st.cache_resource(show_spinner="Loading the model (once per process)…")
def _workbench(spec: str) -> Workbench:
    return Workbench(spec)


def show_error(exc: Exception) -> None:
    """User errors as a one-line message; anything else as the exception."""
    if isinstance(exc, InterpError):
        st.error(str(exc))
    else:
        st.exception(exc)


def workbench() -> Workbench:
    """The Workbench of this dashboard's model, or an error message and a stopped page."""
    try:
        return _workbench(model_spec())
    except Exception as exc:
        show_error(exc)
        st.stop()


@st.cache_data(show_spinner=False, max_entries=512)
def _call(spec: str, weights_hash: str, method: str, args: tuple, kwargs: tuple, runs_stamp: tuple,
          store_stamp: tuple):
    return getattr(_workbench(spec), method)(*args, **dict(kwargs))


def _stamp(value) -> float | None:
    """The modification time of a stored run named by ``value`` (None for any other argument)."""
    if isinstance(value, str) and value:
        try:
            return os.stat(os.path.join(value, "result.json")).st_mtime
        except OSError:
            return None
    return None


def call(method: str, *args, **kwargs):
    """``workbench().method(*args, **kwargs)``, computed once per weights, arguments, the modification times
    of the stored runs among the arguments and the store's stamp (a run stored or removed anywhere reads
    again). Methods that return a whole Result go through the workbench's own cache instead (``wb.result``)."""
    wb = workbench()
    stamp = tuple(_stamp(v) for v in (*args, *kwargs.values()))
    return _call(wb.spec, wb.weights_hash, method, args, tuple(sorted(kwargs.items())), stamp, wb.store_stamp())


def decoding():
    """The decoding Result (built once and stored the first time; shown with a spinner)."""
    wb = workbench()
    try:
        with st.spinner("Decoding every neuron through the LM head (once; then reused from the store)…"):
            return wb.decoding()
    except Exception as exc:
        show_error(exc)
        st.stop()
