"""Figures for neuron graphs: the graph (layer up, position across), its verification, and one HTML file.

Nodes: neurons coloured by the sign of their activation (orange positive, purple negative), sized by
influence; embeddings at the bottom, targets at the top, other nodes (what the graph does not itemise)
as grey squares. Edges: blue where they raise their target, red where they lower it, wider when larger.
Every node carries its id as ``customdata`` (the dashboard opens the neuron's card on a click).
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from interp.analyses.circuits.read import shown
from interp.storage.cache import atomic_write
from interp.viz import figures_for

COLOURS = {"pos": "#e67e22", "neg": "#8e44ad", "embed": "#7f8c8d", "other": "#bdc3c7", "logit": "#27ae60"}
WIDTHS = (0.5, 1.5, 3.0, 5.0)


def _layout(nodes: pd.DataFrame) -> pd.DataFrame:
    """x (position, spread within a cell by influence) and y (layer; embeddings -1, targets n_layers)."""
    nodes = nodes.copy()
    nodes["x"] = nodes.position.astype(float)
    nodes["y"] = nodes.layer.astype(float)
    for _, cell in nodes.groupby(["layer", "position"]):
        if len(cell) > 1:
            order = cell.influence.fillna(0).rank(ascending=False, method="first").to_numpy() - 1
            nodes.loc[cell.index, "x"] += (order - (len(cell) - 1) / 2) * min(0.8 / len(cell), 0.12)
    return nodes


def graph_figure(result, min_weight: float = 0.0, labels: dict | None = None, others: bool = False,
                 height: int = 700, max_edges: int = 400, label_top: int = 30) -> go.Figure:
    """The shown graph: the ``max_edges`` strongest edges with ``|weight| >= min_weight`` (the stored graph keeps
    many more), every kept node, and a text label on the ``label_top`` most influential neurons;
    ``labels``: ``(layer, neuron) -> text`` (default: the neuron's id)."""
    nodes, edges = shown(result, min_weight, others)
    edges = edges.reindex(edges.weight.abs().sort_values(ascending=False).index).head(max_edges)
    nodes = _layout(nodes)
    named = set(nodes[nodes.kind == "neuron"].nlargest(label_top, "influence").node)
    where = dict(zip(nodes.node, zip(nodes.x, nodes.y)))
    fig = go.Figure()
    if len(edges):
        cut = np.quantile(edges.weight.abs(), [0.5, 0.8, 0.95])
        for sign, colour in ((1, "rgba(41,128,185,0.45)"), (-1, "rgba(192,57,43,0.45)")):
            part = edges[np.sign(edges.weight) == sign]
            bins = np.digitize(part.weight.abs(), cut)
            for b, width in enumerate(WIDTHS):
                sel = part[bins == b]
                if not len(sel):
                    continue
                xs, ys = [], []
                for e in sel.itertuples():
                    (x0, y0), (x1, y1) = where[e.source], where[e.target]
                    xs += [x0, x1, None]
                    ys += [y0, y1, None]
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": colour, "width": width},
                                         hoverinfo="skip", showlegend=False))
    labels = labels or {}
    top = nodes.influence.fillna(0).max() or 1.0
    for kind, sel, colour, symbol in (
            ("neuron +", nodes[(nodes.kind == "neuron") & (nodes.activation >= 0)], COLOURS["pos"], "circle"),
            ("neuron -", nodes[(nodes.kind == "neuron") & (nodes.activation < 0)], COLOURS["neg"], "circle"),
            ("embedding", nodes[nodes.kind == "embed"], COLOURS["embed"], "square"),
            ("other", nodes[nodes.kind == "other"], COLOURS["other"], "square-open"),
            ("target", nodes[nodes.kind == "logit"], COLOURS["logit"], "diamond")):
        if not len(sel):
            continue
        size = 6 + 24 * np.sqrt(sel.influence.fillna(0).clip(lower=0) / top)
        text = [labels.get((int(r.layer), int(r.neuron)), f"{r.layer}.{r.neuron}").split(" — ")[0]
                if r.node in named else "" for r in sel.itertuples()]  # the explanation is in the hover
        hover = [html.escape(f"{r.node}  token {r.token!r}  act {r.activation:+.3g}  influence {r.influence:.3g}"
                             + (f"  {labels[(int(r.layer), int(r.neuron))]}" if (int(r.layer), int(r.neuron))
                                in labels else "")) for r in sel.itertuples()]
        fig.add_trace(go.Scatter(x=sel.x, y=sel.y, mode="markers+text" if kind.startswith("neuron") else "markers",
                                 marker={"color": colour, "size": size, "symbol": symbol,
                                         "line": {"width": 0.5, "color": "#333"}},
                                 text=[html.escape(t) for t in text], textposition="top center",
                                 textfont={"size": 9}, hovertext=hover, hoverinfo="text",
                                 customdata=sel.node.tolist(), name=kind))
    tokens = result.metrics["prompt_tokens"]
    n_layers = int(result.metrics["n_layers"])
    fig.update_layout(
        height=height, margin={"l": 40, "r": 10, "t": 40, "b": 80},
        title=html.escape(f"{result.config.prompt!r} → {', '.join(result.metrics['targets'])}  (the "
                          f"{min(max_edges, len(edges))} strongest edges drawn)"),
        xaxis={"tickmode": "array", "tickvals": list(range(len(tokens))),
               "ticktext": [html.escape(repr(t)) for t in tokens], "title": "position"},
        yaxis={"tickmode": "array", "tickvals": [-1, *range(0, n_layers, max(1, n_layers // 10)), n_layers],
               "ticktext": ["emb", *[str(i) for i in range(0, n_layers, max(1, n_layers // 10))], "logit"],
               "title": "layer"},
        legend={"orientation": "h"})
    return fig


def faithfulness_figure(result) -> go.Figure:
    fc = result.table("faithfulness")
    fig = go.Figure()
    for kind, name in (("top", "top x% by influence"), ("random", "random, same count per layer")):
        part = fc[fc.kind == kind]
        fig.add_trace(go.Scatter(x=part.x, y=part.faithfulness, mode="lines+markers", name=name))
    graph = fc[fc.kind == "graph"]
    fig.add_trace(go.Scatter(x=graph.x, y=graph.faithfulness, mode="markers", marker={"size": 12, "symbol": "star"},
                             name="the graph's neurons only"))
    half = fc[fc.kind == "half"].faithfulness
    fig.add_hline(y=float(half.mean()), line_dash="dot",
                  annotation_text=f"random halves outside the graph ablated: {half.mean():.2f} ± {half.std():.2f}")
    fig.update_layout(xaxis={"type": "log", "title": "% of neuron-positions kept (the rest mean-ablated)"},
                      yaxis_title="faithfulness", height=380, margin={"t": 30})
    return fig


def knockout_figure(result) -> go.Figure:
    ko = result.table("knockouts")
    fig = go.Figure()
    for mode in ("mean", "zero", "nudge"):
        part = ko[ko["mode"] == mode]
        name = "lowered by 10%" if mode == "nudge" else f"{mode} ablation"
        fig.add_trace(go.Scatter(x=part.predicted, y=part.measured, mode="markers", name=name,
                                 hovertext=part.node, hoverinfo="text+x+y"))
    lo, hi = float(min(ko.predicted.min(), ko.measured.min())), float(max(ko.predicted.max(), ko.measured.max()))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"dash": "dot", "color": "grey"},
                             showlegend=False))
    fig.update_layout(xaxis_title="predicted change of the metric (linear model)", yaxis_title="measured change",
                      height=380, margin={"t": 30})
    return fig


@figures_for("neuron_graph")
def graph_figures(result, labels: dict | None = None) -> dict:
    out = {"neuron graph": graph_figure(result, labels=labels)}
    if "faithfulness" in result.tables:
        out["faithfulness"] = faithfulness_figure(result)
        out["knock-outs"] = knockout_figure(result)
    return out


def export_html(result, path: str | Path, labels: dict | None = None) -> Path:
    """The graph (and its checks) as one self-contained HTML file: plotly inlined, nothing fetched."""
    figs = graph_figures(result, labels)
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figs.values())]
    m = result.metrics
    head = (f"<h1>neuron graph</h1><p>{html.escape(repr(result.config.prompt))} → "
            f"{html.escape(', '.join(m['targets']))}; {m['n_neurons_kept']} neurons kept, {m['n_edges']} edges; "
            f"replacement {m['replacement']:.3f}, completeness {m['completeness']:.3f}; model "
            f"{html.escape(str(result.provenance.get('model', '')))}</p>")
    return atomic_write(path, f"<!doctype html><html><head><meta charset='utf-8'><title>neuron graph</title>"
                              f"</head><body>{head}{''.join(parts)}</body></html>")
