"""Benchmark: seconds per neuron graph, against one forward + backward pass measured in the same run.

    python benchmarks/neuron_graph.py [--models smollm2-135m,gemma3-270m] [--device cpu] [--record]
    python benchmarks/neuron_graph.py --shapes llama-3.1-8b --device cuda     # the 8B-shaped version (GPU)

For each model: a 16-token prompt, 1,000 neurons expanded (so at least 300 are kept), 64 targets per
backward pass, timed whole (``interp graph`` without saving), and as the baseline one plain forward and
backward pass of the same prompt (the gradient of its top logit with respect to the embeddings), timed
after a warm-up. Prints seconds per graph, the ratio to the baseline, the number of backward passes, and
the neurons and edges kept. ``--shapes`` builds a random-weight model of a published config on the device
(``gpu_shapes.build``; no download): timing depends on shapes, not on trained values.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import torch

warnings.filterwarnings("ignore")
PROMPT = "When Mary and John went to the store, John gave a drink to her friend"  # 16 tokens (+ BOS on Gemma)
FILES = ["benchmarks/neuron_graph.py", "interp/analyses/circuits/graph.py", "interp/analyses/circuits/prune.py",
         "interp/tracing/linear.py", "interp/tracing/lrp.py", "interp/tracing/hooks.py"]


def baseline(model, tokens) -> float:
    """Seconds of one forward and backward pass (top logit -> embeddings), after a warm-up."""
    from interp.names import hook_name
    from interp.tracing.hooks import track_grad

    def once():
        with torch.enable_grad(), track_grad(model):
            from interp.tracing.hooks import record

            with record(model, [hook_name("resid_pre", 0)], detach=False) as acts:
                logits = model(tokens)[0, -1]
            torch.autograd.grad(logits.max(), [acts[hook_name("resid_pre", 0)]])

    once()
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    once()
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def measure(model, label: str, max_nodes: int) -> dict:
    import interp

    tokens = model.to_tokens(PROMPT)
    base = baseline(model, tokens)
    t = time.perf_counter()
    r = interp.run("neuron_graph", model, save=False, prompt=PROMPT, max_nodes=max_nodes)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    m = r.metrics
    out = {"model": label, "tokens": int(tokens.shape[1]), "seconds": round(seconds, 2),
           "baseline_s": round(base, 3), "ratio": round(seconds / base, 1), "backward_passes": m["backward_passes"],
           "neurons_kept": m["n_neurons_kept"], "edges": m["n_edges"], "replacement": round(m["replacement"], 3),
           "completeness": round(m["completeness"], 3)}
    print(f"{label}: {seconds:.1f} s per graph of a {out['tokens']}-token prompt = {out['ratio']}x one forward+"
          f"backward ({base:.3f} s); {out['backward_passes']} backward passes; {out['neurons_kept']} neurons and "
          f"{out['edges']:,} edges kept; replacement {out['replacement']}, completeness {out['completeness']}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--shapes", default="", help="random-weight models of published configs, e.g. llama-3.1-8b")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/graph-<model>.json")
    parser.add_argument("--max-nodes", type=int, default=1000, help="neurons expanded")
    args = parser.parse_args()
    import interp

    print(f"{torch.get_num_threads()} threads on {args.device}")
    rows = []
    if args.shapes:
        sys.path.insert(0, os.path.dirname(__file__))
        from gpu_shapes import build

        for shape in args.shapes.split(","):
            rows.append(measure(build(shape, args.device, getattr(torch, args.dtype)), shape, args.max_nodes))
        return
    for spec in [s for s in args.models.split(",") if s]:
        rows.append(measure(interp.load_model(spec, device=args.device, dtype=args.dtype), spec, args.max_nodes))
        if args.record:
            sys.path.insert(0, os.path.dirname(__file__))
            from record import save

            r = rows[-1]
            save(f"graph-{spec}", f"{r['seconds']:.1f} s per graph ({spec}, {r['tokens']} tokens, "
                 f"{r['neurons_kept']} neurons kept; {r['ratio']}× one forward+backward)", r,
                 f"python benchmarks/neuron_graph.py --models {spec} --record", FILES)


if __name__ == "__main__":
    main()
