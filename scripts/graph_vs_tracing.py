"""Where neuron graphs and causal tracing agree: for each fact of a committed causal-tracing Result, a neuron
graph (default settings); the share of the influence of the graph's neurons at the subject's last token that
lies in the layers where tracing's MLP effect is at least 5% of its peak, and that mass's share of all the kept
neurons' influence.

    python scripts/graph_vs_tracing.py smollm2-135m gemma3-270m
"""

from __future__ import annotations

import sys
from pathlib import Path

from interp.analyses.base import run
from interp.datasets.prompts import subject_positions
from interp.models import load_model
from interp.storage import load_result

ROOT = Path(__file__).resolve().parents[1]


def main(specs: list[str]) -> None:
    for spec in specs:
        model = load_model(spec)
        traced = load_result(next((ROOT / "data" / "results" / "causal_tracing").glob(f"*{spec}*")))
        eff = traced.table("effects")
        mlp = eff[(eff.kind == "mlp") & (eff.role == "last subject")].groupby("layer").effect.mean()
        strong = set(mlp.index[mlp >= 0.05 * mlp.max()])
        mass = inside = total = 0.0
        facts = traced.table("facts")
        for f in facts.itertuples():
            nodes = run("neuron_graph", model, save=False, prompt=f.prompt, target=f.answer).table("nodes")
            pos = subject_positions(model, f.prompt, f.subject)[-1]
            at = nodes[(nodes.kind == "neuron") & (nodes.position == pos)]
            mass += at.influence.sum()
            inside += at[at.layer.isin(strong)].influence.sum()
            total += nodes[nodes.kind == "neuron"].influence.sum()
        print(f"{spec}: tracing's strong layers {sorted(strong)} (peak {int(mlp.idxmax())}); the graphs' "
              f"subject-last mass in them {inside / mass:.0%}; that mass is {mass / total:.1%} of the kept "
              f"neurons' influence ({len(facts)} facts)")


if __name__ == "__main__":
    main(sys.argv[1:] or ["smollm2-135m", "gemma3-270m"])
