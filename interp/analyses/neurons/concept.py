"""The decoding paper's concept experiment ("Decoding specialised feature neurons in LLMs with the final
projection layer", 2025): take the top decoded neuron for a concept token (on a side, by a ranking), clamp it
to a multiple of its largest activation magnitude on a corpus, and measure P(concept) and greedy generations
on neutral prompts."""

from __future__ import annotations

from dataclasses import dataclass

from interp.analyses.base import cached_run, register
from interp.analyses.neurons.clamping import NEUTRAL_PROMPTS, clamp_effect, clamp_metrics
from interp.analyses.neurons.read import neurons_for, typical_activation
from interp.analyses.neurons.stats import neuron_stats
from interp.names import NeuronId
from interp.result import Config, Result, option, provenance
from interp.storage import load_result, newest_run


@dataclass(frozen=True)
class ConceptConfig(Config):
    concept: str = option(" dog", "the concept token, e.g. ' dog'", flags=("--token", "-t"))
    multiple: float = option(2.0, "clamp to this multiple of the neuron's max |activation| on the corpus", above=0)
    side: str = option("out", "pick the neuron by output-side (out) or up-projection (up) decoding",
                       choices=("out", "up", "gate"))
    ranking: str = option("raw", "raw (the paper's: the largest decoded score) or specificity (the token's "
                          "standing in the neuron's own decoding, on its typical side; output side only)",
                          choices=("raw", "specificity"))
    generate: int = option(20, "greedy tokens to generate, clamp held", flags=("-g",))
    prompts: tuple[str, ...] = option(NEUTRAL_PROMPTS, "neutral prompts (repeatable)", flags=("--prompt", "-p"),
                                      split=False)
    corpus: str = option("stdlib-docs", "corpus whose activation range scales the clamp")


def concept_experiment(model, decoding: Result, config: ConceptConfig, typical=None) -> Result:
    """The paper's experiment: the top decoded neuron (on ``side``, by ``ranking``) for ``concept``,
    clamped to ``multiple`` x its largest activation magnitude on ``corpus``, with the sign that
    promotes the concept (negative for a neuron found on its ``out-`` side). ``typical``: the atlas's
    ``typical_activation`` for the specificity ranking (without it both signs are considered)."""
    token_id = model.token_id(config.concept)
    top = neurons_for(decoding, token_id, k=1, side=config.side, by=config.ranking, typical=typical).iloc[0]
    neuron = NeuronId(int(top.layer), int(top.neuron))
    stats = neuron_stats(model, config.corpus)
    typical_max = max(abs(float(stats["max"][neuron.layer, neuron.index])),
                      abs(float(stats["min"][neuron.layer, neuron.index])))
    sign = -1.0 if str(top.get("side", "out+")) == "out-" else 1.0
    value = sign * config.multiple * typical_max
    probs, gens = clamp_effect(model, [neuron], value, config.prompts, [config.concept], config.generate)
    metrics = clamp_metrics(probs, gens, [config.concept])
    metrics.update({"concept": config.concept, "side": config.side, "ranking": config.ranking, "neuron": str(neuron),
                    "decoded_score": float(top.score), "typical_max": typical_max, "multiple": config.multiple,
                    "value": value, "typical_max_corpus": f"{config.corpus}, {int(stats['count'][0])} tokens"})
    return Result(analysis="concept", config=config, provenance=provenance(model, config),
                  tables={"probs": probs, "generations": gens}, metrics=metrics)


@register("concept", ConceptConfig)
def run_concept(model, config: ConceptConfig) -> Result:
    """The decoding paper's experiment: clamp the top decoded neuron for a concept."""
    model.token_id(config.concept)  # a cheap check before the (cached, but minutes-long the first time) decoding
    atlas = newest_run("neuron_atlas", model.weights_hash) if config.ranking == "specificity" else None
    typical = typical_activation(load_result(atlas)) if atlas else None
    return concept_experiment(model, cached_run("lm_head_decoding", model), config, typical=typical)
