"""The neuron-level faithfulness sweep (README "Faithfulness with error bars", issue 30): AtP and RelP against
activation patching for sampled single neurons at every layer and position class (subject, last, other), on the
IOI pairs and on capital facts with the subject swapped, for each embedded model (a stored run is reused). Prints
each run's per-class summary, the layers where a method's pooled Pearson falls below 0.8, and the README's table.

    python scripts/neuron_faithfulness_runs.py [--models smollm2-135m,gemma3-270m] [--datasets ioi,facts]
"""

from __future__ import annotations

import argparse

import interp
from interp.analyses.base import cached_run
from interp.analyses.patching.neuron_faithfulness import untrusted

SETTINGS = {"smollm2-135m": {"batch_rows": 128}, "gemma3-270m": {"batch_rows": 32}}  # Gemma: 262k-token logits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--datasets", default="ioi,facts")
    args = ap.parse_args()
    table = []
    for spec in args.models.split(","):
        model = interp.load_model(spec)
        for dataset in args.datasets.split(","):
            r = cached_run("neuron_faithfulness", model, dataset=dataset, n=8, **SETTINGS.get(spec, {}))
            s = r.table("summary")
            print(f"{spec} {dataset}: {r.path} ({r.metrics['n_rows']} rows, {r.metrics['seconds'] / 60:.1f} min)")
            print(s[s.layer < 0].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
            low = untrusted(s)
            for key, layers in low.items():
                print(f"  {key}: Pearson < 0.8 at layers {layers}")
            pooled = s[s.layer < 0].set_index(["method", "cls"])
            for cls in ("subject", "last", "other"):
                if ("attribution", cls) not in pooled.index:
                    continue
                cell = {m: pooled.loc[(m, cls)] for m in ("attribution", "relp")}
                table.append(f"| {spec} · {dataset} | {cls} | " + " | ".join(
                    f"{c.pearson:.3f} [{c.pearson_lo:.3f}, {c.pearson_hi:.3f}]" for c in cell.values()) + " | "
                    + " | ".join(f"{len(low[f'{m}/{cls}'])} of {model.n_layers}" for m in cell) + " |")
    print("\n".join(table))


if __name__ == "__main__":
    main()
