"""DLA arithmetic: components sum to the logit; neurons sum to their MLP's output."""

from __future__ import annotations

import torch

from interp.metrics import direct_logit, final_scale, kl_div, logit_diff, neuron_dla, unembed_dirs
from interp.names import hook_name
from interp.tracing.hooks import record
from tests.tolerances import close


def test_dla_of_all_components_equals_the_logit(tiny):
    tokens = tiny.to_tokens("the cat sat on")
    L = tiny.n_layers
    sites = [hook_name("resid_pre", 0), hook_name("final_in")]
    sites += [hook_name(s, l) for l in range(L) for s in ("attn_out", "mlp_out")]
    with torch.no_grad(), record(tiny, sites) as acts:
        logits = tiny(tokens)[0, -1]
    targets = torch.tensor([5, 17, 100])
    dirs = unembed_dirs(tiny, targets)
    scale = final_scale(tiny, acts[hook_name("final_in")][0, -1])
    parts = [acts[hook_name("resid_pre", 0)][0, -1]]
    parts += [acts[hook_name(s, l)][0, -1] for l in range(L) for s in ("attn_out", "mlp_out")]
    total = sum(direct_logit(tiny, p, scale, dirs) for p in parts)
    norm_bias = tiny.weights.final_norm.bias
    if norm_bias is not None:
        total = total + norm_bias @ tiny.weights.W_U[:, targets]
    close(total, logits[targets], "sum")


def test_neuron_dla_sums_to_mlp_dla(tiny):
    tokens = tiny.to_tokens("hello world")
    layer = tiny.n_layers - 1
    sites = [hook_name("mlp_post", layer), hook_name("mlp_out", layer), hook_name("final_in")]
    with torch.no_grad(), record(tiny, sites) as acts:
        tiny(tokens)
    dirs = unembed_dirs(tiny, torch.tensor([3, 42]))
    scale = final_scale(tiny, acts[hook_name("final_in")][0, -1])
    per_neuron = neuron_dla(tiny, layer, acts[hook_name("mlp_post", layer)][0, -1], scale, dirs)
    mlp = acts[hook_name("mlp_out", layer)][0, -1]
    b_out = tiny.weights.b_out[layer]
    if b_out is not None:
        mlp = mlp - b_out
    close(per_neuron.sum(0), direct_logit(tiny, mlp, scale, dirs), "sum")


def test_logit_diff_and_kl():
    logits = torch.tensor([[1.0, 3.0, 0.0]])
    assert float(logit_diff(logits, torch.tensor([1]), torch.tensor([0]))) == 2.0
    assert float(kl_div(logits, logits)) == 0.0
    assert float(kl_div(logits, torch.zeros(1, 3))) > 0


def test_lm_loss_matches_cross_entropy(tiny_llama):
    import torch

    from interp.metrics import lm_loss

    windows = torch.randint(3, tiny_llama.d_vocab, (5, 12))
    with torch.no_grad():
        logits = tiny_llama(windows)[:, :-1].float()
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())
    assert abs(lm_loss(tiny_llama, windows, batch_size=2) - float(expected)) < 1e-5
