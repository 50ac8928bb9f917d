"""First-token artefacts in stored atlases: for each atlas, how many neurons have all of their top ``--k``
examples at a window's first position (no left context), per layer and in all, and where one neuron's top
examples sit. The README's "Contexts with context" figures come from this script.

    python scripts/first_token_artefacts.py RUN [RUN ...] [--neuron 29.236] [--layer 29]
"""

from __future__ import annotations

import argparse

import interp
from interp.storage import resolve_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="atlas run ids or directories (`interp runs -a neuron_atlas`)")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--neuron", default="29.236")
    parser.add_argument("--layer", type=int, default=29)
    args = parser.parse_args()
    layer, index = (int(x) for x in args.neuron.split("."))
    for ref in args.runs:
        atlas = interp.load_result(resolve_run(ref, "neuron_atlas"))
        ex = atlas.table("examples")
        top = ex[(ex.which == "top") & (ex["rank"] < args.k) & (ex.window >= 0)]
        at_first = top.groupby(["layer", "neuron"]).pos.agg(lambda p: bool((p == 0).all()))
        here = at_first.loc[args.layer]
        mine = top[(top.layer == layer) & (top.neuron == index)].sort_values("rank")
        stats = atlas.table("neurons")
        peak = float(stats[(stats.layer == layer) & (stats.neuron == index)]["max"].iloc[0])
        version = atlas.provenance.get("analysis_version")
        print(f"{atlas.run_id} (atlas version {version}, {atlas.metrics['tokens']:,} tokens): layer {args.layer}: "
              f"{int(here.sum())} of {len(here)} neurons ({here.mean():.1%}) with all top {args.k} at position 0; "
              f"all layers: {int(at_first.sum())} of {len(at_first)}; {args.neuron}: top {args.k} at positions "
              f"{mine.pos.tolist()}, max {peak:.2f}")


if __name__ == "__main__":
    main()
