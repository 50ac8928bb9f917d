"""Time the first `make run` from a clean clone, phase by phase, the way a new user meets it: a fresh clone,
a fresh $INTERP_HOME (so the embedded model is dequantized again and the corpus sampled again), no pip cache,
and a store holding only the committed Results. Stops the dashboard once it answers on localhost and prints
each phase's time (install, decode, atlas, dashboard start) and the total.

    python scripts/time_first_run.py [--repo /work/main] [--model smollm2-135m] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

PHASES = [("install", re.compile(r"python3 -m venv|pip install")), ("decode", re.compile(r"bin/interp decode")),
          ("atlas", re.compile(r"bin/interp atlas")), ("dashboard", re.compile(r"streamlit run"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--port", type=int, default=8599)
    parser.add_argument("--keep", action="store_true", help="keep the clone and its $INTERP_HOME")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="first-run-"))
    clone, home = work / "interp", work / "home"
    subprocess.run(["git", "clone", "-q", args.repo, str(clone)], check=True)
    env = {**os.environ, "INTERP_HOME": str(home), "PIP_NO_CACHE_DIR": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    started = time.perf_counter()
    proc = subprocess.Popen(["make", "run", f"MODEL={args.model}", f"PORT={args.port}"], cwd=clone, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    marks: list[tuple[str, float]] = []

    def read() -> None:
        for line in proc.stdout:
            sys.stdout.write(line)
            for name, pattern in PHASES:
                if pattern.search(line) and (not marks or marks[-1][0] != name) and name not in dict(marks):
                    marks.append((name, time.perf_counter() - started))

    threading.Thread(target=read, daemon=True).start()
    url = f"http://127.0.0.1:{args.port}/_stcore/health"
    while proc.poll() is None:
        try:
            if urllib.request.urlopen(url, timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(1)
    total = time.perf_counter() - started
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    bounds = [t for _, t in marks] + [total]
    print("\nfirst `make run` from a clean clone (fresh INTERP_HOME, no pip cache):")
    for (name, t0), t1 in zip(marks, bounds[1:]):
        print(f"  {name:<10} {(t1 - t0) / 60:5.1f} min")
    print(f"  {'total':<10} {total / 60:5.1f} min (until the dashboard answers on 127.0.0.1:{args.port})")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
