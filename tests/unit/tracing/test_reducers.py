"""The streaming reducer against a brute-force pass over all the data, on both merge paths."""

from __future__ import annotations

import torch

from interp.tracing.reducers import AtlasReducer


def _brute(values: torch.Tensor, positions: torch.Tensor, k: int, largest: bool):
    """Top-k per neuron with ties broken by the smaller position: a stable sort of everything."""
    order = positions.argsort(stable=True)
    v, p = values[order].T, positions[order]  # [d, n]
    keep = v.argsort(dim=1, descending=largest, stable=True)[:, :k]
    return v.gather(1, keep), p[keep]


def test_both_merge_paths_equal_a_brute_force_pass(monkeypatch):
    torch.manual_seed(0)
    d, k, batches, tokens = 64, 5, 12, 40
    data = torch.randn(batches * tokens, d).round(decimals=1)  # rounding makes ties
    positions = torch.arange(batches * tokens)
    reducer = AtlasReducer(1, d, k)
    taken = {"dense": 0, "sparse": 0}
    for name in taken:
        original = getattr(reducer, f"_merge_{name}")
        monkeypatch.setattr(reducer, f"_merge_{name}",
                            lambda *a, name=name, original=original: (taken.__setitem__(name, taken[name] + 1),
                                                                       original(*a))[1])
    for b in range(batches):
        rows = slice(b * tokens, (b + 1) * tokens)
        reducer.update(0, data[rows], positions[rows])
    assert taken["dense"] and taken["sparse"]  # the first batches are dense, the later ones sparse
    for largest, vals, poss in ((True, reducer.top_v, reducer.top_p), (False, reducer.bot_v, reducer.bot_p)):
        want_v, want_p = _brute(data, positions, k, largest)
        assert torch.equal(vals[0], want_v) and torch.equal(poss[0], want_p)
    assert torch.equal(reducer.sum[0], data.double().sum(0))
    assert torch.equal(reducer.positive[0], (data > 0).sum(0))


def test_interleaved_shards_merge_to_the_brute_force_pass():
    """Each shard streams its own batches in order (as a Ray actor does); merge combines them exactly."""
    torch.manual_seed(1)
    d, k, tokens = 16, 4, 25
    data = torch.randn(400, d).round(decimals=0)  # many ties
    positions = torch.arange(400)
    shards = [AtlasReducer(1, d, k) for _ in range(3)]
    for b in range(400 // tokens):
        rows = slice(b * tokens, (b + 1) * tokens)
        shards[b % 3].update(0, data[rows], positions[rows])
    merged = AtlasReducer(1, d, k)
    for shard in reversed(shards):
        merged.merge(shard)
    for largest, vals, poss in ((True, merged.top_v, merged.top_p), (False, merged.bot_v, merged.bot_p)):
        want_v, want_p = _brute(data, positions, k, largest)
        assert torch.equal(vals[0], want_v) and torch.equal(poss[0], want_p)
