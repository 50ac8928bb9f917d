"""Benchmark: batched causal tracing against one restoration at a time, and unlearning on CPU.

    python benchmarks/causal_tracing.py [--samples 10] [--skip-unlearning]

On the embedded model, for one fact ("The capital of France is" -> " Paris"), measured in one run:
- causal tracing of the residual, MLP and attention paths at every (layer, token from the
  subject on), ``--samples`` noise samples, with restorations batched 256 rows a pass;
- the same with one restoration per forward pass (its noise samples still batched);
- the ratio, and a check that both give the same effects;
- the wall time of the default unlearning run (the trace and every method, 10 facts).
"""

from __future__ import annotations

import argparse
import time
import warnings

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--skip-unlearning", action="store_true")
    args = ap.parse_args()

    import torch

    import interp
    from interp.analyses.patching.causal_tracing import TraceConfig, trace_fact
    from interp.datasets.prompts import Fact

    model = interp.load_model("smollm2-135m")
    fact = Fact("The capital of France is", "France", " Paris", "capital")
    answer = model.token_id(" Paris")
    timings, outs = {}, {}
    for name, rows in (("batched", 256), ("one at a time", args.samples)):
        cfg = TraceConfig(samples=args.samples, batch_rows=rows)
        start = time.perf_counter()
        outs[name] = trace_fact(model, fact, answer, cfg)
        timings[name] = time.perf_counter() - start
        print(f"causal tracing, {name:<14} {timings[name]:7.1f} s", flush=True)
    same = all(torch.allclose(outs["batched"]["effects"][k], outs["one at a time"]["effects"][k], atol=1e-4)
               for k in outs["batched"]["effects"])
    print(f"batched vs one restoration per pass: {timings['one at a time'] / timings['batched']:.1f}x faster "
          f"(same effects: {same})")
    if not args.skip_unlearning:
        start = time.perf_counter()
        result = interp.run("unlearning", model)
        print(f"unlearning (trace + every method, {result.metrics['n_forget']} facts): "
              f"{time.perf_counter() - start:.0f} s")
        for note in result.notes:
            print(" ", note)


if __name__ == "__main__":
    main()
