"""Linearised mode: the edges of neuron graphs, checked against a separate brute-force loop.

The reference freezes the clean run's norm scales, attention patterns and the target's GLU gate by its own
hooks (not ``interp.tracing.linear``'s), moves one source by half its value either way and reads the target:
in the model so frozen the target is linear in the source, so the central difference is the edge, whatever
the step. Shown failing on planted defects: norm scales left free in ``linear.FROZEN`` (ln=False), and
attention patterns left free (ah=False)."""

from __future__ import annotations

import pytest
import torch

from interp.analyses.circuits.graph import GraphConfig, Targets, expand
from interp.names import hook_name
from interp.tracing.hooks import hooks, record
from interp.tracing.interventions import Write, intervene

PROMPT = "abcdefgh"


def _norms(model):
    """(module, hook_in, hook_out) of every norm the blocks and the final norm have."""
    out = []
    for layer in range(model.n_layers):
        block = model.bridge.blocks[layer]
        for norm in ("ln1", "ln2", "ln1_post", "ln2_post"):
            if norm in block._modules:
                out.append((block._modules[norm], hook_name(f"{norm}_in", layer), hook_name(f"{norm}_out", layer)))
    out.append((model.bridge.ln_final, hook_name("final_in"), hook_name("final_out")))
    return out


def _frozen_hooks(model, clean_in: dict):
    """Norm outputs rebuilt with the clean run's scale: ``out = out_clean * (x - c) / (x_clean - c)`` is what a
    norm with a frozen scale computes, written as the clean output plus the linear change."""
    fwd, seen = [], {}
    for module, h_in, h_out in _norms(model):
        orig = module.original_component
        rms = "rms" in type(orig).__name__.lower() or getattr(module, "uses_rms_norm", False)
        eps = getattr(orig, "variance_epsilon", None) or getattr(orig, "eps", 1e-5)
        w = getattr(orig, "weight", None)
        if w is not None and getattr(module, "uses_weight_offset", False):
            w = 1.0 + w
        b = getattr(orig, "bias", None)

        def keep(x, h=h_in):
            seen[h] = x

        def rebuild(y, h=h_in, rms=rms, eps=eps, w=w, b=b):
            x, x0 = seen.pop(h), clean_in[h]
            c0 = x0 if rms else x0 - x0.mean(-1, keepdim=True)
            scale = (c0.pow(2).mean(-1, keepdim=True) + eps).sqrt()
            c = x if rms else x - x.mean(-1, keepdim=True)
            out = c / scale
            out = out * w if w is not None else out
            return out + b if b is not None and not rms else out

        fwd += [(h_in, keep), (h_out, rebuild)]
    return fwd


def brute_edge(model, tokens, source, target, eps=0.5) -> float:
    """``source``: ("embed", pos) or ("neuron", layer, pos, index); ``target``: ("neuron", layer, pos, index)."""
    L = model.n_layers
    norm_in = [h for _, h, _ in _norms(model)]
    patterns = [hook_name("attn_pattern", l) for l in range(L)]
    posts = [hook_name("mlp_post", l) for l in range(L)]
    ups = [hook_name("mlp_pre_linear" if model.is_glu else "mlp_pre", l) for l in range(L)]
    pres = [hook_name("mlp_pre", l) for l in range(L)]
    with torch.no_grad(), record(model, norm_in + patterns + posts + ups + pres) as clean:
        model(tokens)
    _, tl, tp, ti = target
    act_fn = model.weights.act_fn

    def value(step: float) -> float:
        writes = [Write(p, source=clean[p]) for p in patterns]  # attention patterns frozen
        writes += [Write(posts[l], source=clean[posts[l]]) for l in range(L)  # MLPs between source and target cut
                   if (source[0] == "embed" or l > source[1]) and l < tl]
        if source[0] == "embed":
            base = clean_embed[0, source[1]]
            writes.append(Write(hook_name("resid_pre", 0), positions=source[1], add=(step * base)[None]))
        else:
            _, sl, sp, si = source
            size = step * float(clean[posts[sl]][0, sp, si])
            writes.append(Write(posts[sl], positions=sp, units=si, add=torch.tensor(size)))
        with torch.no_grad(), hooks(model, _frozen_hooks(model, clean)), intervene(model, writes), \
                record(model, [ups[tl]]) as got:
            model(tokens)
        up = got[ups[tl]][0, tp, ti].double()
        if model.is_glu:  # the target's gate frozen at its clean value
            return float(act_fn(clean[pres[tl]][0, tp, ti].double()) * up)
        pre0 = clean[pres[tl]][0, tp, ti].double()
        return float(up * act_fn(pre0) / pre0)  # the local slope, frozen

    with torch.no_grad(), record(model, [hook_name("resid_pre", 0)]) as e:
        model(tokens)
    clean_embed = e[hook_name("resid_pre", 0)]
    return (value(eps) - value(-eps)) / (2 * eps)


def _zero_biases(model):
    with torch.no_grad():
        for name, p in model.bridge.named_parameters():
            if name.endswith("bias"):
                p.zero_()


@pytest.fixture(scope="module")
def bias_free_gpt2():
    from interp.models import load_model

    m = load_model("tiny-gpt2")
    _zero_biases(m)
    return m


def _rows(model, prompt, cand, targets_rows):
    tokens = model.to_tokens(prompt)
    with torch.no_grad():
        top = int(model(tokens)[0, -1].argmax())
    targets = Targets([model.token_str(top)], [[top]], torch.ones(1), [1.0])
    return expand(model, tokens, cand, targets_rows, targets, batch_size=4)


@pytest.mark.parametrize("which", ["tiny_llama", "bias_free_gpt2"])
def test_edges_equal_the_brute_force_finite_difference(which, request):
    model = request.getfixturevalue(which)
    if model.dtype != torch.float32:
        pytest.skip("edges ~1e-4 of the target's size: a finite difference of them is below bfloat16's rounding")
    tokens = model.to_tokens(PROMPT)
    with torch.no_grad(), record(model, [hook_name("mlp_post", 0)]) as a:
        model(tokens)
    acts = a[hook_name("mlp_post", 0)][0]
    sources = [(0, p, int(acts[p].abs().argmax())) for p in (1, 4, 6)]
    cand = torch.tensor(sources)
    targets = [("neuron", 1, 6, i) for i in (3, 17, 100)]
    rows, _ = _rows(model, PROMPT, cand, targets)
    rel = 2e-3
    for r, target in enumerate(targets):
        for c, (sl, sp, si) in enumerate(sources):
            want = brute_edge(model, tokens, ("neuron", sl, sp, si), target)
            assert float(rows.cand[r][c]) == pytest.approx(want, rel=rel, abs=1e-6)
        for pos in (0, 3, 6):
            want = brute_edge(model, tokens, ("embed", pos), target)
            assert float(rows.embed[r][pos]) == pytest.approx(want, rel=rel, abs=1e-6)
        assert float(rows.embed[r][7]) == 0.0  # a later position never reaches position 6


@pytest.mark.parametrize("which", ["tiny_llama", "bias_free_gpt2", "smol"])
def test_incoming_edges_sum_to_the_activation(which, request):
    """Conservation on bias-free models: every source (candidates, embeddings, the other sums) adds up to
    the target's activation, for neurons and for the logit."""
    model = request.getfixturevalue(which)
    prompt = "The capital of France is" if which == "smol" else PROMPT
    tokens = model.to_tokens(prompt)
    L, P = model.n_layers, tokens.shape[1]
    cand = torch.tensor([[0, 1, 5], [L - 2, P - 1, 7]])
    rows_spec = [("logit", 0), ("neuron", L - 1, P - 1, 11), ("neuron", L - 1, 2, 42), ("neuron", 1, P - 1, 9)]
    rows, passes = _rows(model, prompt, cand, rows_spec)
    assert passes == 1
    rel = 2e-5 if model.dtype == torch.float32 else 2e-2  # bfloat16: 8 bits of mantissa
    for r in range(len(rows_spec)):
        total = float(rows.cand[r].double().sum() + rows.embed[r].double().sum() + rows.rest[r].double().sum())
        scale = float(rows.cand[r].abs().sum() + rows.embed[r].abs().sum() + rows.rest[r].abs().sum())
        assert total == pytest.approx(rows.value[r], abs=rel * max(scale, 1.0))
        assert abs(rows.bias[r]) <= rel * max(scale, 1.0)


def test_config_defaults_follow_circuit_tracer():
    c = GraphConfig()
    assert (c.node_threshold, c.edge_threshold) == (0.8, 0.98)
