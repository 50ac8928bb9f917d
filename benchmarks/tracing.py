"""Benchmark: recording every MLP neuron vs the plain HF forward, and model load times.

    python benchmarks/tracing.py [--batch 8] [--seq 128] [--reps 5]

Prints, measured in this run on the same batch of random tokens:
- plain HF forward (a separate, un-bridged copy of the model): the baseline;
- the bridge with no hooks;
- interp ``record`` of all ``blocks.{l}.mlp.hook_post`` (every neuron, every layer);
- TransformerLens' ``run_with_cache`` filtered to the same hooks;
each as a median over ``--reps`` runs (interleaved), and its ratio to the baseline;
then the cold load (GGUF dequantize + cache write, in a fresh INTERP_HOME) and the
warm load (from the safetensors cache).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM

    from interp.models import load_model
    from interp.models.embedded import embedded_cache_dir
    from interp.names import hook_name
    from interp.tracing.hooks import record

    with tempfile.TemporaryDirectory() as home:
        real_home = os.environ.get("INTERP_HOME")
        os.environ["INTERP_HOME"] = home
        cold = timed(lambda: load_model("smollm2-135m"))
        warm = timed(lambda: load_model("smollm2-135m"))
        if real_home is None:
            del os.environ["INTERP_HOME"]
        else:
            os.environ["INTERP_HOME"] = real_home

    model = load_model("smollm2-135m")
    plain = AutoModelForCausalLM.from_pretrained(embedded_cache_dir(), dtype=torch.float32,
                                                 use_safetensors=True, attn_implementation="eager").eval()
    tokens = torch.randint(0, model.d_vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    sites = [hook_name("mlp_post", l) for l in range(model.n_layers)]

    def hf():
        plain(tokens)

    def bridge():
        model(tokens)

    def interp_record():
        with record(model, sites) as acts:
            model(tokens)
        assert len(acts) == model.n_layers

    def tl_cache():
        model.bridge.run_with_cache(tokens, names_filter=lambda n: n in set(sites))

    cases = {"plain HF forward": hf, "bridge, no hooks": bridge,
             "interp record (all neurons)": interp_record, "TL run_with_cache (filtered)": tl_cache}
    times: dict[str, list[float]] = {k: [] for k in cases}
    with torch.no_grad():
        for fn in cases.values():
            fn()  # warm-up
        for _ in range(args.reps):
            for name, fn in cases.items():
                times[name].append(timed(fn))
    base = statistics.median(times["plain HF forward"])
    print(f"smollm2-135m, batch {args.batch} x {args.seq} tokens, {torch.get_num_threads()} threads, "
          f"median of {args.reps}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:<30} {med:7.3f} s   {med / base:5.3f}x plain HF")
    print(f"  cold load (GGUF dequantize + cache): {cold:6.1f} s")
    print(f"  warm load (safetensors cache):       {warm:6.1f} s")


if __name__ == "__main__":
    main()
