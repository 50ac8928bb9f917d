"""Execute a notebook in place with its full parameters (INTERP_QUICK unset), as `make notebooks` does.

    python scripts/run_notebook.py notebooks/relevance_patching.ipynb [--timeout 3600]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("notebook", type=Path)
    ap.add_argument("--timeout", type=int, default=3600, help="seconds a cell may take")
    args = ap.parse_args()
    os.environ.pop("INTERP_QUICK", None)
    os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")  # kaleido's Chromium, where Debian puts it
    nb = nbformat.read(args.notebook, as_version=4)
    started = time.perf_counter()
    NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(args.notebook.parent)}}).execute()
    nbformat.write(nb, args.notebook)
    print(f"{args.notebook}: executed in {time.perf_counter() - started:.0f} s")  # noqa: T201


if __name__ == "__main__":
    main()
