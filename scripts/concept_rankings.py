"""The decoding paper's concept experiment with both neuron rankings: for each builtin concept, the
neuron picked by the raw output score and by specificity, clamped to ``--multiple`` x its max
|activation| on stdlib-docs; does P(concept) rise on the six neutral prompts? Prints a markdown table.

    python scripts/concept_rankings.py                      # SmolLM2, 10x, the notebook's four concepts
    python scripts/concept_rankings.py -m gemma3-270m
"""

from __future__ import annotations

import argparse

import interp
from interp.analyses.base import cached_run
from interp.analyses.neurons.concept import ConceptConfig, concept_experiment
from interp.analyses.neurons.read import neuron_tokens, typical_activation
from interp.storage import load_result, newest_run

CONCEPTS = (" Paris", " dog", " music", " water")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", default="smollm2-135m")
    parser.add_argument("--multiple", type=float, default=10.0)
    args = parser.parse_args()
    model = interp.load_model(args.model)
    decoding = cached_run("lm_head_decoding", model)
    atlas = newest_run("neuron_atlas", model.weights_hash)
    typical = typical_activation(load_result(atlas)) if atlas else None
    print(f"{args.model}, clamp {args.multiple:g}x max |activation| on stdlib-docs, six neutral prompts; atlas "
          f"{'`' + atlas.rsplit('/', 1)[-1] + '`' if atlas else 'none'}\n")
    print("| concept | ranking | neuron | its top promoted tokens | P before | P after | prompts raised |")
    print("|---|---|---|---|---|---|---|")
    for concept in CONCEPTS:
        for ranking in ("raw", "specificity"):
            config = ConceptConfig(concept=concept, multiple=args.multiple, generate=0, ranking=ranking)
            x = concept_experiment(model, decoding, config, typical=typical).metrics
            layer, index = map(int, x["neuron"].split("."))
            rows = neuron_tokens(decoding, layer, index)
            side = "out-" if x["value"] < 0 else "out+"
            tokens = rows[rows.side == side].sort_values("rank").token.head(5).astype(str).tolist()
            shown = ", ".join(map(repr, tokens)).replace("|", "\\|")  # a pipe would end the table cell
            print(f"| {concept!r} | {ranking} | {x['neuron']} ({side}) | {shown} | "
                  f"{x['mean_p_before']:.2e} | {x['mean_p_after']:.2e} | {x['frac_prompts_raised']:.0%} |", flush=True)


if __name__ == "__main__":
    main()
