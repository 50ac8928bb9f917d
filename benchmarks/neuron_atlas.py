"""Benchmark: atlas throughput against plain forward passes, and its memory at two corpus sizes.

    python benchmarks/neuron_atlas.py [--batches 16] [--sizes 10000 100000] [--models smollm2-135m gemma3-270m]

The headline is the whole command, ``interp atlas`` as it runs (its one pass: the streamed reducers with the
GLU quadrants, the samples and the stored contexts, then the Result), timed end to end without saving, against
plain forward passes over the same tokens measured in the same run, on each model; it is recorded in
``benchmarks/results/atlas-<model>.json``. The atlas's forward stops after the last chosen layer's MLP (it
needs no logits); the loop lines below say what that saves and what the reducers cost.

Measured in one run on the embedded model (all 30 layers, 8 x 128-token batches of stdlib-docs):
- throughput: tokens/s of the atlas loop (every neuron into the streaming reducers) against plain forward
  passes over the same batches, and of the forward stopped after the last layer's MLP with no reducer;
- peak RSS of ``interp atlas`` in a fresh process at each corpus size (goal: flat within 10%).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import torch

warnings.filterwarnings("ignore")

CHILD = """
import json, resource, sys, warnings
warnings.filterwarnings("ignore")
import interp
model = interp.load_model("smollm2-135m")
interp.run("neuron_atlas", model, corpus="stdlib-docs", n_tokens=int(sys.argv[1]), checkpoint_every=0, save=False)
print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=16)  # as many as `make run`'s atlas: the first batches cost more
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--models", nargs="*", default=["smollm2-135m", "gemma3-270m"])
    args = ap.parse_args()
    for spec in args.models:
        whole_command(spec, args.batches)

    import interp
    from interp.analyses.neurons.atlas import AtlasConfig, _reducer, plan, skipped
    from interp.tracing.stream import stream_batches

    model = interp.load_model("smollm2-135m")
    config = AtlasConfig(corpus="stdlib-docs", n_tokens=args.batches * 8 * 128, checkpoint_every=0)
    tokens = plan(model, config)
    n_batches = len(tokens) // 8
    layers = list(range(model.n_layers))
    reducer = _reducer(model, model.n_layers, config)
    class NoFold:  # stream_batches with hooks that fold nothing, stopping after the last layer
        context_k = quadrant_k = 0
        fused = False
        device = model.device

        def fold(self, *args):
            pass

        def add_tokens(self, n):
            pass

    plain = atlas = stopped = 0.0
    with torch.no_grad():
        model(tokens[:8])  # warm-up
        for b in range(n_batches):  # alternate per batch, so background load hits each alike
            batch = tokens[b * 8:(b + 1) * 8]
            t = time.perf_counter()
            model(batch)
            plain += time.perf_counter() - t
            t = time.perf_counter()
            stream_batches(model, tokens, layers, 8, [b], NoFold(), disable=True)
            stopped += time.perf_counter() - t
            t = time.perf_counter()
            stream_batches(model, tokens, layers, 8, [b], reducer, disable=True, skip=skipped(model, config))
            atlas += time.perf_counter() - t
    n = n_batches * 8 * 128
    print(f"smollm2-135m, {n:,} tokens in {n_batches} batches of 8 x 128, {torch.get_num_threads()} threads, "
          "the three alternating per batch")
    print(f"  plain forward                 {n / plain:8.0f} tok/s")
    print(f"  forward stopped after layer 29 {n / stopped:7.0f} tok/s   {plain / stopped:.2f}x")
    print(f"  atlas loop (all 46,080)       {n / atlas:8.0f} tok/s   {plain / atlas:.2f}x the plain forward's "
          f"throughput; the reducers take {1 - stopped / atlas:.0%} of its time")

    rss = {}
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as runs:
            out = subprocess.run([sys.executable, "-c", CHILD, str(size)], capture_output=True, text=True,
                                 env={**os.environ, "INTERP_RUNS": runs}, check=True)
        rss[size] = json.loads(out.stdout.strip().splitlines()[-1])["maxrss_mb"]
        print(f"  peak RSS at {size:>7,} tokens: {rss[size]:7.0f} MB")
    if len(rss) > 1:
        lo, hi = min(args.sizes), max(args.sizes)
        print(f"  RSS growth {lo:,} -> {hi:,} tokens: {rss[hi] / rss[lo] - 1:+.1%}")


def whole_command(spec: str, batches: int) -> None:
    """``interp atlas`` end to end (every pass and reducer, no save) against plain forward passes over the same
    windows, both measured here, plain first (after one warm-up batch)."""
    import interp
    from interp.analyses.neurons.atlas import AtlasConfig, plan

    model = interp.load_model(spec)
    config = AtlasConfig(corpus="stdlib-docs", n_tokens=batches * 8 * 128, checkpoint_every=0)
    tokens = plan(model, config)
    with torch.no_grad():
        model(tokens[:8])  # warm-up
        t = time.perf_counter()
        for b in range(0, len(tokens), 8):
            model(tokens[b:b + 8])
        plain = time.perf_counter() - t
    t = time.perf_counter()
    interp.run("neuron_atlas", model, config, save=False)
    whole = time.perf_counter() - t
    n = tokens.numel()
    ratio = plain / whole
    print(f"{spec}: `interp atlas` (all passes) over {n:,} tokens {whole:.1f} s ({n / whole:.0f} tok/s); plain "
          f"forward {plain:.1f} s ({n / plain:.0f} tok/s): {ratio:.2f}x the plain forward's throughput")
    sys.path.insert(0, os.path.dirname(__file__))
    from record import save

    save(f"atlas-{spec}", f"{ratio:.2f}× a plain forward ({spec}, whole `interp atlas`)",
         {"ratio": round(ratio, 3), "atlas_s": round(whole, 2), "plain_s": round(plain, 2), "tokens": n,
          "atlas_tok_s": round(n / whole), "plain_tok_s": round(n / plain)},
         f"python benchmarks/neuron_atlas.py --models {spec} --sizes", [
             "benchmarks/neuron_atlas.py", "interp/analyses/neurons/atlas.py", "interp/tracing/reducers.py",
             "interp/tracing/fused.py",
             "interp/tracing/stream.py", "interp/tracing/hooks.py"])


if __name__ == "__main__":
    main()
