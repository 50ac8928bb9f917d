"""Benchmark: the bigram target distribution, vectorised against the per-context loop it replaced.

    python benchmarks/bigram_subnetworks.py [--device cpu]

The mask's training target is ``P(next | current)`` for every token of a batch (``BigramTable.dist``).
On the embedded model's counts (the committed CPU-protocol run, 60k tokens), measured in one run for the
CPU protocol's batch (8 x 32) and the paper's (32 x 128): the old loop (one smoothed row built per distinct
context in Python), the vectorised scatter, the ratio, a bit-for-bit check, and one masked training step
(forward + backward through the soft mask) for scale. The paper's protocol is 15k steps of the largest one.
"""

from __future__ import annotations

import argparse
import glob
import time
import warnings

warnings.filterwarnings("ignore")


def loop_dist(table, cur):
    """The implementation before the vectorised one (kept here as the baseline)."""
    import torch

    flat = cur.flatten().cpu()
    uniq, inverse = flat.unique(return_inverse=True)
    uni = table.p_unigram()
    rows = torch.empty(len(uniq), table.d_vocab, dtype=torch.float64)
    for i, x in enumerate(uniq.tolist()):
        lo, hi = int(table.row_ptr[x]), int(table.row_ptr[x + 1])
        row = table.beta * uni.clone()
        row[table.next[lo:hi]] += table.counts[lo:hi].double()
        rows[i] = row / (table.context[x].double() + table.beta)
    return rows[inverse].float().view(*cur.shape, table.d_vocab).to(cur.device)


def best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch

    import interp
    from interp.analyses.subnetworks.bigram_subnetworks import soft_ce
    from interp.analyses.subnetworks.read import stored_table
    from interp.tracing.masks import masked

    run = sorted(glob.glob("data/results/bigram_subnetworks/*-smollm2-135m-*"))[-1]
    table = stored_table(interp.load_result(run))
    model = interp.load_model("smollm2-135m", device=args.device)
    p = table.unigram.double() / table.unigram.sum()
    tokens = torch.multinomial(p, 32 * 128, replacement=True, generator=torch.Generator().manual_seed(0))
    tokens = tokens.view(32, 128).to(args.device)
    print(f"bigram target on {args.device} ({run.rsplit('/', 1)[-1]}: {table.n_tokens:,} tokens counted)")
    for B, T in ((8, 32), (32, 128)):
        batch = tokens[:B, :T]
        old, new = best(lambda b=batch: loop_dist(table, b), 2), best(lambda b=batch: table.dist(b))
        same = torch.equal(loop_dist(table, batch), table.dist(batch))
        with masked(model, "all") as masks:
            masks.set("soft", T=1.0)

            def step(b=batch):
                with torch.enable_grad():
                    soft_ce(model(b), table.dist(b)).backward()

            one = best(step, 2)
        print(f"  {B:>2} x {T:<3}: loop {old:.3f} s, vectorised {new:.3f} s ({old / new:.1f}x), identical: {same}; "
              f"one masked training step with it {one:.2f} s")


if __name__ == "__main__":
    main()
