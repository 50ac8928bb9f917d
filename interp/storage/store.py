"""Querying the store with DuckDB: the runs index and SQL over the Parquet tables."""

from __future__ import annotations

import glob
import json
import re
import warnings
from pathlib import Path

import duckdb
import pandas as pd

from interp.errors import InterpError
from interp.paths import runs_root
from interp.storage.results import read_meta, verify_run

COLUMNS = ["analysis", "run_id", "model", "weights_hash", "created", "path", "metrics"]
EXTRA = ["config", "analysis_version", "mtime"]


_WARNED: set[str] = set()


def damaged_runs(root: str | Path | None = None, analysis: str | None = None) -> list[tuple[str, str]]:
    """``(path, what is wrong)`` for every damaged run in the store: an unreadable ``result.json``, or
    files that differ from the sizes and hashes recorded when it was saved (``verify_run``)."""
    root = Path(root) if root else runs_root()
    pattern = f"{analysis or '*'}/*/result.json"
    out = []
    for meta_path in sorted(root.glob(pattern)) if root.is_dir() else []:
        if not meta_path.parent.name.startswith("."):
            problems = verify_run(meta_path.parent)
            if problems:
                out.append((str(meta_path.parent), "; ".join(problems)))
    return out


def store_stamp(root: str | Path | None = None) -> tuple:
    """What the store holds now, cheaply (no file is read): its root, the number of runs, the newest and
    the sum of their ``result.json`` modification times. It changes when a run is stored, replaced or removed."""
    root = Path(root) if root else runs_root()
    times = [p.stat().st_mtime for p in root.glob("*/*/result.json")] if root.is_dir() else []
    return str(root.resolve()), len(times), max(times, default=0.0), round(sum(times), 6)


_MEMO: dict[str, tuple[tuple, pd.DataFrame]] = {}


def _index(root: Path) -> pd.DataFrame:
    """The runs index of ``root``, read again only when its ``store_stamp`` changed."""
    stamp = store_stamp(root)
    hit = _MEMO.get(stamp[0])
    if hit is not None and hit[0] == stamp:
        return hit[1].copy()
    index = _read_index(root)
    _MEMO[stamp[0]] = (stamp, index)
    return index.copy()


def _read_index(root: Path) -> pd.DataFrame:
    rows = []
    for meta_path in sorted(root.glob("*/*/result.json")) if root.is_dir() else []:
        if meta_path.parent.name.startswith("."):
            continue  # a temporary or superseded directory
        try:
            meta = read_meta(meta_path.parent)
        except InterpError as exc:  # one damaged run never hides the others
            if str(meta_path) not in _WARNED:
                _WARNED.add(str(meta_path))
                warnings.warn(f"skipping {exc}", stacklevel=2)
            continue
        prov = meta.get("provenance") or {}
        rows.append({
            "analysis": meta.get("analysis"),
            "run_id": meta.get("run_id"),
            "model": prov.get("model"),
            "weights_hash": prov.get("weights_hash"),
            "created": prov.get("created"),
            "path": str(meta_path.parent),
            "metrics": json.dumps(meta.get("metrics", {})),
            "config": json.dumps(meta.get("config", {}), sort_keys=True),
            "analysis_version": int(prov.get("analysis_version") or 1),  # runs from before VERSION: 1
            "mtime": meta_path.stat().st_mtime,
        })
    return pd.DataFrame(rows, columns=[*COLUMNS, *EXTRA])


def list_runs(analysis: str | None = None, root: str | Path | None = None) -> pd.DataFrame:
    """Stored runs, newest first (optionally of one analysis), queried with DuckDB."""
    runs = _index(Path(root) if root else runs_root())
    query = "SELECT * FROM runs" + (" WHERE analysis = ?" if analysis else "") + " ORDER BY created DESC"
    return duckdb.connect().execute(query, [analysis] if analysis else []).df() if len(runs) else runs


def find_runs(analysis: str, config, weights_hash: str, root: str | Path | None = None) -> list[str]:
    """Paths of stored runs of ``analysis`` with the same identity as ``config`` (its fields
    less ``NOT_IDENTITY``, and its ``VERSION``) on these weights, newest first."""
    runs = list_runs(analysis, root)
    if not len(runs):
        return []
    want = json.dumps(config.identity(), sort_keys=True)

    def identity(cfg: str, version: int) -> str:
        stored = {k: v for k, v in json.loads(cfg).items() if k not in config.NOT_IDENTITY}
        return json.dumps({**stored, "version": int(version)}, sort_keys=True)

    same = [identity(c, v) == want for c, v in zip(runs.config, runs.analysis_version)]
    return list(runs[pd.Series(same, index=runs.index) & (runs.weights_hash == weights_hash)].path)


def newest_run(analysis: str, weights_hash: str | None = None, where=None,
               root: str | Path | None = None) -> str | None:
    """The path of the newest stored run of ``analysis`` (on these weights; passing ``where(config_dict)``)."""
    runs = list_runs(analysis, root)
    if len(runs) and weights_hash is not None:
        runs = runs[runs.weights_hash == weights_hash]
    if len(runs) and where is not None:
        runs = runs[[bool(where(json.loads(c))) for c in runs.config]]
    return str(runs.path.iloc[0]) if len(runs) else None


def sql(query: str, root: str | Path | None = None) -> pd.DataFrame:
    """Run SQL over the store. ``runs`` is the index; ``table('analysis', 'name')``
    expands to a ``read_parquet`` over every run's table of that name, e.g.
    ``SELECT * FROM table('lm_head_decoding', 'decoded') WHERE token = ' Paris'``."""
    root = Path(root) if root else runs_root()
    runs = _index(root)  # noqa: F841  (DuckDB reads the local DataFrame by name)

    def expand(m: re.Match) -> str:
        pattern = root / m.group(1) / "*" / "tables" / f"{m.group(2)}.parquet"
        return f"read_parquet('{pattern}', filename=true)"

    query = re.sub(r"table\('([\w-]+)',\s*'([\w-]+)'\)", expand, query)
    return duckdb.connect().execute(query).df()


def resolve_run(ref: str | Path) -> Path:
    """A run directory from a path or a run id (or a unique prefix of one) in the store."""
    path = Path(ref)
    if (path / "result.json").is_file():
        read_meta(path)  # a damaged run says so here
        return path
    runs = list_runs()
    hits = [p for rid, p in zip(runs.run_id, runs.path) if str(rid).startswith(str(ref))] if len(runs) else []
    if len(hits) == 1:
        return Path(hits[0])
    if not hits:
        for meta_path in sorted(runs_root().glob(f"*/{glob.escape(str(ref))}*/result.json")):
            read_meta(meta_path.parent)  # a damaged run of that id says so
        raise InterpError(f"no stored run {str(ref)!r}: give a run directory or a run id from `interp runs`")
    raise InterpError(f"{str(ref)!r} matches {len(hits)} runs; give more of the run id")
