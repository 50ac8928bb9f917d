"""The unit suite in bfloat16 on the CPU: how many tests pass and how long it takes (the README's figure).

    python benchmarks/bf16_suite.py

Runs ``pytest tests/unit --dtype bfloat16`` in a subprocess and records the count and time in
``benchmarks/results/bf16-unit-suite.json``. The record times every file under ``interp/`` and ``tests/unit/``,
so any change to them marks the figure stale until this runs again.

It also writes ``tests/bf16_fast.txt``, the part of the suite ``make test`` runs in bfloat16: the test files
every test of which passed here, fastest first, up to ``FAST_BUDGET_S`` seconds of their measured time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAST_BUDGET_S = 60
FAST = ROOT / "tests" / "bf16_fast.txt"


def fast_files(junit: Path) -> list[str]:
    """Test files wholly passing in the JUnit report, fastest first, within ``FAST_BUDGET_S``."""
    seconds, bad = defaultdict(float), set()
    for case in ET.parse(junit).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")  # the module, then a test class if there is one
        path = "/".join(parts[:-1] if parts[-1][:1].isupper() else parts) + ".py"
        seconds[path] += float(case.get("time", 0))
        if case.find("failure") is not None or case.find("error") is not None or case.find("skipped") is not None:
            bad.add(path)
    chosen, total = [], 0.0
    for path, secs in sorted(seconds.items(), key=lambda kv: kv[1]):
        if path not in bad and (ROOT / path).is_file() and total + secs <= FAST_BUDGET_S:
            chosen.append(path)
            total += secs
    return chosen


def main() -> int:
    junit = Path(tempfile.mkdtemp()) / "bf16.xml"
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit",
                          "--dtype", "bfloat16", f"--junitxml={junit}"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "INTERP_QUICK": "1"})
    seconds = time.perf_counter() - t
    chosen = fast_files(junit)
    FAST.write_text("".join(f"{p}\n" for p in chosen))
    print(f"wrote {FAST.relative_to(ROOT)}: {len(chosen)} test files that pass in bfloat16 (make test runs them)")
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
