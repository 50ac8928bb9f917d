"""Atomic save and exact load of a ``Result`` (see ``interp.storage``)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from safetensors.torch import load_file, save_file

from interp.errors import InterpError, scrub
from interp.paths import runs_root
from interp.result import Result, config_from, note_used
from interp.storage.cache import atomic_dir, file_hash
from interp.storage.schema import problem

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
        metrics, non_finite = scrub(result.metrics, ("metrics",))  # strict JSON: NaN/inf stored as null
        meta = {
            "format": FORMAT,
            "analysis": result.analysis,
            "run_id": result.run_id,
            "config": result.config.to_dict(),
            "provenance": result.provenance,
            "metrics": metrics,
            "notes": result.notes,
            "tables": sorted(result.tables),
            "tensors": sorted(result.tensors),
        }
        meta["non_finite"] = [[list(path), text] for path, text in non_finite]  # restored on load
        meta["files"] = {str(f.relative_to(tmp)): [f.stat().st_size, file_hash(f)]  # checked before reuse
                         for f in sorted(tmp.rglob("*")) if f.is_file()}
        (tmp / "result.json").write_text(json.dumps(meta, indent=2, default=_json_default, allow_nan=False))
    result.path = target
    return target


def _restore(meta: dict) -> None:
    for (*parents, last), text in meta.get("non_finite", []):
        node = meta
        for key in parents:
            node = node[key]
        node[last] = float(text)


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in result.json")


def read_meta(directory: Path) -> dict:
    """``result.json`` of a run, or an ``InterpError`` that says what is damaged and how to clean up."""
    meta_path = Path(directory) / "result.json"
    if not meta_path.is_file():
        raise InterpError(f"{directory} is not a stored run (no result.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(directory, f"result.json is not valid JSON ({type(exc).__name__})") from None
    why = problem(meta)  # the schema: types, and names that become paths stay inside the run
    if why:
        raise damaged(directory, why)
    return meta


def damaged(directory, why: str) -> InterpError:
    return InterpError(f"stored run {directory} is damaged: {why}; `interp runs --check` lists damaged runs and "
                       "`interp runs --prune` removes them")


def verify_run(directory: str | Path) -> list[str]:
    """What is wrong with a stored run (empty: nothing). Files are checked against the sizes and
    hashes recorded when it was saved; runs saved before those were recorded get a structural check."""
    directory = Path(directory)
    try:
        meta = read_meta(directory)
    except InterpError as exc:
        return [str(exc).split(": ", 1)[-1].split("; `interp runs")[0]]
    problems = []
    files = meta.get("files")
    if files:
        for name, (size, digest) in files.items():
            f = directory / name
            if not f.is_file():
                problems.append(f"{name} is missing")
            elif f.stat().st_size != size or file_hash(f) != digest:
                problems.append(f"{name} differs from what was saved")
        return problems
    from safetensors import safe_open

    for name in meta["tables"]:
        try:
            pq.read_metadata(directory / "tables" / f"{name}.parquet")
        except Exception as exc:
            problems.append(f"tables/{name}.parquet is unreadable ({type(exc).__name__})")
    if meta["tensors"]:
        try:
            with safe_open(directory / "tensors.safetensors", "pt") as f:
                f.keys()
        except Exception as exc:
            problems.append(f"tensors.safetensors is unreadable ({type(exc).__name__})")
    return problems


def load_result(directory: str | Path) -> Result:
    """The stored Result in ``directory``, with its typed config; tables load on first use."""
    directory = Path(directory)
    meta = read_meta(directory)
    _restore(meta)
    note_used(meta["analysis"], (meta.get("provenance") or {}).get("analysis_version"))
    tables = LazyTables({name: directory / "tables" / f"{name}.parquet" for name in meta["tables"]}, directory)
    try:
        tensors = load_file(directory / "tensors.safetensors") if meta["tensors"] else {}
    except Exception as exc:
        raise damaged(directory, f"tensors.safetensors is unreadable ({type(exc).__name__})") from None
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

    def __init__(self, paths: dict[str, Path], directory: Path | None = None):
        super().__init__(paths)
        self.directory = directory

    def __getitem__(self, name: str) -> pd.DataFrame:
        value = super().__getitem__(name)
        if isinstance(value, Path):
            try:
                value = pd.read_parquet(value)
            except Exception as exc:
                raise damaged(self.directory or value.parent.parent,
                              f"tables/{name}.parquet is unreadable ({type(exc).__name__})") from None
            super().__setitem__(name, value)
        return value

    def get(self, name, default=None):
        return self[name] if name in self else default

    def values(self):
        return [self[k] for k in self]

    def items(self):
        return [(k, self[k]) for k in self]
