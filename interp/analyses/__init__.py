"""Analyses, one folder per technique; each module registers ``run(model, Config) -> Result``.

- ``neurons/``: top neurons (DLA), LM-head decoding, clamping and the concept experiment,
  the neuron atlas, neuron ranges;
- ``patching/``: the patching engine (activation, attribution, RelP), faithfulness,
  causal tracing;
- ``facts/``: factual-recall decomposition, the suppression fix, unlearning;
- ``subnetworks/``: bigram subnetworks.
"""

from interp.analyses.base import REGISTRY, cached_run, discover, get_analysis, register, run

discover()

__all__ = ["REGISTRY", "cached_run", "discover", "get_analysis", "register", "run"]
