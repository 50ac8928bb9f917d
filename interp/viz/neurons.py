"""Figures for neuron-level Results."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go

from interp.viz import figures_for


def top_neurons_bar(result) -> go.Figure:
    top = result.table("top").copy()
    top["neuron_id"] = top.layer.astype(str) + "." + top.neuron.astype(str)
    fig = px.bar(top, x="dla", y="neuron_id", orientation="h", color="dla",
                 color_continuous_scale="RdBu", color_continuous_midpoint=0,
                 hover_data=["activation"],
                 labels={"dla": f"direct logit attribution to {result.metrics['target']!r}",
                         "neuron_id": "neuron (layer.index)"})
    fig.update_layout(yaxis={"autorange": "reversed"}, height=30 * len(top) + 120,
                      title=f"Neurons writing {result.metrics['target']!r} directly")
    return fig


def layer_totals_bar(result) -> go.Figure:
    layers = result.table("layers")
    fig = px.bar(layers, x="layer", y="dla", labels={"dla": "sum of neuron DLA"})
    fig.update_layout(title="Direct effect of each MLP layer's neurons", height=320)
    return fig


@figures_for("top_neurons")
def top_neurons_figures(result) -> dict:
    return {"top neurons": top_neurons_bar(result), "by layer": layer_totals_bar(result)}
