"""The store: Results on disk under ``$INTERP_RUNS`` (default ``./runs``), and the cache helper.

Layout: ``runs/<analysis>/<run_id>/{result.json, tables/<name>.parquet,
tensors.safetensors}``. ``save_result`` writes into a temporary sibling directory
and renames it into place, so a crash never leaves a half-written run.
``load_result`` restores tables, tensors, metrics and the typed config exactly.
``list_runs`` and ``sql`` query the store with DuckDB. ``cache.Entry`` is the one
helper behind every other cache.
"""

from interp.paths import runs_root
from interp.storage.cache import Entry, atomic_dir, ensure_writable, load_tensors, save_tensors
from interp.storage.results import load_result, save_result, verify_run
from interp.storage.store import (
                                  damaged_runs,
                                  find_runs,
                                  list_runs,
                                  newest_run,
                                  pin_run,
                                  resolve_run,
                                  sql,
                                  store_stamp,
                                  unpin,
)

__all__ = ["Entry", "atomic_dir", "damaged_runs", "ensure_writable", "find_runs", "list_runs", "load_result",
           "load_tensors", "newest_run", "pin_run", "resolve_run", "runs_root", "save_result", "save_tensors", "sql",
           "store_stamp", "unpin", "verify_run"]
