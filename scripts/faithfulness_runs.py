"""The patching runs behind the faithfulness table (README "Faithfulness with error bars"), then the table.

For each embedded model: AtP, RelP and activation patching on the builtin IOI pairs (committed earlier) and on
the fresh-template pairs (``ioi-fresh``, 8 pairs: MLP outputs and heads, the slow activation runs cut to those
two), and at the neuron level (8 pairs): activation patching of ``hook_post`` at the last position
for three late layers (Gemma: two), on 32 (Gemma: 24) neurons drawn at random (seed 0) plus the 8 with the
largest mean |AtP| in each of those layers, against all-neuron AtP and RelP runs on the same pairs. Then ``interp faithfulness`` on each set. Stored runs
are reused (cached).

    python scripts/faithfulness_runs.py [--models smollm2-135m,gemma3-270m]
"""

from __future__ import annotations

import argparse
import random

import interp
from interp.analyses.base import cached_run
from interp.storage import load_result, newest_run

# builtin IOI: the pairs of the committed runs; fresh: 8 pairs (activation patching is the slow part: 2-8 forward
# passes a second on 2 cores); neurons: 8 pairs, late layers, random neurons plus each layer's top 8 by |AtP|.
SETS = {"smollm2-135m": {"n": 16, "fresh_n": 8, "neuron_n": 8, "layers": (16, 24, 29), "random": 32},
        "gemma3-270m": {"n": 8, "fresh_n": 8, "neuron_n": 8, "layers": (13, 17), "random": 24}}


def neuron_sample(model, n: int, layers, n_random: int) -> tuple[int, ...]:
    """Random neurons plus the top 8 by mean |AtP| in each layer (from the stored all-neuron AtP run)."""
    atp = load_result(newest_run("patching", model.weights_hash, where=lambda c: c["method"] == "attribution"
                                 and c["components"] == ["neurons"] and c["dataset"] == "ioi" and c["n"] == n))
    s = atp.table("scores")
    mean = s[s.layer.isin(layers)].groupby(["layer", "unit"]).score.mean().abs()
    top = {int(u) for layer in layers for u in mean.loc[layer].nlargest(8).index}
    rand = set(random.Random(0).sample(range(model.d_mlp), n_random))
    return tuple(sorted(top | rand))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    args = ap.parse_args()
    for spec in args.models.split(","):
        model = interp.load_model(spec)
        p = SETS[spec]
        n = p["n"]
        fresh = dict(dataset="ioi-fresh", n=p["fresh_n"], components=("mlp_out", "heads"))
        for method in ("attribution", "relp", "activation") if p["fresh_n"] else ():
            cached_run("patching", model, method=method, **fresh)
        nn = p["neuron_n"]
        for method in ("attribution", "relp"):  # every neuron of every layer (cheap), on the neuron-level pairs
            cached_run("patching", model, method=method, dataset="ioi", n=nn, components=("neurons",))
        neurons = neuron_sample(model, nn, p["layers"], p["random"])
        cached_run("patching", model, method="activation", dataset="ioi", n=nn, components=("neurons",),
                   layers=p["layers"], neurons=neurons)
        sets = [dict(dataset="ioi", n=n), dict(dataset="ioi", n=nn, components=("neurons",))]
        for cfg in sets + ([fresh] if p["fresh_n"] else []):
            r = interp.run("faithfulness", model, **cfg)
            print(spec, cfg.get("dataset"), cfg.get("components", "default"), r.path)
            print(r.table("summary").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
            print(r.table("gain").to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
