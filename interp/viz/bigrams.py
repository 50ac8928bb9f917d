"""Figures for bigram-subnetwork Results."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go

from interp.viz import figures_for


def layout_heatmap(result) -> go.Figure:
    """Share of each matrix's weights kept, per layer."""
    df = result.table("layout")
    grid = df.pivot_table(index="matrix", columns="layer", values="fraction")
    fig = px.imshow(grid.values, x=[str(c) for c in grid.columns], y=list(grid.index), aspect="auto",
                    color_continuous_scale="Viridis", labels={"x": "layer", "y": "matrix", "color": "kept"})
    m = result.metrics
    fig.update_layout(title=f"Kept weights per matrix ({m['kept_fraction']:.3%} of {m['masked_params']:,}; "
                            f"{m['share_in_layer0_mlp']:.0%} of them in layer 0's MLP)", height=320)
    return fig


def score_bars(result) -> go.Figure:
    """Sufficiency (KL to the bigram distribution) and necessity (LM loss), against random baselines."""
    df = result.table("scores").groupby("model", as_index=False)[["bigram_kl", "lm_loss"]].mean()
    long = df.melt(id_vars="model", var_name="measure", value_name="value")
    fig = px.bar(long, x="model", y="value", color="model", facet_col="measure", text_auto=".2f")
    fig.update_yaxes(matches=None)
    fig.update_layout(title="Sufficiency (KL to the bigram distribution) and necessity (LM loss)", height=380,
                      showlegend=False)
    return fig


def geometry_lines(result) -> go.Figure:
    df = result.table("geometry").melt(id_vars=["layer", "model"], var_name="direction", value_name="cosine")
    fig = px.line(df, x="layer", y="cosine", color="direction", line_dash="model", markers=True)
    fig.update_layout(title="Residual geometry: cosine with the current / next token", height=360)
    return fig


@figures_for("bigram_subnetworks")
def bigram_figures(result) -> dict:
    return {"layout": layout_heatmap(result), "scores": score_bars(result), "geometry": geometry_lines(result)}
