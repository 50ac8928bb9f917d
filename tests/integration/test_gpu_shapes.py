"""The shape-faithful GPU benchmark runs end to end on its tiny shape on the CPU (so it cannot
rot between the sessions that have a GPU); its figures are printed, not asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "gpu_shapes.py"


def test_the_gpu_shapes_benchmark_runs_on_its_tiny_shape(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--shapes", "tiny", "--dtype", "float32",
                           "--tokens", "2048", "--batch", "4", "--pairs", "2"], capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "INTERP_RUNS": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for line in ("decoding 384 neurons (fp32)", "the GEMM time", "x the plain forward", "relp", "activation",
                 "faster than activation patching"):
        assert line in out, (line, out)


def test_the_neuron_graph_benchmark_runs_on_the_tiny_shape(tmp_path):
    """`benchmarks/neuron_graph.py --shapes` is the 8B-shaped run for a GPU: its code path runs here on the tiny
    shape, so the first GPU session does not meet it broken."""
    script = SCRIPT.parent / "neuron_graph.py"
    done = subprocess.run([sys.executable, str(script), "--device", "cpu", "--shapes", "tiny", "--max-nodes", "100"],
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "INTERP_RUNS": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "s per graph" in done.stdout and "backward passes" in done.stdout, done.stdout
