"""Benchmark records: every timing figure in the README is a record in ``benchmarks/results/<id>.json`` with
the figure as the README prints it, the values behind it, the command that measured it, the commit and date,
and the sha256 of each source file it times. ``python scripts/stale_figures.py`` lists the records whose
timed files changed since they were measured (``make test`` prints that list); the README marks such a
figure as stale until the command is run again."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def file_sha(path: str | Path) -> str:
    return hashlib.sha256((ROOT / path).read_bytes()).hexdigest()


def save(record_id: str, figure: str, values: dict, command: str, files: list[str], note: str = "",
         commit: str | None = None) -> Path:
    """Write (or overwrite) record ``record_id``; ``files`` are paths relative to the repository root; ``commit``
    defaults to the checkout's (``interp.result.git_commit``)."""
    if commit is None:
        from interp.result import git_commit

        commit = git_commit()
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"id": record_id, "figure": figure, "values": values, "command": command, "commit": commit,
              "date": date.today().isoformat(), "machine": f"{os.cpu_count()} CPU cores",
              "files": {f: file_sha(f) for f in sorted(files)}, "note": note}
    path = RESULTS / f"{record_id}.json"
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(f"recorded {path.relative_to(ROOT)}: {figure}")
    return path


def stale() -> list[tuple[str, list[str]]]:
    """``(record id, the timed files that changed or vanished)`` for every stale record."""
    out = []
    for path in sorted(RESULTS.glob("*.json")):
        record = json.loads(path.read_text())
        changed = [f for f, sha in record["files"].items() if not (ROOT / f).is_file() or file_sha(f) != sha]
        if changed:
            out.append((record["id"], changed))
    return out
