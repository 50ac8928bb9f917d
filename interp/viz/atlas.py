"""Figures for the neuron atlas."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go

from interp.render import context_html, scale_of  # noqa: F401  (re-exported for the pages)
from interp.viz import figures_for


def histogram(result, layer: int, neuron: int) -> go.Figure:
    """The neuron's activation histogram over the atlas corpus (signed-log bins)."""
    layers = result.tensors["layers"].tolist()
    counts = result.tensors["hist"][layers.index(layer), neuron].tolist()
    edges = result.tensors["hist_edges"].tolist()
    labels = [f"< {edges[0]:.0e}"] + [f"[{a:.2g}, {b:.2g})" for a, b in zip(edges, edges[1:])] + [f">= {edges[-1]:.0e}"]
    nz = [i for i, c in enumerate(counts) if c]
    lo, hi = (min(nz), max(nz) + 1) if nz else (0, len(counts))
    fig = go.Figure(go.Bar(x=labels[lo:hi], y=counts[lo:hi], marker_color="#4a5568"))
    fig.update_layout(title=f"Activation histogram of {layer}.{neuron}", yaxis_type="log", height=280,
                      xaxis_title="activation (signed-log bins)", yaxis_title="positions",
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def density_scatter(result) -> go.Figure:
    """Each neuron's density (share of positions with |activation| >= a tenth of its peak; older atlases:
    the fraction of positive activations) against its max: dead, dense and rare neurons."""
    neurons = result.table("neurons")
    sample = neurons.sample(min(len(neurons), 5000), random_state=0).copy()
    sample["max_abs"] = sample[["max", "min"]].abs().max(axis=1)
    x = "density" if "density" in sample else "frac_positive"
    fig = px.scatter(sample, x=x, y="max_abs", color="layer", opacity=0.5, log_y=True,
                     hover_data=["layer", "neuron", "max", "min"],
                     labels={"density": "density: share of positions with |activation| ≥ 10% of its peak",
                             "frac_positive": "fraction of positions with activation > 0",
                             "max_abs": "max |activation| (log)"})
    fig.update_layout(title="Neuron density vs max activation (5,000 sampled neurons)", height=400)
    return fig


@figures_for("neuron_atlas")
def atlas_figures(result) -> dict:
    return {"density": density_scatter(result)}
