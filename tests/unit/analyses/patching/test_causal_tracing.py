from __future__ import annotations

import pytest
import torch

from interp.analyses.patching.causal_tracing import TraceConfig, embed_std, trace_fact
from interp.datasets.prompts import Fact, subject_positions
from interp.errors import InterpError
from interp.names import hook_name
from interp.tracing.hooks import hooks, record
from interp.tracing.interventions import patch

FACT = Fact("The home of Zed is", "Zed", " x", "r")


def answer(model):
    return model.token_id(" ", policy="first")


def test_zero_noise_changes_nothing(tiny):
    out = trace_fact(tiny, FACT, answer(tiny), TraceConfig(noise=0.0, samples=2))
    assert out["p_corrupt"] == pytest.approx(out["p_clean"], abs=1e-6)
    for grid in out["effects"].values():
        assert grid.abs().max() < 1e-5


def test_restoring_the_last_state_gives_back_the_clean_probability(tiny):
    out = trace_fact(tiny, FACT, answer(tiny), TraceConfig(noise=100.0, samples=3))  # random weights: loud noise
    gap = out["p_clean"] - out["p_corrupt"]
    assert abs(gap) > 1e-5  # the noise matters
    grid = out["effects"]["resid"]
    assert float(grid[-1, -1]) == pytest.approx(gap, rel=1e-3)
    before = subject_positions(tiny, FACT.prompt, FACT.subject)[0]
    assert grid[:, :before].abs().max() == 0  # positions before the subject never see the noise


def test_full_restoration_at_every_layer(tiny):
    tokens = tiny.to_tokens(FACT.prompt)
    subj = subject_positions(tiny, FACT.prompt, FACT.subject)
    noise = torch.randn(len(subj), tiny.d_model) * 3 * embed_std(tiny)

    def corrupt(x):
        x = x.clone()
        x[:, subj] += noise
        return x

    sites = [hook_name("resid_post", l) for l in range(tiny.n_layers)]
    with torch.no_grad(), record(tiny, sites) as clean:
        p_clean = tiny(tokens)[0, -1].softmax(-1)
    clean = dict(clean)
    for site in sites:
        with torch.no_grad(), hooks(tiny, [(hook_name("embed"), corrupt)]), patch(tiny, [site], clean):
            restored = tiny(tokens)[0, -1].softmax(-1)
        assert torch.allclose(restored, p_clean, atol=1e-6)


def test_batched_equals_one_at_a_time(tiny_llama):
    cfg = TraceConfig(noise=3.0, samples=2, kinds=("mlp", "attn"))
    batched = trace_fact(tiny_llama, FACT, answer(tiny_llama), cfg)
    single = trace_fact(tiny_llama, FACT, answer(tiny_llama), TraceConfig(**{**cfg.to_dict(), "batch_rows": 2,
                                                                             "kinds": ("mlp", "attn")}))
    for kind in ("mlp", "attn"):
        assert torch.allclose(batched["effects"][kind], single["effects"][kind], atol=1e-5)


def test_bad_input(tiny_llama):
    import interp

    with pytest.raises(InterpError, match=r"kinds \(--kinds\): .mlp_out. is not one of"):
        interp.run("causal_tracing", tiny_llama, kinds=["mlp_out"])
    with pytest.raises(InterpError, match="none of the"):
        interp.run("causal_tracing", tiny_llama)  # the random model knows no capital
    with pytest.raises(InterpError, match="not in the prompt"):
        trace_fact(tiny_llama, Fact("The home of Zed is", "Bob", " x", "r"), 0, TraceConfig())
