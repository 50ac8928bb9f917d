"""Pinned runs: the run a researcher chose per analysis and model weights, kept in the store
(``<store>/pins.json``) so every dashboard tab, restart, notebook and CLI call sees the same choice.

A pinned run comes first wherever the store is read newest first (``list_runs``), so every "latest"
look-up, the card and the dashboard's pages use it until it is unpinned; the others stay one click away."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from interp.paths import runs_root
from interp.storage.cache import atomic_write

PINS = "pins.json"
_WARNED: set[tuple[str, float]] = set()


def pins_path(root: str | Path | None = None) -> Path:
    return (Path(root) if root else runs_root()) / PINS


def read_pins(root: str | Path | None = None) -> dict[str, dict[str, str]]:
    """``{analysis: {weights_hash: run_id}}``; an unreadable pins file is ignored with a warning (the store's
    runs do not depend on it)."""
    path = pins_path(root)
    if not path.is_file():
        return {}
    try:
        pins = json.loads(path.read_text())
        if not isinstance(pins, dict) or not all(isinstance(v, dict) for v in pins.values()):
            raise ValueError("not an object of objects")
        return {str(a): {str(w): str(r) for w, r in v.items()} for a, v in pins.items()}
    except (OSError, ValueError) as exc:
        if (str(path), pins_stamp(root)) in _WARNED:
            return {}
        _WARNED.add((str(path), pins_stamp(root)))
        warnings.warn(f"ignoring the unreadable pins file {path} ({exc}); pin a run again to rewrite it",
                      stacklevel=2)
        return {}


def write_pin(analysis: str, weights_hash: str, run_id: str | None, root: str | Path | None = None) -> None:
    """Pin ``run_id`` for ``analysis`` on ``weights_hash`` (None: unpin). Written atomically."""
    pins = read_pins(root)
    mine = pins.setdefault(analysis, {})
    if run_id is None:
        mine.pop(weights_hash, None)
    else:
        mine[weights_hash] = run_id
    pins = {a: v for a, v in pins.items() if v}
    atomic_write(pins_path(root), json.dumps(pins, indent=1, sort_keys=True) + "\n")


def pins_stamp(root: str | Path | None = None) -> float:
    try:
        return pins_path(root).stat().st_mtime
    except OSError:
        return 0.0


LABEL_FIELDS = ("dataset", "facts", "forget", "retain", "n", "method", "components", "corpus", "tokens", "layers",
                "prompt")


def run_label(run_id: str, created: str | None, config: dict, pinned: bool = False) -> str:
    """One line that names a run: its id, date, whether it is pinned, and the config fields that tell runs
    of one analysis apart (data, size, method, layers)."""
    fields = [f"{k} {', '.join(map(str, v)) if isinstance(v, list | tuple) else v}"
              for k, v in ((k, config.get(k)) for k in LABEL_FIELDS) if v not in (None, "", [], ())]
    when = (created or "")[:16].replace("T", " ")
    return f"{run_id} ({when}{', pinned' if pinned else ''})" + (f": {'; '.join(fields)}" if fields else "")
