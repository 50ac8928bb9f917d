"""Figures for patching Results: heatmaps per component type, and the faithfulness scatter."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from interp.analyses.patching.engine import POSITIONAL
from interp.viz import figures_for

TITLES = {"resid": "residual stream", "attn_out": "attention output", "mlp_out": "MLP output",
          "heads": "attention heads", "neurons": "MLP neurons"}


def position_labels(result) -> dict[int, str]:
    """pos_from_end -> the token there in the longest clean prompt (e.g. ``-1 ' to'``)."""
    pairs = result.table("pairs")
    tokens = list(pairs.loc[pairs.n_tokens.idxmax(), "clean_tokens"])
    return {len(tokens) - 1 - i: f"{i - len(tokens)} {t!r}" for i, t in enumerate(tokens)}


def mean_scores(result, component: str) -> pd.DataFrame:
    """Scores averaged over pairs: layer x unit (positions counted from the end)."""
    df = result.table("scores")
    df = df[df.component == component]
    col = "pos_from_end" if component in POSITIONAL else "unit"
    return df.groupby(["layer", col]).score.mean().unstack(col)


def heatmap(result, component: str, zmax: float | None = None) -> go.Figure:
    grid = mean_scores(result, component)
    if component in POSITIONAL:
        labels = position_labels(result)
        grid = grid[sorted(grid.columns, reverse=True)]
        x = [labels.get(c, str(-1 - c)) for c in grid.columns]
        xtitle = "position (from the end)"
    else:
        x = [str(c) for c in grid.columns]
        xtitle = "head" if component == "heads" else "neuron"
    m = result.metrics
    zmax = zmax or float(grid.abs().max().max()) or 1.0
    fig = px.imshow(grid.values, x=x, y=[str(i) for i in grid.index], aspect="auto", origin="lower",
                    color_continuous_scale="RdBu", zmin=-zmax, zmax=zmax,
                    labels={"x": xtitle, "y": "layer", "color": f"Δ {m['metric']}"})
    fig.update_layout(title=f"{m['method']} · {m['n_pairs']} pairs", height=max(300, 14 * len(grid) + 140))
    return fig


@figures_for("patching")
def heatmaps(result) -> dict[str, go.Figure]:
    present = result.table("scores").component.unique()
    return {TITLES[c]: heatmap(result, c) for c in TITLES if c in present and c != "neurons"}


def faithfulness_scatter(result_a, result_b, component: str) -> go.Figure:
    """Each (pair, layer, unit) score of ``b`` against ``a`` (the ground truth)."""
    from interp.analyses.patching.read import joined

    df = joined(result_a, result_b)
    df = df[df.component == component]
    r = df.score_a.corr(df.score_b)
    name_a, name_b = result_a.metrics["method"], result_b.metrics["method"]
    fig = px.scatter(df, x="score_a", y="score_b", color="layer", opacity=0.6, hover_data=["pair", "unit"],
                     labels={"score_a": f"{name_a} score", "score_b": f"{name_b} score"})
    lo, hi = float(min(df.score_a.min(), df.score_b.min())), float(max(df.score_a.max(), df.score_b.max()))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"dash": "dot", "color": "gray"},
                             name="y = x", showlegend=False))
    fig.update_layout(title=f"{TITLES.get(component, component)}: {name_b} vs {name_a} (Pearson r = {r:.3f})",
                      height=420)
    return fig


def correlation_bars(table: pd.DataFrame, value: str = "pearson") -> go.Figure:
    """RelP's comparison figure: per component type, each method's correlation with activation patching."""
    df = table.assign(component=table.component.map(lambda c: TITLES.get(c, c)))
    fig = px.bar(df, x="component", y=value, color="method", barmode="group", text_auto=".2f",
                 labels={value: f"{value.replace('_', ' ')} with activation patching"})
    fig.update_layout(yaxis_range=[min(0.0, float(df[value].min()) - 0.05), 1.05], height=380,
                      title="Faithfulness to activation patching")
    return fig


def interval_dots(result) -> go.Figure:
    """A faithfulness Result: pooled Pearson and Spearman per component and method, with bootstrap intervals."""
    t = result.table("summary")
    long = pd.concat([t.assign(measure=k, value=t[k], plus=t[f"{k}_hi"] - t[k], minus=t[k] - t[f"{k}_lo"])
                      for k in ("pearson", "spearman")], ignore_index=True)
    fig = px.scatter(long, x="component", y="value", color="method", facet_col="measure", error_y="plus",
                     error_y_minus="minus",
                     labels={"value": "correlation with activation patching"})
    fig.update_traces(marker={"size": 10})
    c = result.config
    fig.update_layout(title=f"Faithfulness on {c.dataset} (n={c.n}), {c.level:.0%} bootstrap intervals over pairs",
                      height=380, yaxis_range=[-0.2, 1.05])
    return fig


def per_pair_boxes(result) -> go.Figure:
    """A faithfulness Result: the distribution of per-pair Pearson correlations, per component and method."""
    pp = result.table("per_pair")
    fig = px.box(pp, x="component", y="pearson", color="method", points="all",
                 labels={"pearson": "per-pair Pearson with activation patching"})
    fig.update_layout(title="One correlation per pair", height=380)
    return fig


@figures_for("faithfulness")
def faithfulness_figures(result) -> dict:
    return {"intervals": interval_dots(result), "per pair": per_pair_boxes(result)}


def layer_curves(result) -> go.Figure:
    """A neuron_faithfulness Result: each method's pooled Pearson with activation patching per layer (bootstrap band
    over pairs), one panel per position class, and the 0.8 line below which the cheap score is not trusted."""
    s = result.table("summary")
    s = s[s.layer >= 0]
    classes = [c for c in ("subject", "last", "other") if c in set(s.cls)]
    fig = px.line(s, x="layer", y="pearson", color="method", facet_col="cls", markers=True,
                  category_orders={"cls": classes}, error_y=s.pearson_hi - s.pearson,
                  error_y_minus=s.pearson - s.pearson_lo,
                  labels={"pearson": "Pearson with activation patching", "cls": "position"},
                  color_discrete_map={"attribution": "#2b6cb0", "relp": "#dd6b20"})
    fig.add_hline(y=0.8, line_dash="dot", line_color="gray")
    c = result.config
    fig.update_layout(title=f"Single neurons, every layer: {c.dataset} (n={c.n} pairs), {c.n_random} random + top "
                            f"{c.top_k} by |AtP| per layer and position; 95% bootstrap intervals over pairs",
                      height=400, yaxis_range=[-0.3, 1.05])
    return fig


@figures_for("neuron_faithfulness")
def neuron_faithfulness_figures(result) -> dict:
    return {"per layer": layer_curves(result)}
