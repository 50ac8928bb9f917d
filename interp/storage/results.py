"""Atomic save and exact load of a ``Result`` (see ``interp.storage``)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from safetensors.torch import load_file, save_file

from interp.errors import InterpError
from interp.paths import runs_root
from interp.result import Result, config_from
from interp.storage.cache import atomic_dir

FORMAT = 1


def save_result(result: Result, directory: str | Path | None = None) -> Path:
    """Write ``result`` under ``$INTERP_RUNS/<analysis>/<run_id>`` (or ``directory``), atomically."""
    target = Path(directory) if directory else runs_root() / result.analysis / result.run_id
    with atomic_dir(target) as tmp:
        (tmp / "tables").mkdir()
        for name, df in result.tables.items():
            df.to_parquet(tmp / "tables" / f"{name}.parquet")
        if result.tensors:
            save_file({k: v.detach().cpu().contiguous() for k, v in result.tensors.items()},
                      tmp / "tensors.safetensors")
        meta = {
            "format": FORMAT,
            "analysis": result.analysis,
            "run_id": result.run_id,
            "config": result.config.to_dict(),
            "provenance": result.provenance,
            "metrics": result.metrics,
            "notes": result.notes,
            "tables": sorted(result.tables),
            "tensors": sorted(result.tensors),
        }
        (tmp / "result.json").write_text(json.dumps(meta, indent=2, default=_json_default))
    result.path = target
    return target


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in result.json")


def load_result(directory: str | Path) -> Result:
    """The stored Result in ``directory``, with its typed config; tables load on first use."""
    directory = Path(directory)
    meta_path = directory / "result.json"
    if not meta_path.is_file():
        raise InterpError(f"{directory} is not a stored run (no result.json)")
    meta = json.loads(meta_path.read_text())
    tables = LazyTables({name: directory / "tables" / f"{name}.parquet" for name in meta["tables"]})
    tensors = load_file(directory / "tensors.safetensors") if meta["tensors"] else {}
    return Result(
        analysis=meta["analysis"],
        config=config_from(meta["analysis"], meta["config"]),
        provenance=meta["provenance"],
        tables=tables,
        tensors=tensors,
        metrics=meta["metrics"],
        notes=meta.get("notes", []),
        run_id=meta["run_id"],
        path=directory,
    )


class LazyTables(dict):
    """Tables that are read from Parquet on first access (large decoding tables
    should not slow down a look-up that needs only the tensors)."""

    def __init__(self, paths: dict[str, Path]):
        super().__init__(paths)

    def __getitem__(self, name: str) -> pd.DataFrame:
        value = super().__getitem__(name)
        if isinstance(value, Path):
            value = pd.read_parquet(value)
            super().__setitem__(name, value)
        return value

    def get(self, name, default=None):
        return self[name] if name in self else default

    def values(self):
        return [self[k] for k in self]

    def items(self):
        return [(k, self[k]) for k in self]
