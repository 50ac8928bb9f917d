"""Plotly figures built from Results, shared by the dashboard and the notebooks."""
