"""The architecture zoo: one invariant suite over every tiny architecture (``interp.models.tiny``).

Each invariant is checked against something the bridge did not compute: an un-bridged HF copy
built from the same config and seed, the neuron formula from the weights, the norms' own
modules, or a brute-force sum; and each has a negative control that shows it can fail."""

from __future__ import annotations

import pytest
import torch

from interp.metrics import direct_logit, final_scale, neuron_dla, post_scale, precap_logit
from interp.models import load_model
from interp.models.tiny import TINY, build_tiny
from interp.names import hook_name
from interp.tracing.hooks import record

TEXT = "The quick brown fox, 42 times."
SOFTCAPPED = {"tiny-gemma2"}  # final-logit softcap: components sum to the logit before the cap


@pytest.fixture(scope="module", params=TINY)
def zoo(request):
    return load_model(request.param)


def _acts(model, sites, text=TEXT):
    tokens = model.to_tokens(text)
    with torch.no_grad(), record(model, sites) as acts:
        logits = model(tokens)
    return tokens, dict(acts), logits


def check_unbridged_parity(model, reference, text: str = TEXT, tol: float = 1e-5) -> float:
    """Bridge logits equal ``reference``'s, an HF copy that was never bridged (the bridge rewires its own
    HF model in place, so ``model.hf_model`` is no reference); then a perturbed reference must differ."""
    tokens = model.to_tokens(text)
    with torch.no_grad():
        ours, theirs = model(tokens), reference(tokens).logits
        diff = float((ours - theirs).abs().max())
        assert diff <= tol, f"bridge logits differ from the un-bridged copy by {diff}"
        mlp = next(p for n, p in reference.named_parameters() if "mlp" in n or "fc1" in n)
        mlp.add_(0.05 * torch.randn(mlp.shape, generator=torch.Generator().manual_seed(0)).to(mlp.device))  # control
        assert (reference(tokens).logits - ours).abs().max() > 100 * max(tol, 1e-6)
    return diff


def test_bridge_logits_equal_an_unbridged_copy(zoo):
    check_unbridged_parity(zoo, build_tiny(zoo.spec)[0].to(zoo.device))  # the reference on the test device


def test_hook_post_is_the_neuron_formula_and_sums_to_mlp_out(zoo):
    check_formula(zoo)


def check_formula(zoo, text: str = TEXT, tol: float = 1e-4):
    L = zoo.n_layers
    sites = [hook_name(s, l) for l in range(L) for s in ("mlp_in", "mlp_post", "mlp_raw_out", "mlp_out")]
    _, acts, _ = _acts(zoo, sites, text)
    w = zoo.weights
    for layer in range(L):
        post = acts[hook_name("mlp_post", layer)]
        torch.testing.assert_close(post, w.neuron_act(layer, acts[hook_name("mlp_in", layer)]), atol=tol, rtol=tol)
        raw = post @ w.W_out[layer].T + (0 if w.b_out[layer] is None else w.b_out[layer])
        torch.testing.assert_close(acts[hook_name("mlp_raw_out", layer)], raw, atol=tol, rtol=tol)
        # what joins the residual: the raw output through the post-norm (frozen scale), where there is one
        written = post @ w.W_write(layer).T * post_scale(zoo, layer, raw)
        if w.mlp_post_norm[layer] is None:
            written = written + (0 if w.b_out[layer] is None else w.b_out[layer])
        torch.testing.assert_close(acts[hook_name("mlp_out", layer)], written, atol=tol, rtol=tol)


def test_formula_check_can_fail(zoo):
    """The invariant check itself (``check_formula``) fails on a planted defect: the formula's activation
    function off by 1% and a constant."""
    w = zoo.weights
    w.act_fn, act = (lambda t: torch.nn.functional.relu(t) * 1.01 + 0.01), w.act_fn
    try:
        with pytest.raises(AssertionError):
            check_formula(zoo)
    finally:
        w.act_fn = act
    check_formula(zoo)  # and passes again once the defect is gone


def _components(model, acts, i: int):
    """The residual stream at position ``i`` as its parts: embeddings, each attention and MLP output."""
    parts = [acts[hook_name("embed")][0, i]]
    if hook_name("pos_embed") in acts:
        parts.append(acts[hook_name("pos_embed")][0, i])
    for layer in range(model.n_layers):
        parts += [acts[hook_name("attn_out", layer)][0, i], acts[hook_name("mlp_out", layer)][0, i]]
    return parts


def test_dla_sums_to_the_logit(zoo):
    check_dla_sums(zoo)


def check_dla_sums(zoo, text: str = TEXT, target: int = 7, tol: float = 1e-4):
    from interp.analyses.facts.factual_recall import bias_logit

    sites = [hook_name("embed"), hook_name("final_in")] + [hook_name(s, l) for l in range(zoo.n_layers)
                                                          for s in ("attn_out", "mlp_out", "resid_post")]
    if hook_name("pos_embed") in zoo.hook_dict and zoo.cfg.positional_embedding_type == "standard":
        sites.append(hook_name("pos_embed"))
    tokens, acts, logits = _acts(zoo, sites, text)
    i = tokens.shape[1] - 1
    parts = _components(zoo, acts, i)
    torch.testing.assert_close(sum(parts), acts[hook_name("final_in")][0, i], atol=tol, rtol=tol)
    scale = final_scale(zoo, acts[hook_name("final_in")][0, i])
    dirs = zoo.weights.W_U_normed()[:, [target]]
    total = sum(float(direct_logit(zoo, v, scale, dirs)[0]) for v in parts) + bias_logit(zoo, target)
    logit = float(logits[0, i, target])
    assert total == pytest.approx(float(precap_logit(zoo, logits[0, i, target])), abs=tol)
    if zoo.spec in SOFTCAPPED:  # the capped logit itself is not a sum of components: cap * tanh(sum / cap)
        assert float(precap_logit(zoo, torch.tensor(25.0))) > 35
    else:
        assert total == pytest.approx(logit, abs=tol)
        assert total - float(direct_logit(zoo, parts[-1], scale, dirs)[0]) != pytest.approx(logit, abs=tol)


def test_neurons_sum_to_their_mlps_dla(zoo):
    layer = zoo.n_layers - 1
    sites = [hook_name("final_in"), hook_name("mlp_post", layer), hook_name("mlp_raw_out", layer),
             hook_name("mlp_out", layer)]
    tokens, acts, _ = _acts(zoo, sites)
    i = tokens.shape[1] - 1
    scale = final_scale(zoo, acts[hook_name("final_in")][0, i])
    dirs = zoo.weights.W_U_normed()[:, [3, 9]]
    post = post_scale(zoo, layer, acts[hook_name("mlp_raw_out", layer)][0, i])
    per_neuron = neuron_dla(zoo, layer, acts[hook_name("mlp_post", layer)][0, i], scale, dirs, post)
    whole = direct_logit(zoo, acts[hook_name("mlp_out", layer)][0, i], scale, dirs)
    b_out = zoo.weights.b_out[layer]
    bias = direct_logit(zoo, b_out, scale, dirs) if b_out is not None and zoo.weights.mlp_post_norm[layer] is None \
        else 0
    torch.testing.assert_close(per_neuron.sum(0) + bias, whole, atol=1e-4, rtol=1e-4)


def test_folded_decoding_equals_the_explicit_norms(zoo):
    check_folded_decoding(zoo, zoo.n_layers - 1, 5)


def check_folded_decoding(zoo, layer: int, n: int):
    """A neuron's decoded logits, folded (``W_write . (g * W_U)``), equal running its output column
    through the model's own norm modules and ``lm_head``, up to the norms' positive scale."""
    from interp.analyses.neurons.decoding import side_basis, side_vectors

    folded = side_vectors(zoo, layer, "out", True)[n] @ side_basis(zoo, "out", True)
    v = zoo.weights.W_out[layer][:, n]
    block = zoo.bridge.blocks[layer]
    with torch.no_grad():
        if "ln2_post" in block._modules:
            v = block.ln2_post.original_component(v[None])[0]
        final = zoo.bridge.ln_final.original_component
        lm_head = zoo.bridge.unembed.original_component
        explicit = lm_head(final(v[None]))[0] - lm_head(final(torch.zeros_like(v)[None]))[0]
    assert _proportional(explicit, folded) < 1e-4
    unfolded = side_vectors(zoo, layer, "out", False)[n] @ side_basis(zoo, "out", False)  # negative control
    assert _proportional(explicit, unfolded) > 1e-3


def _proportional(a, b) -> float:
    """How far ``a`` is from ``c * b`` for the best ``c > 0`` (relative residual; 1 if ``c <= 0``)."""
    c = float(a @ b / (b @ b))
    return 1.0 if c <= 0 else float((a - c * b).norm() / a.norm())


LRP_EXCEPTIONS = {
    "tiny-gemma2": "the final-logit softcap (tanh) has no LRP rule",
    "tiny-opt": "the bridge's OPT attention computes its pattern outside hook_pattern: the AH rule cannot detach it",
}


def test_lrp_conserves_where_the_rules_apply(zoo):
    from interp.tracing.lrp import Rules
    from tests.unit.tracing.test_lrp import relevance_by_layer

    if zoo.spec in LRP_EXCEPTIONS:
        pytest.skip(LRP_EXCEPTIONS[zoo.spec])
    model = load_model(zoo.spec, dtype="float64")
    for name, p in model.hf_model.named_parameters():
        if name.endswith("bias"):
            p.data.zero_()
    logit, relevance, _, _ = relevance_by_layer(model, "conserve me, please", Rules(ah=True))
    assert relevance == pytest.approx([logit] * len(relevance), abs=1e-6)
    _, plain, _, _ = relevance_by_layer(model, "conserve me, please", None)
    assert max(abs(r - logit) for r in plain[:-1]) > 1e-3


def test_masks_and_trainable_parameters_find_attention_and_mlp(zoo):
    from interp.analyses.facts.unlearn_methods import trainable_names
    from interp.tracing.masks import maskable

    for scope in ("attn", "mlp"):
        names = maskable(zoo, scope)
        layers = {int(s) for name in names for s in name.split(".") if s.isdigit()}
        assert layers == set(range(zoo.n_layers)), (scope, names)
    mlp = maskable(zoo, "mlp")
    assert not set(mlp) & set(maskable(zoo, "attn"))
    assert set(trainable_names(zoo, [0])) and all(".0." in n for n in trainable_names(zoo, [0]))
    assert set(trainable_names(zoo, [0])) <= set(trainable_names(zoo, None))


def test_an_architecture_without_a_bridge_is_named():
    from transformers import CTRLConfig, CTRLLMHeadModel

    from interp.errors import InterpError
    from interp.models.model import Model
    from interp.models.tiny import byte_tokenizer

    config = CTRLConfig(vocab_size=259, n_embd=32, n_layer=1, n_head=2, dff=64, n_positions=64)
    with pytest.raises(InterpError, match=r"cannot bridge 'odd' \(architecture CTRLLMHeadModel\)") as err:
        Model.wrap("odd", "odd", CTRLLMHeadModel(config), byte_tokenizer())
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_tracing_noise_matches_the_embeddings_the_model_uses(zoo):
    """Causal tracing's noise scale is the std of the embeddings as they enter the residual stream
    (Gemma scales them by sqrt(d_model) in its forward), not of the raw matrix."""
    from interp.analyses.patching.causal_tracing import embed_std

    _, acts, _ = _acts(zoo, [hook_name("embed")], "Some text to embed, with many different bytes: 0123456789.")
    used = float(acts[hook_name("embed")].float().std())
    assert embed_std(zoo) == pytest.approx(used, rel=0.35)
