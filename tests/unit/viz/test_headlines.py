"""The cross-model table reads figures from Results and marks what a model lacks."""

from __future__ import annotations

import interp
from interp.analyses.facts.factual_recall import FactualConfig
from interp.analyses.facts.factual_recall import run as factual
from interp.viz.headlines import cross_model, from_store, headlines, markdown
from tests.unit.analyses.facts.test_factual_recall import FACTS


def test_headlines_come_from_the_results(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path / "runs"))
    facts = factual(tiny_llama, FactualConfig(only_correct=False, top_heads=3), facts=FACTS)
    interp.storage.save_result(facts)
    interp.run("lm_head_decoding", tiny_llama, layers=(0,), top_k=5)
    h = headlines(from_store([tmp_path / "runs"], models=("tiny-llama",))["tiny-llama"])
    m = facts.metrics
    assert h["factual: capitals right at top-1"] == f"{m['n_correct']} of {m['n_facts']}"
    assert h["factual: DLA decomposition residual (max)"] == f"{m['dla_residual_max']:.1e}"
    assert any(k.startswith("decoding: the neuron that ranks") for k in h)
    table = cross_model({"tiny-llama": [facts], "other": []})
    assert (table["other"] == "—").all() and (table["tiny-llama"] != "—").all()
    lines = markdown(table).splitlines()
    assert len(lines) == len(table) + 2 and all(line.count("|") == 4 for line in lines)
