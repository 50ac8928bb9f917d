from __future__ import annotations

import math

import pytest
import torch

from interp.errors import InterpError
from interp.names import NeuronId, hook_name
from interp.tracing.hooks import hooks, record
from interp.tracing.interventions import ablate, clamp, patch


def _n_hooks(model) -> int:
    points = {id(p): p for p in model.hook_dict.values()}  # aliases share a point
    return sum(len(p.fwd_hooks) for p in points.values())


def test_record_captures_only_named_sites(tiny_llama):
    tokens = tiny_llama.to_tokens("abc")
    sites = [hook_name("mlp_post", 1), hook_name("resid_post", 0)]
    with torch.no_grad(), record(tiny_llama, sites) as acts:
        tiny_llama(tokens)
    assert set(acts) == set(sites)
    assert acts[sites[0]].shape == (1, 3, tiny_llama.d_mlp)
    assert _n_hooks(tiny_llama) == 0


def test_hooks_are_removed_when_the_body_raises(tiny_gpt2):
    with pytest.raises(RuntimeError, match="boom"):
        with record(tiny_gpt2, [hook_name("mlp_post", 0)]):
            assert _n_hooks(tiny_gpt2) == 1
            raise RuntimeError("boom")
    assert _n_hooks(tiny_gpt2) == 0


def test_clamp_sets_value_at_positions_and_changes_output(tiny):
    tokens = tiny.to_tokens("hello there")
    site = hook_name("mlp_post", 0)
    with torch.no_grad():
        base = tiny(tokens)
        with clamp(tiny, [NeuronId(0, 5)], 3.0, positions=[-1]), record(tiny, [site]) as acts:
            clamped = tiny(tokens)
    assert float(acts[site][0, -1, 5]) == 3.0
    assert float(acts[site][0, 0, 5]) != 3.0  # other positions untouched
    torch.testing.assert_close(clamped[0, :-1], base[0, :-1])  # causal: earlier logits unchanged
    assert not torch.allclose(clamped[0, -1], base[0, -1])
    with torch.no_grad():
        torch.testing.assert_close(tiny(tokens), base)  # hook gone afterwards


def test_zero_and_mean_ablation(tiny_llama):
    tokens = tiny_llama.to_tokens("abcdef")
    site = hook_name("mlp_post", 1)
    means = torch.full((tiny_llama.n_layers, tiny_llama.d_mlp), 0.25)
    with torch.no_grad():
        with ablate(tiny_llama, [(1, 2), (1, 7)]), record(tiny_llama, [site]) as zero:
            tiny_llama(tokens)
        with ablate(tiny_llama, ["1.2"], mode="mean", means=means), record(tiny_llama, [site]) as mean:
            tiny_llama(tokens)
    assert torch.all(zero[site][..., [2, 7]] == 0)
    assert torch.all(mean[site][..., 2] == 0.25)
    with pytest.raises(InterpError, match="needs means"):
        with ablate(tiny_llama, [(1, 2)], mode="mean"):
            pass


def test_patch_clean_into_clean_changes_nothing_and_full_resid_patch_recovers(tiny_gpt2):
    clean, corrupt = tiny_gpt2.to_tokens("cat sat"), tiny_gpt2.to_tokens("dog ran")
    last = hook_name("resid_post", tiny_gpt2.n_layers - 1)
    sites = [hook_name("mlp_out", 0), last]
    with torch.no_grad():
        with record(tiny_gpt2, sites) as cache:
            clean_logits = tiny_gpt2(clean)
        with patch(tiny_gpt2, [sites[0]], cache):
            torch.testing.assert_close(tiny_gpt2(clean), clean_logits, rtol=0, atol=0)
        with patch(tiny_gpt2, [last], cache):
            torch.testing.assert_close(tiny_gpt2(corrupt), clean_logits, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad", [NeuronId(2, 0), NeuronId(0, 10_000), "x.y"])
def test_out_of_range_neurons_are_named(tiny_llama, bad):
    with pytest.raises(InterpError, match="out of range|cannot read neuron"):
        with clamp(tiny_llama, [bad], 1.0):
            pass


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_clamp_refuses_non_finite_values(tiny_llama, value):
    with pytest.raises(InterpError, match="finite"):
        with clamp(tiny_llama, [(0, 0)], value):
            pass


def test_hooks_primitive_unknown_site(tiny_llama):
    with pytest.raises(InterpError, match="no hook point"):
        with hooks(tiny_llama, [("blocks.0.nothing", lambda a: None)]):
            pass


def test_a_shared_model_serialises_hooked_regions_across_threads(tiny_llama):
    """The dashboard shares one model between sessions: a clamp in one thread must
    never leak into another thread's plain forward."""
    import threading

    tokens = tiny_llama.to_tokens("hello there")
    with torch.no_grad():
        baseline = tiny_llama(tokens)
    wrong, stop = [], threading.Event()

    def clamper():
        while not stop.is_set():
            with torch.no_grad(), clamp(tiny_llama, [(1, 3)], 50.0):
                tiny_llama(tokens)

    thread = threading.Thread(target=clamper)
    thread.start()
    try:
        with torch.no_grad():
            for _ in range(200):
                if not torch.equal(tiny_llama(tokens), baseline):
                    wrong.append(1)
    finally:
        stop.set()
        thread.join()
    assert not wrong, f"{len(wrong)} of 200 plain forwards saw another thread's clamp"
