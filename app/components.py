"""Small page pieces shared by the dashboard pages."""

from __future__ import annotations

import streamlit as st


def placeholder(title: str, paper: str, shows: list[str], cli: str) -> None:
    """A page whose analysis has not landed yet: what it will show, and how."""
    st.title(title)
    st.caption(paper)
    st.info("This analysis is not built yet. When it lands, this page will show:")
    for item in shows:
        st.markdown(f"- {item}")
    st.markdown(f"It will read the same stored Results as the notebook and the CLI (`{cli}`).")


def neuron_link(layer: int, index: int) -> str:
    return f"[{layer}.{index}](./neuron_explorer?neuron={layer}.{index})"
