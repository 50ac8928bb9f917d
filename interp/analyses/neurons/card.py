"""The neuron card: what every stored analysis says about one neuron, joined on one page.

The card is an assembler. Each technique registers the sections it owns (``interp.analyses.sections``:
``@card_section(key, title, order)`` with its HTML, terminal line and export fields), and
``neuron_card(model, "29.808")`` builds every registered section, in order, from the newest stored
Results on the model's weights (``$INTERP_RUNS``). Nothing heavy runs: the atlas stores its examples'
per-token activations, the decoding its token lists, patching its per-neuron scores. A section whose
Result is missing says which command computes it. A new technique adds its section without touching this
file, the dashboard page, the HTML export or ``interp card``.

The JSON export (``NeuronCard.to_dict``) puts each section's export fields at the top level (Neuronpedia's
names where one exists: ``pos_str``/``pos_values``, ``frac_nonzero``, ``maxActApprox``, ``activations`` …)
and keeps every section under ``sections``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from interp.analyses.base import discover
from interp.analyses.sections import SECTIONS, CardContext, Section, Store, ordered
from interp.errors import InterpError
from interp.names import NeuronId
from interp.render import with_code


def section_keys() -> list[str]:
    """Every registered section's key, in card order (the technique modules are discovered first)."""
    discover()
    return [s.key for s in ordered()]


@dataclass
class NeuronCard:
    model: str
    weights_hash: str
    neuron: NeuronId
    sections: dict[str, Section]

    def __getitem__(self, key: str) -> Section:
        return self.sections[key]

    def to_dict(self) -> dict:
        """The card as plain data, with Neuronpedia's field names where one exists."""
        out = {"modelId": self.model, "layer": self.neuron.layer, "index": self.neuron.index,
               "neuron": str(self.neuron), "weights_hash": self.weights_hash}
        for key, section in self.sections.items():
            export = SECTIONS[key].render_export if key in SECTIONS else None
            if export is not None and section.data:
                out.update(export(section.data))
        out["sections"] = {k: s.to_dict() for k, s in self.sections.items()}
        return _plain(out)

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, **kw)

    def html(self, key: str) -> str:
        """One section's body as HTML, or the command that fills it."""
        return section_html(self.sections[key], self.neuron)

    def text(self, key: str) -> str:
        """One section as one terminal line."""
        section = self.sections[key]
        if not section.available:
            return f"not computed yet: {section.missing}"
        render = SECTIONS[key].render_text
        return render(section.data) if render else ""


def section_html(section: Section, neuron: NeuronId) -> str:
    if section.data is None:
        return f"<p class='missing'>Not computed yet: {with_code(section.missing or '')}</p>"
    render = SECTIONS[section.key].render_html if section.key in SECTIONS else None
    return render(section, neuron) if render else ""


def _plain(x):
    """JSON-safe: numpy scalars to Python, non-finite floats to None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def neuron_card(model, neuron: str | NeuronId, store: Store | None = None,
                sections: Sequence[str] | None = None) -> NeuronCard:
    """Everything the stored Results say about ``neuron``: every registered section (or only ``sections``)."""
    nid = model.check_neuron(neuron)
    keys = section_keys()
    wanted = list(sections) if sections else keys
    unknown = [k for k in wanted if k not in SECTIONS]
    if unknown:
        raise InterpError(f"unknown card section {unknown[0]!r}: choose from {keys}")
    ctx = CardContext(model, nid, store or Store(model.weights_hash))
    out = {}
    for key in (k for k in keys if k in wanted):
        section = SECTIONS[key].build(ctx)
        section.missing = section.missing if section.data is None else None
        out[key] = section
    return NeuronCard(model.spec, model.weights_hash, nid, out)


def export_json(card: NeuronCard, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(card.to_json(indent=1))
    return path
