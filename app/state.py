"""Dashboard state: one Workbench per model per process, and the cache in front of it.

This is the only place that combines streamlit caching with interp; the library never
imports streamlit, and pages import only ``interp.workbench`` and ``interp.viz``.

- ``workbench()``: the page's Workbench (``st.cache_resource``: the model loads once);
- ``call(method, *args)``: a facade call, cached once with ``st.cache_data`` keyed on the
  weights hash, the method and its arguments. Arguments that name a stored run are its
  path and modification time (``ref``), so a re-saved run is read again.
"""

from __future__ import annotations

import ctypes
import gc
import os

import streamlit as st

from interp.workbench import DEFAULT_MODEL, EMBEDDED_MODELS, InterpError, Workbench

OTHER = "another model…"
COMMANDS = {"lm_head_decoding": "decode", "neuron_atlas": "atlas"}  # the CLI command that builds an analysis


def model_spec() -> str:
    """This session's model: the picker's choice, else the URL's ``?model=``, else ``$INTERP_MODEL``."""
    if "model_spec" not in st.session_state:
        st.session_state.model_spec = st.query_params.get("model") or os.environ.get("INTERP_MODEL", DEFAULT_MODEL)
    return st.session_state.model_spec


def model_picker() -> None:
    """The Runs page's model picker (in its sidebar): the embedded models, or any spec typed in (a .gguf file, a
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
    if st.query_params.get("model") != spec:
        st.query_params["model"] = spec


def _one_malloc_arena() -> None:
    """Every page load runs in a new thread, and glibc gives threads their own malloc arenas, which keep what
    they freed: the server grew ~10 MB a card. `make run` sets MALLOC_ARENA_MAX=2; this caps arenas created
    from now on for a server started otherwise (glibc only; elsewhere a no-op)."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


@st.cache_resource(show_spinner="Loading the model (once per process)…")
def _workbench(spec: str) -> Workbench:
    _one_malloc_arena()
    wb = Workbench(spec)
    # Streamlit collects garbage (gc.collect(2)) after every script run; over torch, transformers and the
    # model that walk took 0.3-0.5 s of every page load (py-spy). Frozen objects are not walked again.
    gc.collect()
    gc.freeze()
    return wb


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
    """The decoding Result. When this model has none stored (a model switched to in the browser), nothing is
    built behind a spinner: the page shows the build's preflight estimate and a Build button; the build is a
    job with a progress bar and Cancel (``build_panel``), and the page stops until it is stored."""
    wb = workbench()
    try:
        if not wb.is_stored("lm_head_decoding"):
            build_panel("lm_head_decoding", "LM-head decoding of every neuron")
            st.stop()
        return wb.decoding()
    except Exception as exc:
        show_error(exc)
        st.stop()


@st.cache_data(show_spinner=False, max_entries=16)
def _estimate(spec: str, weights_hash: str, analysis: str) -> dict:
    return _workbench(spec).build_estimate(analysis)


def build_panel(analysis: str, what: str) -> None:
    """A build this model needs before the page can show anything: its preflight estimate (time from a short
    calibration, peak memory) and a Build button; once started, the build's progress bar and Cancel, shared by
    every tab (one build per model and analysis). A cancelled build leaves nothing stored; jobs are daemon
    threads, so a build stops with the server."""
    from components import job_panel

    wb = workbench()
    running = wb.jobs.running(analysis)
    key = f"build-{analysis}"
    if running is not None:
        st.session_state[key] = running.id
        st.info(f"Building the {what} of `{wb.spec}` (every tab of this dashboard shows this one build; the page "
                "opens when it is stored; Cancel stops it and stores nothing).")
    elif key not in st.session_state:
        with st.spinner(f"Estimating the build of the {what} (a short calibration)…"):
            est = _estimate(wb.spec, wb.weights_hash, analysis)
        st.info(f"`{wb.spec}` has no stored {what} yet. Building it takes about {est['time']} on this machine "
                f"(peak memory about {est['peak']}{'' if est['fits'] else ', more than it has'}); "
                f"it is stored and reused after that. `interp {COMMANDS.get(analysis, analysis)} --model {wb.spec}` "
                "builds it from the command line.")
        with st.expander("Preflight"):
            st.code("\n".join(est["lines"]), language=None)
        if st.button(f"Build the {what}", type="primary", disabled=not est["fits"]):
            st.session_state[key] = wb.submit(analysis).id
            st.rerun()
    job_panel(key)
