"""Figures for factual-recall Results."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go

from interp.viz import figures_for


def dla_by_layer(result, fact: int | None = None, relative: bool = False) -> go.Figure:
    """Each attention and MLP layer's direct effect on the answer (mean over facts, or one fact)."""
    col = "dla_rel" if relative else "dla"
    if fact is None:
        df, what = result.table("dla_by_layer"), f"mean over {result.metrics['n_decomposed']} facts"
    else:
        df = result.table("dla")
        df, what = df[(df.fact == fact) & (df.kind != "bias")], f"fact {fact}"
    df = df[df.kind != "embed"]
    fig = px.bar(df, x="layer", y=col, color="kind", barmode="group",
                 labels={col: "answer logit − mean logit" if relative else "direct logit attribution"})
    fig.update_layout(title=f"Direct effect on the answer by layer ({what})", height=360)
    return fig


def name_mover_scatter(result, min_layer: int = 0) -> go.Figure:
    """Per head (mean over facts): attention from the last position to the subject against the
    head's output on the subject's unembedding, with Pearson r."""
    df = result.table("head_summary")
    df = df[df.layer >= min_layer].assign(head_id=lambda d: d.layer.astype(str) + "." + d["head"].astype(str))
    r = df.attn_to_subject.corr(df.subject_dla)
    fig = px.scatter(df, x="attn_to_subject", y="subject_dla", color="layer", hover_name="head_id",
                     labels={"attn_to_subject": "attention to the subject (last position)",
                             "subject_dla": "output · subject unembedding"})
    fig.update_layout(title=f"Heads that move the subject (Pearson r = {r:.2f})", height=400)
    return fig


def top_neurons_bar(result, k: int = 20) -> go.Figure:
    df = result.table("neurons").head(k).assign(neuron_id=lambda d: d.layer.astype(str) + "." + d.neuron.astype(str))
    fig = px.bar(df, x="mean_dla", y="neuron_id", orientation="h", color="mean_dla", color_continuous_scale="RdBu",
                 color_continuous_midpoint=0, labels={"mean_dla": "mean direct effect on the answer",
                                                       "neuron_id": "neuron"})
    # neuron ids are names, not numbers: a numeric axis would draw 29.1512 near 29.15
    fig.update_layout(yaxis={"autorange": "reversed", "type": "category"}, height=24 * len(df) + 120,
                      title=f"Top neurons of MLP {result.metrics['mlp_layer']} "
                            f"(top {k}: {result.metrics['top_neurons_share']:.0%} of the layer's effect)")
    return fig


def suppression_hist(result) -> go.Figure:
    df = result.table("suppression")
    long = df.melt(id_vars="fact", value_vars=["last_mlp_dla_rel", "last_attn_dla_rel"], var_name="component",
                   value_name="effect")
    fig = px.histogram(long, x="effect", color="component", barmode="overlay", nbins=30,
                       labels={"effect": "effect on answer logit − mean logit"})
    fig.add_vline(x=0, line_dash="dot")
    fig.update_layout(title="Final layer: does it suppress the correct answer?", height=340)
    return fig


@figures_for("factual_recall")
def factual_figures(result) -> dict:
    return {"DLA by layer": dla_by_layer(result), "argument-passing heads": name_mover_scatter(result),
            "top neurons": top_neurons_bar(result), "final-layer suppression": suppression_hist(result)}
