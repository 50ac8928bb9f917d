"""The store: Results on disk under ``$INTERP_RUNS`` (default ``./runs``).

Layout: ``runs/<analysis>/<run_id>/{result.json, tables/<name>.parquet,
tensors.safetensors}``. ``save_result`` writes into a temporary sibling directory
and renames it into place, so a crash never leaves a half-written run.
``load_result`` restores tables, tensors and metrics exactly. ``list_runs`` and
``sql`` query the store with DuckDB.
"""

from interp.storage.results import load_result, runs_root, save_result
from interp.storage.store import find_runs, list_runs, resolve_run, sql

__all__ = ["find_runs", "list_runs", "load_result", "resolve_run", "runs_root", "save_result", "sql"]
