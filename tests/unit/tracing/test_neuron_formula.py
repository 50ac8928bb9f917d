"""The guard against silently wrong neuron hooks (TransformerLens issues #1645, #1646):
the hook interp reads must equal the neuron formula, and the neurons' weighted
output directions must sum to the MLP output. Run on both tiny architectures here
and on the embedded model in tests/integration."""

from __future__ import annotations

import pytest
import torch

from interp.names import hook_name
from interp.tracing.hooks import record


def check_neuron_formula(model, text: str, tol: float = 1e-5) -> None:
    tokens = model.to_tokens(text)
    sites = []
    for layer in range(model.n_layers):
        sites += [hook_name("mlp_in", layer), hook_name("mlp_post", layer), hook_name("mlp_out", layer)]
    with torch.no_grad(), record(model, sites) as acts:
        model(tokens)
    for layer in range(model.n_layers):
        x = acts[hook_name("mlp_in", layer)]  # the MLP's normed input
        post = acts[hook_name("mlp_post", layer)]
        formula = model.weights.neuron_act(layer, x)
        torch.testing.assert_close(post, formula, atol=tol, rtol=tol)
        out = post @ model.weights.W_out[layer].T  # sum_n act_n * W_out[:, n]
        if model.weights.b_out[layer] is not None:
            out = out + model.weights.b_out[layer]
        torch.testing.assert_close(acts[hook_name("mlp_out", layer)], out, atol=tol, rtol=tol)


def test_hook_post_equals_formula_and_sums_to_mlp_out(tiny):
    check_neuron_formula(tiny, "The quick brown fox jumps over the lazy dog.")


def test_formula_check_can_fail(tiny_llama):
    """The check is not vacuous: a perturbed activation function breaks it."""
    weights = tiny_llama.weights
    real = weights.act_fn
    try:
        weights.act_fn = lambda x: real(x) * 1.01
        with pytest.raises(AssertionError):
            check_neuron_formula(tiny_llama, "some text")
    finally:
        weights.act_fn = real
