"""Factual recall on the embedded model: the builtin capitals, the decomposition, the mitigation."""

from __future__ import annotations

import pytest

import interp


@pytest.fixture(scope="module")
def capitals(smol):
    return interp.run("factual_recall", smol, facts="builtin:capitals", save=False)


def test_capitals_keep_enough_facts_and_decompose(capitals, smol):
    m = capitals.metrics
    assert m["n_correct"] >= 20 and m["n_decomposed"] == m["n_correct"]
    facts = capitals.table("facts")
    assert facts.loc[facts.subject == "France"].iloc[0].correct  # " Paris"
    dla = capitals.table("dla")
    sums = dla.groupby("fact").dla.sum()
    logits = facts.loc[sums.index].logit
    assert (sums - logits).abs().max() < 1e-3
    assert 0 <= m["mlp_layer"] < smol.n_layers and len(m["top_heads"]) == 5


def test_mitigation_moves_held_out_probability_the_claimed_way(smol):
    result = interp.run("factual_fix", smol, facts="builtin:capitals", corpus_tokens=512, save=False)
    m = result.metrics
    measured = "up" if m["held_out_mean_gain"] > 0 else "down"
    assert measured == m["claimed_direction"], result.notes
    assert m["held_out_facts"] == 35 and m["corpus_loss_after"] > 0
