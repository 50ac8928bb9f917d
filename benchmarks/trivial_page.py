"""A trivial Streamlit page (a title and one line): the card benchmark's same-run baseline for a page load."""

import streamlit as st  # noqa: TID251 (a Streamlit page itself, like app/)

st.title("Trivial page")
st.markdown("One line of text.", help=None)
st.markdown('<span id="done"></span>', unsafe_allow_html=True)
