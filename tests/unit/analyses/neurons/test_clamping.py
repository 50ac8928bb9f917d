from __future__ import annotations

import pytest
import torch

import interp
from interp.analyses.neurons.clamping import clamp_effect, next_token_table
from interp.errors import InterpError
from interp.models import load_model
from interp.tracing.interventions import clamp
from tests.tolerances import low_precision


@pytest.fixture
def planted():
    """tiny-llama with neuron 1.7's output direction set to token 'Z''s unembedding."""
    model = load_model("tiny-llama")
    token = model.token_id("Z")
    with torch.no_grad():
        model.weights.W_out[1][:, 7] = model.weights.W_U[:, token] / model.weights.W_U[:, token].norm()
    return model, token


def test_larger_clamps_raise_the_token_monotonically(planted):
    model, token = planted
    tokens = model.to_tokens("hello")
    logps = []
    for value in [-4.0, -1.0, 0.0, 1.0, 4.0, 16.0]:
        with torch.no_grad(), clamp(model, [(1, 7)], value):
            logps.append(float(model(tokens)[0, -1].log_softmax(-1)[token]))
    # strictly rising; in bfloat16 a log-prob near saturation can repeat (steps of 2^-5 at |x| ~ 4)
    rises = [b > a or (low_precision() and b == a) for a, b in zip(logps, logps[1:])]
    assert all(rises) and logps[-1] > logps[0], logps


def test_clamp_holds_during_generation_and_reports(planted):
    model, token = planted
    probs, gens = clamp_effect(model, ["1.7"], 40.0, ["ab", "cd"], ["Z"], n_generate=5)
    assert (probs.p_after > probs.p_before).all() and len(gens) == 2
    assert all(set(g) == {"Z"} for g in gens.after)  # every generated token is the planted one
    table = next_token_table(model, "ab", ["1.7"], 40.0, k=3)
    assert table.iloc[table.p_after.argmax()].token == "Z"


def test_clamp_analysis_result(planted):
    model, _ = planted
    result = interp.run("clamp", model, neurons=("1.7",), value=10.0, prompts=("ab",), targets=("Z",), generate=3)
    assert result.metrics["frac_prompts_raised"] == 1.0
    assert interp.load_result(result.path).table("generations").after.iloc[0] == "ZZZ"


def test_bad_clamp_input(tiny_llama):
    with pytest.raises(InterpError, match="empty"):
        clamp_effect(tiny_llama, ["1.7"], 1.0, [" "], ["a"])
    with pytest.raises(InterpError, match="out of range"):
        clamp_effect(tiny_llama, ["5.7"], 1.0, ["a"], ["a"])
    with pytest.raises(InterpError, match="finite"):
        clamp_effect(tiny_llama, ["1.7"], float("inf"), ["a"], ["a"])
