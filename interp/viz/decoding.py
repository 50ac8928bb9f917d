"""Figures for LM-head decoding and clamping Results."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from interp.viz import figures_for

SIDE_TITLES = {
    "out+": "promoted (output side, W_out·W_U)",
    "out-": "suppressed (output side)",
    "up+": "excite the up projection (W_in·W_E)",
    "up-": "inhibit the up projection",
    "gate+": "open the gate (W_gate·W_E)",
    "gate-": "close the gate",
}


def token_bars(rows: pd.DataFrame, side: str, k: int = 15) -> go.Figure:
    """Horizontal bars of one neuron's decoded tokens on one side."""
    part = rows[rows.side == side].sort_values("rank").head(k)
    shown = [repr(t) for t in part.token]
    # two token ids can print the same (byte pieces): each keeps its own bar, its id added
    labels = [f"{s} #{i}" if shown.count(s) > 1 else s for s, i in zip(shown, part.token_id)]
    color = "#2b6cb0" if side.endswith("+") else "#c53030"
    fig = go.Figure(go.Bar(x=part.score, y=labels, orientation="h", marker_color=color,
                           hovertext=[f"token id {i}" for i in part.token_id]))
    fig.update_layout(title=SIDE_TITLES.get(side, side), yaxis={"autorange": "reversed", "type": "category"},
                      height=26 * len(part) + 90, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def layer_norms_heatmap(result) -> go.Figure:
    """Median weight norm per layer and side: where the large neurons live."""
    neurons = result.table("neurons")
    cols = [c for c in neurons.columns if c.endswith("_norm")]
    med = neurons.groupby("layer")[cols].median()
    fig = px.imshow(med.T, aspect="auto", labels={"x": "layer", "y": "side", "color": "median norm"},
                    color_continuous_scale="Viridis")
    fig.update_layout(title="Median neuron weight norm by layer", height=260)
    return fig


def promoters_bar(table: pd.DataFrame, token: str) -> go.Figure:
    """The neurons for a token: by specificity (a table with ``z``: the weighted z-score, neurons with the
    token among their own top promoted tokens in dark blue) or by the raw score."""
    labels = [f"{l}.{n} ({s})" if "side" in table else f"{l}.{n}"
              for l, n, s in zip(table.layer, table.neuron, table.get("side", table.layer))]
    if "z" in table:
        colors = ["#2b6cb0" if r < 10 else "#90cdf4" for r in table.own_rank.fillna(99)]
        title, axis = f"Neurons most specific to {token!r}", "z-score in the neuron's own decoding × typical |act|"
    else:
        colors, title = "#2b6cb0", f"Neurons whose output most promotes {token!r}"
        axis = "W_out[:, n] · (w ⊙ W_U[:, t])"
    fig = go.Figure(go.Bar(x=table.score, y=labels, orientation="h", marker_color=colors))
    fig.update_layout(title=title, yaxis={"autorange": "reversed", "type": "category"},
                      height=26 * len(table) + 90, xaxis_title=axis)
    return fig


def clamp_bars(result) -> go.Figure:
    probs = result.table("probs")
    long = probs.melt(id_vars=["prompt", "target"], value_vars=["p_before", "p_after"],
                      var_name="when", value_name="probability")
    long["when"] = long.when.map({"p_before": "before", "p_after": "clamped"})
    fig = px.bar(long, x="probability", y="prompt", color="when", barmode="group", orientation="h",
                 facet_col="target", log_x=True, color_discrete_map={"before": "#a0aec0", "clamped": "#2b6cb0"})
    fig.update_layout(height=60 * probs.prompt.nunique() + 120, title="Target probability before and after clamping")
    return fig


@figures_for("lm_head_decoding")
def decoding_figures(result) -> dict:
    return {"weight norms": layer_norms_heatmap(result)}


@figures_for("clamp", "concept")
def clamp_figures(result) -> dict:
    return {"target probability": clamp_bars(result)}
