"""Analyses: each module registers ``run(model, Config) -> Result`` under its name."""

from interp.analyses import clamping, lm_head_decoding, neuron_atlas, top_neurons  # noqa: F401
from interp.analyses.base import REGISTRY, Config, Result, get_analysis, register, run

__all__ = ["REGISTRY", "Config", "Result", "get_analysis", "register", "run"]
