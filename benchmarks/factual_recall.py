"""Benchmark: the full factual-recall decomposition per fact, against one forward pass.

    python benchmarks/factual_recall.py [--facts builtin:capitals]

Measured in one run on the embedded model:
- one batched forward pass over every prompt of the set (the baseline), per fact;
- the full decomposition (scoring, recording every site, DLA of every layer and head, the
  per-prompt regression, neuron contributions, and two ablation passes), per fact;
- their ratio.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--facts", default="builtin:capitals")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import interp
    from interp.analyses.facts.factual_recall import FactualConfig
    from interp.analyses.facts.factual_recall import run as decompose
    from interp.datasets.prompts import load_facts

    model = interp.load_model("smollm2-135m")
    facts = load_facts(args.facts)
    batch = model.batch([f.prompt for f in facts])
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        with torch.no_grad():
            model(batch.tokens)
        times.append(time.perf_counter() - start)
    forward = sorted(times)[len(times) // 2] / len(facts)
    start = time.perf_counter()
    result = decompose(model, FactualConfig(facts=args.facts))
    full = (time.perf_counter() - start) / result.metrics["n_decomposed"]
    print(f"{len(facts)} facts, {result.metrics['n_decomposed']} answered correctly and decomposed")
    print(f"one forward pass:        {forward * 1000:8.1f} ms per fact (batched, median of {args.repeats})")
    print(f"full decomposition:      {full * 1000:8.1f} ms per fact")
    print(f"cost ratio:              {full / forward:8.1f}x one forward pass")


if __name__ == "__main__":
    main()
