"""The store's runs index (pinned, then newest first) and SQL over its Parquet tables (DuckDB)."""

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
from interp.storage.pins import pins_stamp, read_pins, write_pin
from interp.storage.results import read_meta, verify_run
from interp.storage.schema import NAME, RUN_ID, check_name

COLUMNS = ["analysis", "run_id", "model", "weights_hash", "created", "path", "metrics"]
EXTRA = ["config", "analysis_version", "mtime"]


_WARNED: set[str] = set()


RUN_DIR = re.compile(r"^\d{8}-\d{6}-[A-Za-z0-9._-]+-[0-9a-f]{6}$")  # the directory a run is saved in


def damaged_runs(root: str | Path | None = None, analysis: str | None = None) -> list[tuple[str, str]]:
    """``(path, what is wrong)`` for every damaged run in the store: a ``result.json`` that is unreadable or
    breaks the schema, or files that differ from the sizes and hashes recorded when it was saved
    (``verify_run``). Only directories ``<store>/<analysis>/<run id>`` inside the store are looked at (no
    link is followed); ``analysis`` must be an analysis name."""
    root = Path(root) if root else runs_root()
    if analysis is not None:
        check_name(analysis)
    out = []
    if not root.is_dir() or root.is_symlink():
        return out
    for folder in sorted(root.iterdir()):
        if folder.is_symlink() or not folder.is_dir() or not re.fullmatch(NAME, folder.name) or \
                (analysis is not None and folder.name != analysis):
            continue
        for run in sorted(folder.iterdir()):
            if run.name.startswith(".") or run.is_symlink() or not (run / "result.json").is_file():
                continue
            problems = verify_run(run)
            if problems:
                out.append((str(run), "; ".join(problems)))
    return out


def removable(path: str | Path, root: str | Path | None = None) -> str | None:
    """Why a damaged run must not be removed (None: it may be): it is removed only when it is provably an interp
    run directory inside the store: ``<store>/<analysis>/<run id>``, a real directory (no link), named as interp
    names runs, and holding nothing but what interp writes there."""
    root = (Path(root) if root else runs_root()).resolve()
    path = Path(path)
    if path.is_symlink() or path.parent.is_symlink():
        return "it is a link"
    real = path.resolve()
    if real.parent.parent != root or not re.fullmatch(NAME, real.parent.name):
        return "it is not <store>/<analysis>/<run> inside the store"
    if not RUN_DIR.fullmatch(real.name):
        return "its name is not an interp run id"
    extra = sorted(p.name for p in real.iterdir() if p.name not in ("result.json", "tables", "tensors.safetensors"))
    if extra:
        return f"it holds files interp does not write ({', '.join(extra[:3])})"
    return None


def store_stamp(root: str | Path | None = None) -> tuple:
    """What the store holds now, cheaply (no file is read): its root, the number of runs, the newest and
    the sum of their ``result.json`` modification times. It changes when a run is stored, replaced or removed."""
    root = Path(root) if root else runs_root()
    times = [p.stat().st_mtime for p in root.glob("*/*/result.json")] if root.is_dir() else []
    return str(root.resolve()), len(times), max(times, default=0.0), round(sum(times), 6), pins_stamp(root)


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
    """Stored runs (optionally of one analysis): the pinned run of each analysis and weights first
    (``pinned``; see ``pin_run``), then newest first."""
    root = Path(root) if root else runs_root()
    runs = _index(root)
    pins = read_pins(root)
    runs["pinned"] = [pins.get(a, {}).get(w) == r for a, w, r in zip(runs.analysis, runs.weights_hash, runs.run_id)]
    if analysis:
        runs = runs[runs.analysis == analysis]
    # pandas, not DuckDB: the dashboard asks for this on every card (a DuckDB query cost ~0.1 s of each)
    return runs.sort_values(["pinned", "created"], ascending=False, kind="stable").reset_index(drop=True)


def pin_run(ref: str | Path, on: bool = True) -> dict:
    """Pin a stored run (a path or run id): it is the one every look-up of its analysis on its weights uses
    (the dashboard's pages, the card, ``latest``) until unpinned (``on=False``: the newest is used again).
    Returns its analysis, run id and weights hash."""
    path = resolve_run(ref)
    meta = read_meta(path)
    weights = (meta.get("provenance") or {}).get("weights_hash")
    write_pin(meta["analysis"], weights, meta["run_id"] if on else None, path.resolve().parent.parent)
    return {"analysis": meta["analysis"], "run_id": meta["run_id"], "weights_hash": weights}


def unpin(analysis: str, weights_hash: str, root: str | Path | None = None) -> None:
    """Drop the pin of ``analysis`` on ``weights_hash`` (the newest run is used again)."""
    write_pin(check_name(analysis), weights_hash, None, root)


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


def sql(query: str, root: str | Path | None = None, run: str | None = None) -> pd.DataFrame:
    """Run SQL over the store. ``runs`` is the index; ``table('analysis', 'name')``
    expands to a ``read_parquet`` over every run's table of that name, e.g.
    ``SELECT * FROM table('lm_head_decoding', 'decoded') WHERE token = ' Paris'``; with ``run`` (a run id),
    over that run's table only, so a query returns each row once however many runs are stored."""
    root = Path(root) if root else runs_root()
    runs = _index(root)  # noqa: F841  (DuckDB reads the local DataFrame by name)
    if run is not None and not re.fullmatch(RUN_ID, str(run)):
        raise InterpError(f"run={run!r} is not a run id: give one from `interp runs` (or result.run_id)")

    def expand(m: re.Match) -> str:
        pattern = root / m.group(1) / (run or "*") / "tables" / f"{m.group(2)}.parquet"
        return f"read_parquet('{pattern}', filename=true)"

    query = re.sub(r"table\('([\w-]+)',\s*'([\w-]+)'\)", expand, query)
    return duckdb.connect().execute(query).df()


def resolve_run(ref: str | Path, analysis: str | None = None) -> Path:
    """A run directory from a path or a run id (or a unique prefix of one) in the store; with ``analysis``, it
    must be a run of that analysis."""
    path = _resolve(ref)
    if analysis is not None:
        found = read_meta(path)["analysis"]
        if found != analysis:
            raise InterpError(f"{str(ref)!r} is a {found} run, not a {analysis} run: give one from "
                              f"`interp runs --analysis {analysis}`")
    return path


def _resolve(ref: str | Path) -> Path:
    path = Path(ref)
    if (path / "result.json").is_file():
        read_meta(path)  # a damaged run says so here
        return path
    runs = list_runs()
    hits = [p for rid, p in zip(runs.run_id, runs.path) if str(rid).startswith(str(ref))] if len(runs) else []
    if len(hits) == 1:
        return Path(hits[0])
    if not hits and re.fullmatch(RUN_ID, str(ref)):  # a run id is one path component: the glob stays in the store
        for meta_path in sorted(runs_root().glob(f"*/{glob.escape(str(ref))}*/result.json")):
            read_meta(meta_path.parent)  # a damaged run of that id says so
    if not hits:
        raise InterpError(f"no stored run {str(ref)!r}: give a run directory or a run id from `interp runs`")
    raise InterpError(f"{str(ref)!r} matches {len(hits)} runs; give more of the run id")
