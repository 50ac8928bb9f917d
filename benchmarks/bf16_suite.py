"""The unit suite in bfloat16 on the CPU: how many tests pass and how long it takes (the README's figure).

    python benchmarks/bf16_suite.py

Runs ``pytest tests/unit --dtype bfloat16`` in a subprocess and records the count and time in
``benchmarks/results/bf16-unit-suite.json``. The record times every file under ``interp/`` and ``tests/unit/``,
so any change to them marks the figure stale until this runs again."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit",
                          "--dtype", "bfloat16"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "INTERP_QUICK": "1"})
    seconds = time.perf_counter() - t
    last = out.stdout.strip().splitlines()[-1]
    print(last)
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error)", last)}
    sys.path.insert(0, os.path.dirname(__file__))
    from record import save

    files = [str(p.relative_to(ROOT)) for d in ("interp", "tests/unit") for p in sorted((ROOT / d).rglob("*.py"))]
    figure = (f"{counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed in bfloat16 "
              f"({seconds:.0f} s)")
    save("bf16-unit-suite", figure, {**counts, "seconds": round(seconds)}, "python benchmarks/bf16_suite.py",
         files + ["tests/conftest.py", "tests/tolerances.py"])
    if out.returncode:
        print(out.stdout[-3000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
