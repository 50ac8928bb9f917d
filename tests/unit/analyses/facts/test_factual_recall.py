from __future__ import annotations

import pytest
import torch

import interp
from interp.analyses.facts.factual_recall import FactualConfig, run
from interp.datasets.prompts import Fact
from interp.errors import InterpError
from interp.metrics import head_outputs, post_scale
from interp.models import load_model
from interp.models.tiny import TINY
from interp.names import hook_name
from interp.tracing.hooks import record
from tests.tolerances import approx, close

FACTS = [Fact("The capital of Abc is", "Abc", " x", "capital"), Fact("Home of Qrs: the", "Qrs", " y", "capital"),
         Fact("Zed lives in", "Zed", "abc", "capital")]


@pytest.fixture
def result(tiny):
    return run(tiny, FactualConfig(only_correct=False, top_heads=3), facts=FACTS)


def test_dla_components_sum_to_the_logit(tiny, result):
    dla, facts = result.table("dla"), result.table("facts")
    totals = dla.groupby("fact").dla.sum()
    assert totals.values == approx(facts.logit.values, "sum")
    kinds = dla[dla.fact == 0].kind.value_counts()
    assert kinds["attn"] == kinds["mlp"] == tiny.n_layers and kinds["embed"] == kinds["bias"] == 1


def test_neuron_contributions_sum_to_the_mlp(tiny, result):
    layer = result.metrics["mlp_layer"]
    dla = result.table("dla")
    mlp = dla[(dla.kind == "mlp") & (dla.layer == layer)].sort_values("fact").dla.to_numpy()
    per_fact = result.tensors["neuron_dla"].sum(1).numpy()
    b_out = tiny.weights.b_out[layer]
    assert b_out is None or not b_out.any()  # neither tiny model has a nonzero b_out, so nothing is left over
    assert per_fact == approx(mlp, "sum")


def test_head_outputs_sum_to_attention(tiny):
    with torch.no_grad(), record(tiny, [hook_name("attn_z", 1), hook_name("attn_out", 1)]) as acts:
        tiny(tiny.to_tokens("heads add up"))
    heads = head_outputs(tiny, 1, acts[hook_name("attn_z", 1)]).sum(-2)
    b_O = tiny.weights.b_O[1]
    close(heads + (0 if b_O is None else b_O.float()), acts[hook_name("attn_out", 1)], "sum")


def test_tables_and_regression(tiny, result):
    heads = result.table("head_summary")
    assert len(heads) == tiny.n_layers * tiny.n_heads
    assert result.table("betas").shape[0] == 3 and result.table("regression").r2.between(-1e-6, 1 + 1e-6).all()
    assert set(result.table("suppression").columns) >= {"last_mlp_dla_rel", "p_without_last_mlp"}
    assert result.metrics["n_decomposed"] == 3


def test_bad_input(tiny_llama, tmp_path):
    with pytest.raises(InterpError, match="answers none"):
        run(tiny_llama, FactualConfig(), facts=FACTS)
    bad = tmp_path / "facts.jsonl"
    bad.write_text('{"prompt": "The capital of France is", "subject": "Spain", "answer": " Paris", "relation": "c"}\n')
    with pytest.raises(InterpError, match="not in the prompt"):
        interp.run("factual_recall", tiny_llama, facts=str(bad))
    with pytest.raises(InterpError, match="no facts"):
        run(tiny_llama, FactualConfig(), facts=[])


@pytest.mark.parametrize("spec", TINY)
def test_every_zoo_architecture_decomposes_exactly(spec):
    """The Result records its decomposition residual (and says when it is of the pre-softcap logit); the
    neurons sum to their MLP, and the heads to their attention output, through any post-norm."""
    model = load_model(spec)
    result = run(model, FactualConfig(only_correct=False, top_heads=3), facts=FACTS)
    m = result.metrics
    assert 0 <= m["dla_residual_max"] <= m["dla_residual_tolerance"]
    assert any(n.startswith("Decomposition check: the components sum to") for n in result.notes)
    assert ("pre-cap logit" in " ".join(result.notes)) == (model.weights.logit_softcap is not None)
    layer = m["mlp_layer"]
    dla = result.table("dla")
    mlp = dla[(dla.kind == "mlp") & (dla.layer == layer)].sort_values("fact").dla.to_numpy()
    b_out = model.weights.b_out[layer]
    if b_out is None or not b_out.any():
        assert result.tensors["neuron_dla"].sum(1).numpy() == approx(mlp, "sum")
    z_site, post_site, out_site = hook_name("attn_z", 1), hook_name("attn_raw_out", 1), hook_name("attn_out", 1)
    with torch.no_grad(), record(model, [z_site, post_site, out_site]) as acts:
        model(model.to_tokens("heads add up"))
    heads = head_outputs(model, 1, acts[z_site], post_scale(model, 1, acts[post_site], "attn")).sum(-2)
    b_O = model.weights.b_O[1]
    close(heads + (0 if b_O is None or model.weights.attn_post_norm[1] else b_O.float()), acts[out_site], "sum")
