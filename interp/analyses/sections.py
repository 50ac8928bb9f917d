"""Card sections: what each technique says about one neuron, registered by the technique that owns the Results.

A technique's ``read`` (or ``sections``) module registers a section with a builder and, on the returned
object, its HTML and its one terminal line (and, optionally, top-level export fields):

    @card_section("tracing", "Causal tracing", order=60)
    def tracing(ctx: CardContext) -> Section: ...

    @tracing.html
    def _(section, neuron) -> str: ...

    @tracing.text
    def _(data) -> str: ...

The card (``interp.analyses.neurons.card``) iterates ``SECTIONS`` in order; the dashboard page, the HTML
export and ``interp card`` draw whatever is registered, so a new technique adds its section without
touching them. ``Store`` is the one way a section reads the stored runs on the model's weights.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from interp.errors import InterpError
from interp.models.embedded import EMBEDDED
from interp.names import NeuronId
from interp.result import Result
from interp.storage import list_runs, load_result


@dataclass
class Section:
    key: str
    title: str
    data: dict | None = None  # None: no stored Result says anything yet
    missing: str | None = None  # what to run to fill it
    sources: list[str] = field(default_factory=list)  # the runs it was read from

    @property
    def available(self) -> bool:
        return self.data is not None

    def to_dict(self) -> dict:
        return {"title": self.title, "available": self.available, "missing": self.missing,
                "sources": self.sources, "data": self.data}


@functools.lru_cache(maxsize=4096)
def _config(text: str) -> dict:
    """A stored run's config, parsed once (a card filters the runs of each analysis by config several times);
    callers only read it."""
    return json.loads(text)


class Store:
    """The stored runs on one model's weights (newest first), read through ``load`` (the facade's cache).
    The runs index is memoised by the store's stamp (``interp.storage.list_runs``)."""

    def __init__(self, weights_hash: str, load: Callable[[str], Result] = load_result,
                 runs: pd.DataFrame | None = None):
        runs = list_runs() if runs is None else runs
        self.runs = runs[runs.weights_hash == weights_hash] if len(runs) else runs
        self.load = load
        self._by_analysis: dict[str, list[tuple[str, str]]] = {}  # analysis -> [(path, config)], newest first
        for path, analysis, config in zip(self.runs.get("path", ()), self.runs.get("analysis", ()),
                                          self.runs.get("config", ())):
            self._by_analysis.setdefault(analysis, []).append((str(path), config))

    def paths(self, analysis: str, where: Callable[[dict], bool] | None = None) -> list[str]:
        """Stored runs of ``analysis`` (newest first) whose config passes ``where``."""
        return [p for p, c in self._by_analysis.get(analysis, ()) if where is None or where(_config(c))]

    def newest(self, analysis: str, where=None) -> Result | None:
        paths = self.paths(analysis, where)
        return self.load(paths[0]) if paths else None


@dataclass
class CardContext:
    """What a section builder gets: the model, the neuron, the store, and a memo shared by the sections of
    one card (e.g. the atlas's typical sign, read once)."""
    model: object
    neuron: NeuronId
    store: Store
    memo: dict = field(default_factory=dict)

    def once(self, key: str, compute: Callable[[], object]):
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    @property
    def spec_flag(self) -> str:
        """`` -m SPEC`` for commands that fill a section of a model other than the default."""
        return "" if self.model.spec == EMBEDDED else f" -m {self.model.spec}"


@dataclass
class CardSection:
    key: str
    title: str
    order: int
    build: Callable[[CardContext], Section]
    module: str = ""
    render_html: Callable[[Section, NeuronId], str] | None = None
    render_text: Callable[[dict], str] | None = None
    render_export: Callable[[dict], dict] | None = None

    def html(self, fn: Callable[[Section, NeuronId], str]):
        """Register ``fn(section, neuron) -> str``: the section's body as HTML (called only when it has data)."""
        self.render_html = fn
        return fn

    def text(self, fn: Callable[[dict], str]):
        """Register ``fn(data) -> str``: the section as one terminal line."""
        self.render_text = fn
        return fn

    def export(self, fn: Callable[[dict], dict]):
        """Register ``fn(data) -> dict``: top-level fields of the JSON export (Neuronpedia's names)."""
        self.render_export = fn
        return fn


SECTIONS: dict[str, CardSection] = {}


def card_section(key: str, title: str, order: int):
    """Register ``build(ctx) -> Section`` as the card section ``key`` (drawn in ``order``). A key registers once."""
    def wrap(fn: Callable[[CardContext], Section]) -> CardSection:
        if key in SECTIONS:
            raise InterpError(f"card section {key!r} is registered twice ({SECTIONS[key].module} and "
                              f"{fn.__module__}): give the new one another key")
        SECTIONS[key] = CardSection(key, title, order, fn, fn.__module__)
        return SECTIONS[key]

    return wrap


def unregister_section(key: str) -> None:
    """Remove a section (tests that register a toy technique clean up with this)."""
    SECTIONS.pop(key, None)


def ordered() -> list[CardSection]:
    return sorted(SECTIONS.values(), key=lambda s: (s.order, s.key))
