"""Figures of a neuron card, and its export to one self-contained HTML file.

The dashboard's card page and ``interp card --html`` draw the same sections from the same ``NeuronCard``
(``interp.analyses.neurons.card``): each section's HTML is registered by the technique that owns it, and
this module only lays them out (plus the two plotly figures computed on request: the clamp dose-response
and Verify)."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from interp.render import STYLE, svgs_as_images
from interp.storage.cache import atomic_write

__all__ = ["STYLE", "card_html", "dose_response_figure", "export_html", "section_body", "verify_scatter"]
MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}


def dose_response_figure(table: pd.DataFrame, target: str) -> go.Figure:
    """Δ log p(target) and KL to the unclamped distribution against the clamp value."""
    fig = go.Figure([
        go.Scatter(x=table.value, y=table.dlogp, mode="lines+markers", name=f"Δ log p({target!r})",
                   line_color="#2b6cb0"),
        go.Scatter(x=table.value, y=table.kl, mode="lines+markers", name="KL(unclamped ‖ clamped)",
                   line_color="#c53030", yaxis="y2"),
    ])
    fig.update_layout(title="Clamp dose-response on neutral prompts", xaxis_title="clamp value (activation)",
                      yaxis={"title": "Δ log p"}, yaxis2={"title": "KL (nats)", "overlaying": "y", "side": "right"},
                      height=320, margin=MARGIN, legend={"orientation": "h", "y": -0.25})
    return fig


def verify_scatter(verify: dict) -> go.Figure:
    t = verify["table"]
    fig = go.Figure(go.Scatter(x=t.predicted, y=t.activation, mode="markers+text", text=[str(n) for n in t.neuron],
                               textposition="top center", marker_color="#2b6cb0"))
    lo = float(min(t.predicted.min(), t.activation.min()))
    hi = float(max(t.predicted.max(), t.activation.max()))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"dash": "dot", "color": "#a0aec0"}))
    fig.update_layout(title=f"{verify['method']} score vs activation patching", xaxis_title=f"{verify['method']}",
                      yaxis_title="activation patching", height=320, margin=MARGIN, showlegend=False)
    return fig


def section_body(card, key: str) -> str:
    """One section's content as HTML (no heading), or the command that fills it, for a live page: its SVG
    figures as images (``st.html`` sanitises inline SVG away)."""
    return svgs_as_images(card.html(key))


def sections_block(card, keys) -> str:
    """Several sections, each under its heading (anchored by its key, as the page's section links expect), as
    one HTML block for a live page: one element to draw instead of two per section."""
    return "".join(f"<h2 id='{key}'>{html.escape(card.sections[key].title)}</h2>{section_body(card, key)}"
                   for key in keys)


def card_html(card, clamp: pd.DataFrame | None = None, clamp_target: str | None = None) -> str:
    """The card as one HTML document: every section; the dose-response (when given) as a plotly figure with
    plotly.js inline (the file needs no network)."""
    nid = card.neuron
    parts = [f"<h1>Neuron {nid} of {html.escape(card.model)}</h1>", f"<p class='note'>weights {card.weights_hash}</p>"]
    for key, section in card.sections.items():
        parts.append(f"<h2 id='{key}'>{html.escape(section.title)}</h2>")
        if key == "clamp" and clamp is not None:
            parts.append(dose_response_figure(clamp, clamp_target or "").to_html(full_html=False,
                                                                                  include_plotlyjs="inline"))
        else:
            parts.append(card.html(key))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Neuron {nid} · {html.escape(card.model)}"
            f"</title><style>body{{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}}{STYLE}</style>"
            f"</head><body>{''.join(parts)}</body></html>")


def export_html(card, path: str | Path, **kw) -> Path:
    return atomic_write(path, card_html(card, **kw))
