"""Figures for causal tracing and unlearning Results."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go

from interp.viz import figures_for

KIND_TITLES = {"resid": "residual stream", "mlp": "MLP output (window)", "attn": "attention output (window)"}
ROLE_ORDER = ["before", "subject", "last subject", "after subject", "last"]


def trace_heatmap(result, kind: str, fact: int | None = None) -> go.Figure:
    """Indirect effect per (token, layer): one fact with its tokens, or the mean over facts by token role."""
    df = result.table("effects")
    df = df[df.kind == kind]
    if fact is not None:
        df = df[df.fact == fact]
        grid = df.pivot_table(index="pos", columns="layer", values="effect")
        labels = df.drop_duplicates("pos").sort_values("pos").token.map(repr).tolist()
        labels = [f"{l}*" if r in ("subject", "last subject") else l
                  for l, r in zip(labels, df.drop_duplicates("pos").sort_values("pos").role)]
        title = f"fact {fact}"
    else:
        df = df[df.traced]
        grid = df.groupby(["role", "layer"]).effect.mean().unstack("layer")
        grid = grid.reindex([r for r in ROLE_ORDER if r in grid.index])
        labels, title = list(grid.index), f"{result.metrics['n_facts']} facts"
    fig = px.imshow(grid.values, x=[str(c) for c in grid.columns], y=labels, aspect="auto",
                    color_continuous_scale="Purples" if kind == "resid" else "Greens" if kind == "mlp" else "Reds",
                    labels={"x": "layer", "y": "token", "color": "indirect effect"})
    fig.update_layout(title=f"{KIND_TITLES[kind]} · {title}", height=max(260, 30 * len(labels) + 120))
    return fig


@figures_for("causal_tracing")
def trace_heatmaps(result, fact: int | None = None) -> dict:
    kinds = result.table("effects").kind.unique()
    return {KIND_TITLES[k]: trace_heatmap(result, k, fact) for k in KIND_TITLES if k in kinds}


def unlearning_bars(result) -> go.Figure:
    """Before and after, for each method and metric: forget and paraphrase accuracy, and retain accuracy on the facts
    no method saw (the headline) and on those the methods used; the goals as dotted lines (forget and paraphrase at
    most 0.1 and 0.2, unseen retain kept 0.9 of its start)."""
    df = result.table("summary")
    names = {"forget_acc": "forget", "paraphrase_acc": "paraphrase", "retain_unseen_acc": "retain, unseen",
             "retain_seen_acc": "retain, used by the method"}
    long = df.melt(id_vars=["run"], value_vars=list(names), var_name="metric", value_name="accuracy")
    long["metric"] = long.metric.map(names)
    fig = px.bar(long, x="metric", y="accuracy", color="run", barmode="group", text_auto=".2f")
    base = float(df.set_index("run").loc["before", "retain_unseen_acc"])
    for i, goal in enumerate((0.1, 0.2, 0.9 * base)):
        fig.add_shape(type="line", x0=i - 0.45, x1=i + 0.45, y0=goal, y1=goal, line={"dash": "dot", "color": "black"})
    fig.update_layout(title="Top-1 accuracy before and after unlearning (dotted: the goals)", yaxis_range=[0, 1.05],
                      height=360)
    return fig
