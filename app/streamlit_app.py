"""interp dashboard: navigation. Run with `make run` (binds to 127.0.0.1)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

if str(Path(__file__).resolve().parent) not in sys.path:  # once: this script runs again on every page load
    sys.path.insert(0, str(Path(__file__).resolve().parent))

# the favicon is a local file: a ":material/...:" icon makes the browser fetch it from fonts.gstatic.com
st.set_page_config(page_title="interp", page_icon=str(Path(__file__).resolve().parent / "favicon.png"), layout="wide")

pages = {
    "Workbench": [
        st.Page("views/runs.py", title="Runs", icon=":material/folder_open:", default=True),
        st.Page(
            "views/neuron_explorer.py", title="Neuron explorer", icon=":material/search:", url_path="neuron_explorer"
        ),
        st.Page("views/neuron_card.py", title="Neuron card", icon=":material/badge:", url_path="neuron"),
    ],
    "Analyses": [
        st.Page(
            "views/lm_head_decoding.py", title="LM-head decoding", icon=":material/abc:", url_path="lm_head_decoding"
        ),
        st.Page("views/neuron_atlas.py", title="Neuron atlas", icon=":material/map:", url_path="neuron_atlas"),
        st.Page("views/patching.py", title="Patching", icon=":material/healing:", url_path="patching"),
        st.Page("views/circuit.py", title="Circuit", icon=":material/hub:", url_path="circuit"),
        st.Page(
            "views/factual_recall.py",
            title="Factual recall",
            icon=":material/account_balance:",
            url_path="factual_recall",
        ),
        st.Page(
            "views/causal_tracing.py",
            title="Causal tracing & unlearning",
            icon=":material/cleaning_services:",
            url_path="causal_tracing",
        ),
        st.Page(
            "views/bigram_subnetwork.py",
            title="Bigram subnetwork",
            icon=":material/link:",
            url_path="bigram_subnetwork",
        ),
    ],
}
st.navigation(pages).run()
