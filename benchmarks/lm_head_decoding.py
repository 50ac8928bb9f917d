"""Benchmark: LM-head decoding of every neuron against its roofline and a naive loop.

    python benchmarks/lm_head_decoding.py [--chunk 1536] [--sample 256]

Measured in one run, on the embedded model's output side (W_out columns through the
norm-folded W_U, all 30 x 1536 = 46,080 neurons, top-20 and bottom-20):
- interp's batched decoding (``decode_block``), without and with the inverted index;
- bare GEMMs of the same shapes and FLOPs, with no top-k (the roofline);
- a per-neuron loop (one matrix-vector product and two top-k per neuron) on a random
  sample of neurons, extrapolated to all of them;
- answering "which neurons promote ' Paris'" from the stored Result (load + look-up).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunk", type=int, default=1536)
    ap.add_argument("--sample", type=int, default=256)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--full-only", action="store_true", help="only the whole `interp decode` (the README's figure)")
    args = ap.parse_args()
    full_decode("smollm2-135m")
    if args.full_only:
        return

    import interp
    from interp.analyses.base import cached_run
    from interp.analyses.neurons.decoding import decode_block, side_basis, side_vectors
    from interp.analyses.neurons.read import neurons_for

    model = interp.load_model("smollm2-135m")
    basis = side_basis(model, "out", True).float().contiguous()
    vectors = [side_vectors(model, l, "out", True).float().contiguous() for l in range(model.n_layers)]
    n, d, v = model.n_neurons, model.d_model, model.d_vocab
    flops = 2 * n * d * v

    def bare():
        for vec in vectors:
            for s in range(0, vec.shape[0], args.chunk):
                vec[s:s + args.chunk] @ basis

    def batched(index: bool):
        prom = (torch.full((args.k, v), -torch.inf), torch.zeros((args.k, v), dtype=torch.long)) if index else None
        for layer, vec in enumerate(vectors):
            decode_block(vec, basis, args.k, args.chunk, prom, offset=layer * model.d_mlp)

    gen = torch.Generator().manual_seed(0)
    sample = torch.randperm(n, generator=gen)[: args.sample]

    def loop():
        for flat in sample.tolist():
            vec = vectors[flat // model.d_mlp][flat % model.d_mlp]
            scores = vec @ basis
            scores.topk(args.k), scores.topk(args.k, largest=False)

    with torch.no_grad():
        vectors[0][:64] @ basis  # warm-up
        timings = {}
        for name, fn in [("bare GEMMs (roofline)", bare), ("interp batched decoding", lambda: batched(False)),
                         ("  + inverted index", lambda: batched(True)), ("per-neuron loop (sample)", loop)]:
            t = time.perf_counter()
            fn()
            timings[name] = time.perf_counter() - t
    roof = timings["bare GEMMs (roofline)"]
    loop_all = timings["per-neuron loop (sample)"] * n / args.sample
    print(f"output side of {n:,} neurons x {v:,} tokens, top/bottom-{args.k}, chunk {args.chunk}, "
          f"{torch.get_num_threads()} threads; {flops / 1e9:.0f} GFLOP")
    print(f"  bare GEMMs (roofline)       {roof:7.1f} s   {flops / roof / 1e9:5.1f} GFLOP/s   1.00x")
    for name in ("interp batched decoding", "  + inverted index"):
        print(f"  {name:<27} {timings[name]:7.1f} s                     {timings[name] / roof:5.2f}x roofline")
    print(f"  per-neuron loop, {args.sample} neurons {timings['per-neuron loop (sample)']:6.1f} s -> "
          f"{loop_all:.0f} s extrapolated to all   {loop_all / roof:5.1f}x roofline, "
          f"{loop_all / timings['interp batched decoding']:.1f}x slower than batched")

    decoding = cached_run("lm_head_decoding", model)  # builds it once if missing
    t = time.perf_counter()
    stored = interp.load_result(decoding.path)
    neurons_for(stored, model.token_id(" Paris"), k=10)
    print(f"  'neurons-for \" Paris\"' from the stored Result: {time.perf_counter() - t:.2f} s (load + look-up)")


def full_decode(spec: str) -> None:
    """``interp decode`` as `make run` builds it (every side, both indexes), end to end without saving."""
    import os
    import sys

    import interp

    model = interp.load_model(spec)
    t = time.perf_counter()
    interp.run("lm_head_decoding", model, save=False)
    seconds = time.perf_counter() - t
    print(f"{spec}: the full decoding (`interp decode`: output, up and gate sides, raw and specificity indexes) "
          f"{seconds:.0f} s")
    sys.path.insert(0, os.path.dirname(__file__))
    from record import save

    save(f"decode-{spec}", f"{seconds / 60:.1f} min ({spec}, whole `interp decode`)",
         {"seconds": round(seconds, 1)}, "python benchmarks/lm_head_decoding.py --full-only",
         ["benchmarks/lm_head_decoding.py", "interp/analyses/neurons/decoding.py"])


if __name__ == "__main__":
    main()
