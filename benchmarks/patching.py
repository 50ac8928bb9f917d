"""Benchmark: RelP and attribution patching against activation patching (speed and faithfulness).

    python benchmarks/patching.py [--n 16] [--components mlp_out] [--save data/results]

On the embedded model and ``--n`` generated IOI pairs (ABC corruption, denoising,
logit difference), measured in one run over the same components:
- wall time of activation patching (one forward pass per pair and component,
  batched), attribution patching and RelP (two forward passes and one backward each);
- the speed ratio activation / RelP;
- per component type, the Pearson and Spearman correlation of attribution patching and
  of RelP with activation patching, and their top-10 overlap.
``--save DIR`` stores the three Results under DIR (the dashboard and the notebook's
full version read them from ``data/results``).
"""

from __future__ import annotations

import argparse
import warnings

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--components", default="mlp_out")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--save", default="")
    args = ap.parse_args()

    import pandas as pd

    import interp
    from interp.analyses.patching.engine import PatchingConfig
    from interp.analyses.patching.engine import run as patching
    from interp.analyses.patching.read import compare

    model = interp.load_model(args.model)
    comps = tuple(c.strip() for c in args.components.split(","))
    results = {}
    for method in ("relp", "attribution", "activation"):
        results[method] = patching(model, PatchingConfig(method=method, n=args.n, components=comps))
        print(f"{method:<12} {results[method].metrics['seconds']:8.2f} s", flush=True)
    act, relp = results["activation"].metrics["seconds"], results["relp"].metrics["seconds"]
    print(f"\nactivation patching / RelP: {act / relp:.1f}x  (goal >= 50x; {args.n} IOI pairs, {', '.join(comps)})")
    rows = []
    for method in ("attribution", "relp"):
        cmp = compare(results["activation"], results[method])
        rows.append(cmp.assign(method=method))
    table = pd.concat(rows)[["component", "method", "pearson", "spearman", "pearson_mean", "top_k_overlap", "n"]]
    print("\ncorrelation with activation patching (pooled over pairs x layers x units):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.save:
        from interp.storage import save_result

        for result in results.values():  # the store's layout: DIR/patching/<run_id> (the name is the run id)
            print("saved", save_result(result, f"{args.save}/patching/{result.run_id}"))


if __name__ == "__main__":
    main()
