"""Explaining and scoring every neuron, against the atlas pass it reads from (measured in the same run).

    python benchmarks/neuron_explanations.py [--models smollm2-135m,gemma3-270m] [--layers 0-17] [--record]
        [--llm-neurons N]   # also the embedded SmolLM2-135M-Instruct as explainer, N neurons per layer

Builds the atlas `make run` builds (sampled:4096+stdlib-docs, 16,384 tokens; timed), then `interp explain`
with its defaults (token statistics, TokenChange on 4 neurons per layer, the random-explanation, shuffled-
token and random-weights baselines; timed). Both Results are stored, so the dashboard reads them. Prints
the seconds and their ratio, and each score's distribution (median, share above the random explanations'
95th percentile) for the trained and the random weights. The goal: all 46,080 SmolLM2 neurons in <= 30
minutes on 2 CPU cores with no LLM.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

FILES = ["interp/analyses/neurons/explain.py", "interp/analyses/neurons/scoring.py",
         "interp/analyses/neurons/simulate.py", "interp/analyses/neurons/atlas.py", "interp/tracing/reducers.py",
         "interp/tracing/fused.py", "interp/tracing/stream.py"]
ATLAS = {"corpus": "sampled:4096+stdlib-docs", "n_tokens": 16384}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--layers", default="", help="e.g. 0-5 (default: all)")
    parser.add_argument("--llm-neurons", type=int, default=0, help="neurons per layer for the local LLM explainer")
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/explain-<model>.json")
    args = parser.parse_args()

    import interp
    from interp.analyses.base import cached_run, run
    from interp.commands.common import convert

    layers = tuple(convert("ints", args.layers)) if args.layers else ()
    print(f"{torch.get_num_threads()} threads")
    for spec in [s for s in args.models.split(",") if s]:
        model = interp.load_model(spec)
        cached_run("lm_head_decoding", model, layers=layers)  # built once, as `make run` does; not timed
        t0 = time.perf_counter()
        atlas = run("neuron_atlas", model, **ATLAS, layers=layers)
        atlas_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = run("neuron_explanations", model, layers=layers, atlas=str(atlas.path))
        explain_s = time.perf_counter() - t0
        n = result.metrics["neurons"]
        values = {"model": spec, "neurons": n, "layers": result.metrics["layers"], "atlas_seconds": round(atlas_s, 1),
                  "explain_seconds": round(explain_s, 1), "ratio_to_atlas": round(explain_s / atlas_s, 2),
                  "scores": result.metrics["tokens"], "random_weights": result.metrics.get("random_weights"),
                  "outputs": result.metrics.get("outputs"), "explain_run": str(result.path)}
        if args.llm_neurons:
            t0 = time.perf_counter()
            llm = run("neuron_explanations", model, layers=layers, atlas=str(atlas.path), llm="local",
                      llm_neurons=args.llm_neurons)  # everything again, and the LLM: the Result to commit
            values["llm"] = llm.metrics["llm"] | {"seconds_with_everything_else": round(time.perf_counter() - t0, 1),
                                                  "run": str(llm.path)}
        print(json.dumps(values, indent=1))
        print(f"{spec}: {n:,} neurons explained and scored in {explain_s / 60:.1f} min; the atlas pass took "
              f"{atlas_s / 60:.1f} min ({explain_s / atlas_s:.2f}x)")
        if args.record:
            sys.path.insert(0, os.path.dirname(__file__))
            from record import save

            save(f"explain-{spec}", f"{explain_s / 60:.1f} min to explain and score {n:,} neurons of {spec} "
                 f"({explain_s / atlas_s:.2f}× the atlas pass of {atlas_s / 60:.1f} min)", values,
                 f"python benchmarks/neuron_explanations.py --models {spec}"
                 + (f" --layers {args.layers}" if args.layers else "") + " --record", FILES)


if __name__ == "__main__":
    main()
