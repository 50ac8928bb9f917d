"""The registry, typed configs that survive the store, and VERSION in a Result's identity."""

from __future__ import annotations

import interp
from interp.analyses.base import REGISTRY, cached_run, discover
from interp.analyses.neurons.top_neurons import TopNeuronsConfig
from interp.storage import load_result


def test_analyses_are_discovered_from_the_package():
    names = set(discover())
    assert {"top_neurons", "lm_head_decoding", "clamp", "concept", "neuron_atlas", "patching", "causal_tracing",
            "factual_recall", "factual_fix", "unlearning", "bigram_subnetworks"} <= names
    assert all(a.module.startswith("interp.analyses.") and a.module.count(".") == 3 for a in REGISTRY.values())


def test_a_stored_result_rebuilds_its_typed_config(tiny_gpt2):
    result = interp.run("top_neurons", tiny_gpt2, prompt="abc", top_k=3)
    back = load_result(result.path)
    assert isinstance(back.config, TopNeuronsConfig) and back.config == result.config
    assert back.provenance["analysis_version"] == TopNeuronsConfig.VERSION


def test_changing_version_makes_cached_run_recompute(tiny_gpt2, monkeypatch):
    first = cached_run("top_neurons", tiny_gpt2, prompt="abc")
    assert cached_run("top_neurons", tiny_gpt2, prompt="abc").path == first.path  # reused
    monkeypatch.setattr(TopNeuronsConfig, "VERSION", TopNeuronsConfig.VERSION + 1)
    second = cached_run("top_neurons", tiny_gpt2, prompt="abc")
    assert second.path != first.path and second.provenance["analysis_version"] == TopNeuronsConfig.VERSION
    assert cached_run("top_neurons", tiny_gpt2, prompt="abc").path == second.path
