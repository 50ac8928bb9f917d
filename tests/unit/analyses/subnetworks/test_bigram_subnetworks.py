from __future__ import annotations

from collections import Counter

import pytest
import torch

import interp
from interp.analyses.subnetworks.bigram_subnetworks import BigramConfig, pack
from interp.analyses.subnetworks.read import stored_mask, stored_table, unpack
from interp.datasets.bigrams import count_bigrams
from interp.errors import InterpError
from interp.models import load_model
from interp.tracing.masks import maskable, masked

SMALL = dict(corpus="stdlib-docs", corpus_tokens=3000, steps=4, checkpoint_every=2, random_seeds=1, seq_len=32)


def test_bigram_counts_equal_a_brute_force_count(tiny_llama):
    stream = torch.tensor(tiny_llama.encode("the cat sat on the mat; the cat ran") * 3)
    table = count_bigrams(stream, tiny_llama.d_vocab)
    brute = Counter(zip(stream[:-1].tolist(), stream[1:].tolist()))
    for (x, y), c in brute.items():
        lo, hi = int(table.row_ptr[x]), int(table.row_ptr[x + 1])
        got = dict(zip(table.next[lo:hi].tolist(), table.counts[lo:hi].tolist()))
        assert got[y] == c
    assert int(table.counts.sum()) == len(stream) - 1
    dist = table.dist(stream[:5])
    assert torch.allclose(dist.sum(-1), torch.ones(5)) and (dist > 0).all()


def test_masks_of_ones_and_zeros():
    model = load_model("tiny-llama")
    tokens = model.to_tokens("masks keep or drop")
    with torch.no_grad():
        base = model(tokens)
    names = maskable(model)
    with masked(model) as masks:
        masks.set_fixed({n: torch.ones(model.hf_params[n].shape, dtype=torch.bool) for n in names})
        with torch.no_grad():
            assert torch.equal(model(tokens), base)
        masks.set_fixed({n: torch.zeros(model.hf_params[n].shape, dtype=torch.bool) for n in names})
        for n, m in masks.masks.items():
            assert not m(model.hf_params[n]).any()  # every masked weight is zero
    with torch.no_grad():
        assert torch.equal(model(tokens), base)  # masks removed: weights restored


def test_only_masks_get_gradients():
    model = load_model("tiny-llama")
    with masked(model, "mlp") as masks:
        model(model.to_tokens("gradients")).sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in masks.parameters())
    assert all(p.grad is None for p in model.hf_params.values())
    assert all(not p.requires_grad for p in model.hf_params.values())


def test_run_is_deterministic_and_resumes(tmp_path, monkeypatch):
    model = load_model("tiny-llama")
    first = interp.run("bigram_subnetworks", model, **SMALL)
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path / "other"))
    second = interp.run("bigram_subnetworks", model, **SMALL)
    for key in first.tensors:
        assert torch.equal(first.tensors[key], second.tensors[key])
    assert first.metrics["kept_params"] == second.metrics["kept_params"]
    # the checkpoint of a finished run resumes at its last step: nothing left to do, same mask
    third = interp.run("bigram_subnetworks", model, **SMALL)
    assert torch.equal(stored_mask(third, model)[maskable(model)[0]], stored_mask(second, model)[maskable(model)[0]])
    table = stored_table(third)
    assert table.n_tokens == third.metrics["coverage"]["n_tokens"]
    assert set(third.table("scores").model) >= {"full", "subnetwork", "complement", "random subnetwork"}


def test_pack_round_trip():
    for p in (0.01, 0.5):
        keep = torch.rand(37, 41) < p
        assert torch.equal(unpack(pack(keep), (37, 41)), keep)


def test_bad_input(tiny_llama):
    with pytest.raises(InterpError, match="need at least"):
        interp.run("bigram_subnetworks", tiny_llama, corpus="stdlib-docs", corpus_tokens=500)
    with pytest.raises(InterpError, match=r"params \(--params\): .embeddings. is not one of all, mlp, attn"):
        interp.run("bigram_subnetworks", tiny_llama, **{**SMALL, "params": "embeddings"})
    with pytest.raises(InterpError, match="lam"):
        interp.run("bigram_subnetworks", tiny_llama, **{**SMALL, "lam": -1.0})
    assert BigramConfig().params == "all"
