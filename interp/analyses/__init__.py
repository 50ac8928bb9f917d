"""Analyses: each module registers ``run(model, Config) -> Result`` under its name."""

from interp.analyses import (  # noqa: F401
    anti_overconfidence,
    bigram_subnetworks,
    causal_tracing,
    clamping,
    factual_recall,
    lm_head_decoding,
    neuron_atlas,
    patching,
    top_neurons,
    unlearning,
)
from interp.analyses.base import REGISTRY, Config, Result, get_analysis, register, run

__all__ = ["REGISTRY", "Config", "Result", "get_analysis", "register", "run"]
