"""The one intervention primitive against brute-force reference edits of recorded activations."""

from __future__ import annotations

import pytest
import torch

from interp.errors import InterpError
from interp.names import NeuronId, hook_name
from interp.tracing.hooks import hooks, record
from interp.tracing.interventions import Write, ablate, compile_writes, intervene
from tests.tolerances import close

PROMPTS = ["hello world", "abcdefghij", "the cat sat"]


def _acts(model, tokens, site, writes=()):
    with torch.no_grad(), intervene(model, writes), record(model, [site]) as acts:
        model(tokens)
    return acts[site]


def _reference(model, tokens, site, edit):
    """The activation after ``edit(act)`` applied by a hand-written hook (the independent reference)."""
    def fn(act):
        act = act.clone()
        edit(act)
        return act

    with torch.no_grad(), hooks(model, [(site, fn)]), record(model, [site]) as acts:
        model(tokens)
    return acts[site]


def test_paired_rows_and_positions_from_a_source(tiny):
    tokens = tiny.batch(PROMPTS).tokens
    site = hook_name("resid_pre", 1)
    source = torch.randn(2, tokens.shape[1], tiny.d_model)
    rows, pos, src_rows = torch.tensor([0, 2]), torch.tensor([3, -1]), torch.tensor([1, 0])
    got = _acts(tiny, tokens, site, [Write(site, rows=rows, positions=pos, source=source, source_rows=src_rows)])

    def edit(act):
        for r, p, s in zip(rows.tolist(), pos.tolist(), src_rows.tolist()):
            act[r, p] = source[s, p]

    torch.testing.assert_close(got, _reference(tiny, tokens, site, edit), rtol=0, atol=0)
    untouched = _acts(tiny, tokens, site)
    assert torch.equal(got[1], untouched[1])  # negative control: a row no write names is unchanged


def test_outer_neurons_at_positions_scale_and_add(tiny):
    tokens = tiny.batch(PROMPTS).tokens
    site = hook_name("mlp_post", 0)
    units, pos = [3, 7, 11], [0, 2]
    values = torch.tensor([1.5, -2.0, 4.0])
    noise = torch.randn(len(PROMPTS), len(pos), len(units))
    writes = [Write(site, positions=pos, units=units, value=values, outer=True),
              Write(site, units=[1, 2], scale=0.5),
              Write(site, positions=pos, units=units, add=noise, outer=True)]

    def edit(act):
        for i, u in enumerate(units):
            for p in pos:
                act[:, p, u] = values[i]
        act[:, :, [1, 2]] *= 0.5
        for j, p in enumerate(pos):
            for i, u in enumerate(units):
                act[:, p, u] += noise[:, j, i]

    close(_acts(tiny, tokens, site, writes), _reference(tiny, tokens, site, edit), "edit")


def test_writes_at_one_site_compile_into_one_hook(tiny):
    site = hook_name("mlp_post", 1)
    writes = [Write(site, units=[0], value=0.0), Write(site, units=[1], scale=2.0),
              Write(hook_name("attn_out", 0), scale=0.0)]
    assert [s for s, _ in compile_writes(writes)] == [site, hook_name("attn_out", 0)]
    point = tiny.hook_point(site)
    before = len(point.fwd_hooks)
    with intervene(tiny, writes):
        assert len(point.fwd_hooks) == before + 1
    assert len(point.fwd_hooks) == before


def test_resample_ablation_takes_the_other_inputs_values(tiny):
    a, b = tiny.to_tokens("hello world"), tiny.to_tokens("jello wirld")
    site = NeuronId(1, 0).hook
    with torch.no_grad(), record(tiny, [site]) as other:
        tiny(b)
    neurons = [NeuronId(1, 4), NeuronId(1, 9)]
    with torch.no_grad(), ablate(tiny, neurons, mode="resample", source=dict(other)), record(tiny, [site]) as acts:
        tiny(a)
    plain = _acts(tiny, a, site)
    assert torch.equal(acts[site][..., [4, 9]], other[site][..., [4, 9]])
    keep = [i for i in range(tiny.d_mlp) if i not in (4, 9)]
    assert torch.equal(acts[site][..., keep], plain[..., keep])


def test_a_write_names_exactly_one_operation():
    with pytest.raises(InterpError, match="exactly one of"):
        Write("blocks.0.hook_mlp_out", value=1.0, scale=2.0)
    with pytest.raises(InterpError, match="exactly one of"):
        Write("blocks.0.hook_mlp_out")
