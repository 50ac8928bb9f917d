"""The decoding paper's causal check on the embedded model.

Measured (benchmarks and notes): the top output-side neuron for " Paris" over all
layers is 29.645. Decoding layer 29 alone finds the same neuron in a few seconds."""

from __future__ import annotations

import pytest

import interp
from interp.analyses.neurons.clamping import NEUTRAL_PROMPTS
from interp.analyses.neurons.concept import ConceptConfig, concept_experiment

pytestmark = pytest.mark.embedded


def test_clamping_the_top_paris_neuron_raises_p_paris(smol):
    decoding = interp.run("lm_head_decoding", smol, layers=(29,), sides=("out",), save=False)
    result = concept_experiment(smol, decoding, ConceptConfig(concept=" Paris", multiple=2.0, generate=0))
    assert result.metrics["neuron"] == "29.645"
    # measured: mean P(" Paris") over the six neutral prompts 7.2e-5 -> 1.2e-4
    assert result.metrics["mean_p_after"] > result.metrics["mean_p_before"]
    assert len(result.table("probs")) == len(NEUTRAL_PROMPTS)
