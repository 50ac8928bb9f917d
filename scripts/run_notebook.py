"""Execute a notebook in place with its full parameters (INTERP_QUICK unset), as `make notebooks` does, and
stamp it with the analysis VERSIONs its outputs were made by (``metadata.interp.used``: every analysis whose
Results the run computed or read, ``interp.result.USED``), so `tests/unit/docs/test_notebooks_current.py`
fails when a committed notebook's outputs predate an analysis's current VERSION.

    python scripts/run_notebook.py notebooks/relevance_patching.ipynb [--timeout 3600]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat
from nbclient import NotebookClient

MARK = "INTERP_USED="
STAMP = f"import json, interp.result\nprint('{MARK}' + json.dumps({{a: sorted(v) for a, v in interp.result.USED.items()}}))"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("notebook", type=Path)
    ap.add_argument("--timeout", type=int, default=3600, help="seconds a cell may take")
    args = ap.parse_args()
    os.environ.pop("INTERP_QUICK", None)
    os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")  # kaleido's Chromium, where Debian puts it
    nb = nbformat.read(args.notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(STAMP))  # run last, then removed: what the run used
    started = time.perf_counter()
    NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(args.notebook.parent)}}).execute()
    stamp = nb.cells.pop()
    text = "".join(o.get("text", "") for o in stamp.outputs if o.get("output_type") == "stream")
    used = json.loads(text.split(MARK, 1)[1])
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    nb.metadata["interp"] = {"used": used, "executed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             "git_commit": commit}
    nbformat.write(nb, args.notebook)
    print(f"{args.notebook}: executed in {time.perf_counter() - started:.0f} s; analyses used: {used}")  # noqa: T201


if __name__ == "__main__":
    main()
