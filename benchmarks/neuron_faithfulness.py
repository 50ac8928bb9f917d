"""Benchmark: the neuron-faithfulness sweep's activation patching, batched rows against one forward pass per row.

    python benchmarks/neuron_faithfulness.py [--model smollm2-135m] [--rows 128] [--layer 15]

On ``--rows`` (pair, position, neuron) rows of one layer, sampled as the sweep samples them (8 IOI pairs), measured in
one run: the sweep's way (``_patch_item``: every row patched alone inside one batched forward pass) and the
baseline (one forward pass of one prompt per row, the same write), with the two outputs compared.
"""

from __future__ import annotations

import argparse
import time
import warnings

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--layer", type=int, default=15)
    args = ap.parse_args()

    import torch

    import interp
    from interp.analyses.patching.engine import (
        PatchingConfig,
        _runs,
        baseline,
        gradient_scores,
        load_pairs_for,
        prepare,
    )
    from interp.analyses.patching.neuron_faithfulness import _patch_item, position_classes, sample

    model = interp.load_model(args.model)
    config = PatchingConfig(n=8, components=("neurons",), method="attribution")
    batch = prepare(model, load_pairs_for(model, config))
    b = baseline(model, config, batch, [args.layer])
    atp = gradient_scores(model, config, batch, [args.layer], b.metric, b.source_acts, every_position=True)
    rows = sample({args.layer: atp[("neurons", args.layer)]}, position_classes(batch), 16, 8, 0)
    rows = rows.sample(min(args.rows, len(rows)), random_state=0).reset_index(drop=True)
    base, _ = _runs(config, batch)
    fn_args = (rows, batch, base, b.source_acts, b.metric)
    _patch_item(model, (args.layer, 0, 4), *fn_args)  # warm-up
    started = time.perf_counter()
    batched = _patch_item(model, (args.layer, 0, len(rows)), *fn_args)
    t_batched = time.perf_counter() - started
    started = time.perf_counter()
    one = torch.cat([_patch_item(model, (args.layer, i, 1), *fn_args) for i in range(len(rows))])
    t_one = time.perf_counter() - started
    print(f"{args.model}, layer {args.layer}, {len(rows)} rows: batched {t_batched:.2f} s, one forward a row "
          f"{t_one:.2f} s: {t_one / t_batched:.1f}x; max |difference| {float((batched - one).abs().max()):.2e}")


if __name__ == "__main__":
    main()
