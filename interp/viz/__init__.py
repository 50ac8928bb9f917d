"""Plotly figures built from Results, shared by the dashboard and the notebooks.

Each viz module registers the figures of an analysis by its name
(``@figures_for("patching")``); ``figures(result)`` returns them as ``{title: figure}``,
so the runs browser shows any analysis without knowing it."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

FIGURES: dict[str, Callable] = {}


def figures_for(*analyses: str):
    """Register ``fn(result) -> {title: figure}`` as the figures of these analyses."""
    def wrap(fn: Callable) -> Callable:
        for name in analyses:
            FIGURES[name] = fn
        return fn

    return wrap


def figures(result) -> dict:
    """The registered figures of ``result``'s analysis (``{}`` when it has none)."""
    if not FIGURES:
        import interp.viz as package

        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")
    fn = FIGURES.get(result.analysis)
    return fn(result) if fn else {}
