"""Figures for bigram-subnetwork Results."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

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


def sparsity_curve(result) -> go.Figure:
    """Kept share and bigram fit against steps, from the run's log: was it still falling when it stopped?"""
    log = result.table("log").dropna(subset=["kept"])
    fig = make_subplots(rows=1, cols=2, subplot_titles=("share of weights kept (s > 0)", "training loss (soft CE)"))
    for i, (mask, df) in enumerate(log.groupby("mask", sort=False)):
        color = px.colors.qualitative.Plotly[i]
        fig.add_trace(go.Scatter(x=df.step, y=df.kept, name=f"{mask}: kept", line={"color": color}), 1, 1)
        fig.add_trace(go.Scatter(x=df.step, y=df.loss, name=f"{mask}: loss", line={"color": color, "dash": "dot"}),
                      1, 2)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title_text="step")
    m = result.metrics
    fig.update_layout(title=f"Sparsity curve: {m['steps']} steps, {m['kept_fraction']:.1%} kept at the end", height=360)
    return fig


def surprisal_bars(table) -> go.Figure:
    """Pearson r of per-token surprisal with bigram surprisal, per model (random subnetworks: mean and range)."""
    long = table.melt(id_vars=["model", "seed"], value_vars=["pearson_dropped", "pearson_max"], var_name="infinite",
                      value_name="pearson")
    long["infinite"] = long.infinite.map({"pearson_dropped": "dropped", "pearson_max": "replaced by the max"})
    agg = long.groupby(["model", "infinite"], sort=False).pearson.agg(["mean", "min", "max"]).reset_index()
    agg["plus"], agg["minus"] = agg["max"] - agg["mean"], agg["mean"] - agg["min"]
    fig = px.bar(agg, x="model", y="mean", color="infinite", barmode="group", text_auto=".3f", error_y="plus",
                 error_y_minus="minus",
                 labels={"mean": "Pearson r with bigram surprisal"})
    fig.update_layout(title="Surprisal vs bigram surprisal on held-out text", height=360, yaxis_range=[0, 1])
    return fig


@figures_for("bigram_subnetworks")
def bigram_figures(result) -> dict:
    out = {"layout": layout_heatmap(result), "scores": score_bars(result), "geometry": geometry_lines(result),
           "sparsity": sparsity_curve(result)}
    if "surprisal" in result.tables:
        out["surprisal"] = surprisal_bars(result.table("surprisal"))
    return out


@figures_for("bigram_surprisal")
def surprisal_figures(result) -> dict:
    return {"surprisal": surprisal_bars(result.table("surprisal"))}
