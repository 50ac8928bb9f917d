"""Benchmark: the preflight's time estimate against the real run, on the embedded model.

    python benchmarks/preflight.py [--model smollm2-135m] [--device cpu]

For each job (an atlas of 40 batches, activation patching of 4 pairs over MLP outputs and
heads, RelP of 16 pairs, the full decoding): the calibrated estimate (what `--dry-run`
prints), then the job itself, unsaved, and the ratio estimate / real. The real run's time
includes its own preflight (two units: a warm-up and the timed one) for jobs of 40 units
or more.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")

JOBS = [
    ("atlas --corpus stdlib-docs --tokens 40960", "neuron_atlas",
     dict(corpus="stdlib-docs", n_tokens=40960, checkpoint_every=0)),
    ("patch --method activation --n 4 --components mlp_out,heads", "patching",
     dict(n=4, method="activation", components=("mlp_out", "heads"), checkpoint_every=0)),
    ("patch --method relp --n 16", "patching", dict(n=16, method="relp")),
    ("decode", "lm_head_decoding", dict()),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    import os

    os.environ.setdefault("INTERP_RUNS", tempfile.mkdtemp(prefix="preflight-"))
    import interp
    from interp.analyses.base import estimate

    model = interp.load_model(args.model, device=args.device)
    rows = []
    for label, name, options in JOBS:
        t = time.perf_counter()
        est = estimate(name, model, **options)
        dry = time.perf_counter() - t
        print("\n".join(est.lines()), flush=True)
        t = time.perf_counter()
        interp.run(name, model, save=False, **options)
        real = time.perf_counter() - t
        passes = f"{est.forwards} forward" + (f", {est.backwards} backward" if est.backwards else "")
        rows.append(f"| `{label}` | {passes} | {est.seconds:.1f} s | {real:.1f} s | {est.seconds / real:.2f} | "
                    f"{dry:.1f} s |")
    print(f"\n{args.model} on {model.device}\n| job | passes | estimate | real | estimate / real | the dry run took |\n"
          "|---|---|---|---|---|---|\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
