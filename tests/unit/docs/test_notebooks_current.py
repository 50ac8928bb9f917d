"""A committed notebook's outputs are made by the current analyses: `make notebooks` stamps each notebook with
the VERSION of every analysis whose Results its run computed or read (``metadata.interp.used``). A notebook with
no stamp, or one whose stamp names an older VERSION than the code's, is stale, and the README must say so
("stale notebook: `notebooks/NAME.ipynb`") until it is run again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interp.analyses.base import REGISTRY, get_analysis

ROOT = Path(__file__).resolve().parents[3]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
README = (ROOT / "README.md").read_text()


def current_versions() -> dict[str, int]:
    get_analysis("lm_head_decoding")  # discovers every analysis module
    return {name: int(a.config.VERSION) for name, a in REGISTRY.items()}


def why_stale(meta: dict | None, versions: dict[str, int]) -> str | None:
    """Why a notebook's outputs are stale (None: they are current)."""
    used = (meta or {}).get("used")
    if used is None:
        return "it has no stamp of the analyses it used (run `make notebooks`)"
    old = {a: max(v) for a, v in used.items() if a in versions and max(v) < versions[a]}
    return f"made by older versions: {old} (now {[versions[a] for a in old]})" if old else None


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_a_stale_notebook_is_marked_in_the_readme(notebook):
    meta = json.loads(notebook.read_text()).get("metadata", {}).get("interp")
    why = why_stale(meta, current_versions())
    marked = f"stale notebook: `notebooks/{notebook.name}`" in README
    assert marked == (why is not None), (f"{notebook.name} is {'stale: ' + why if why else 'current'} but the "
                                         f"README {'marks' if marked else 'does not mark'} it stale")


def test_an_older_version_or_no_stamp_is_stale():
    versions = {"neuron_atlas": 5, "lm_head_decoding": 3}
    assert why_stale({"used": {"neuron_atlas": [5], "lm_head_decoding": [3]}}, versions) is None
    assert "older" in why_stale({"used": {"neuron_atlas": [4, 5], "lm_head_decoding": [2]}}, versions)
    assert "no stamp" in why_stale(None, versions)
