from __future__ import annotations

import pytest
import torch

from interp.errors import InterpError
from interp.models import load_model
from interp.names import hook_name
from interp.tracing.hooks import hooks, record
from interp.tracing.lrp import Rules, lrp_mode


def relevance_by_layer(model, text: str, rules: Rules | None):
    """(target logit, [sum of resid . grad at each layer's input and at the final norm])."""
    sites = [hook_name("resid_pre", l) for l in range(model.n_layers)] + [hook_name("final_in")]

    def leaf(x):
        return x.detach().requires_grad_(True)

    mode = lrp_mode(model, rules) if rules else hooks(model, [])
    with torch.enable_grad(), mode, hooks(model, [(sites[0], leaf)]), \
            record(model, sites, detach=False) as acts:
        logits = model(model.to_tokens(text))
        target = logits[0, -1, int(logits[0, -1].argmax())]
        grads = torch.autograd.grad(target, [acts[s] for s in sites])
    relevance = [float((acts[s].detach() * g).sum()) for s, g in zip(sites, grads)]
    return float(target.detach()), relevance, logits.detach(), grads[0]


def bias_free(spec: str):
    model = load_model(spec, dtype="float64")
    for name, p in model.hf_model.named_parameters():
        if name.endswith("bias"):
            p.data.zero_()
    return model


@pytest.mark.parametrize("spec", ["tiny-gpt2", "tiny-llama"])
def test_lrp_mode_changes_no_logits_and_restores_gradients(spec):
    model = load_model(spec)
    _, _, logits, grad_before = relevance_by_layer(model, "The cat sat", None)
    _, _, logits_lrp, grad_lrp = relevance_by_layer(model, "The cat sat", Rules(ah=True))
    _, _, logits_after, grad_after = relevance_by_layer(model, "The cat sat", None)
    assert torch.equal(logits, logits_lrp) and torch.equal(logits, logits_after)
    assert torch.equal(grad_before, grad_after)
    assert not torch.allclose(grad_before, grad_lrp, atol=1e-4)  # the rules do change the backward pass


@pytest.mark.parametrize("spec", ["tiny-gpt2", "tiny-llama"])
def test_conservation_with_all_rules(spec):
    model = bias_free(spec)
    logit, relevance, _, _ = relevance_by_layer(model, "conserve me, please", Rules(ah=True))
    assert relevance == pytest.approx([logit] * len(relevance), abs=1e-6)
    logit, plain, _, _ = relevance_by_layer(model, "conserve me, please", None)
    assert max(abs(r - logit) for r in plain[:-1]) > 1e-3  # plain gradient x input does not conserve


def test_lrp_mode_touches_only_its_model():
    a, b = load_model("tiny-llama"), load_model("tiny-llama")
    _, _, _, plain = relevance_by_layer(b, "two models", None)
    with lrp_mode(a, Rules(ah=True)):
        _, _, _, during = relevance_by_layer(b, "two models", None)
    assert torch.equal(plain, during)


def test_rules_parse():
    assert Rules.parse("default") == Rules()
    assert Rules.parse("all") == Rules(ah=True)
    assert Rules.parse("ln,ah") == Rules(ln=True, identity=False, half=False, ah=True)
    with pytest.raises(InterpError, match="unknown LRP rule"):
        Rules.parse("ln,softmax")
