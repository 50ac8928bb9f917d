"""The streaming reducer against a brute-force pass over all the data, on both merge paths."""

from __future__ import annotations

import pytest
import torch

from interp.tracing.reducers import AtlasReducer


def _brute(values: torch.Tensor, positions: torch.Tensor, k: int, largest: bool):
    """Top-k per neuron with ties broken by the smaller position: a stable sort of everything."""
    order = positions.argsort(stable=True)
    v, p = values[order].T, positions[order]  # [d, n]
    keep = v.argsort(dim=1, descending=largest, stable=True)[:, :k]
    return v.gather(1, keep), p[keep]


@pytest.mark.parametrize("path", ["chosen", "dense", "sparse"])
def test_every_merge_path_equals_a_brute_force_pass(monkeypatch, path):
    """Whichever path a batch takes (as chosen by the candidate count, or forced), the state
    equals a brute-force pass; the first batch's floor never drops a tied value."""
    torch.manual_seed(0)
    d, k, batches, tokens = 64, 5, 12, 40
    data = torch.randn(batches * tokens, d).round(decimals=1)  # rounding makes ties
    data[:tokens, :8] = 0.5  # a first batch where every value of some neurons ties at its floor
    positions = torch.arange(batches * tokens)
    reducer = AtlasReducer(1, d, k)
    if path != "chosen":
        monkeypatch.setattr(reducer, "DENSE_ABOVE", 0.0 if path == "dense" else float("inf"))
    taken = {"dense": 0, "sparse": 0}
    for name in taken:
        original = getattr(reducer, f"_merge_{name}")
        monkeypatch.setattr(reducer, f"_merge_{name}",
                            lambda *a, name=name, original=original: (taken.__setitem__(name, taken[name] + 1),
                                                                       original(*a))[1])
    for b in range(batches):
        rows = slice(b * tokens, (b + 1) * tokens)
        reducer.update(0, data[rows], positions[rows])
    if path == "chosen":
        assert taken["sparse"] > 0
    else:
        assert taken[path] > 0 and taken[{"dense": "sparse", "sparse": "dense"}[path]] == 0
    for largest, vals, poss in ((True, reducer.top_v, reducer.top_p), (False, reducer.bot_v, reducer.bot_p)):
        want_v, want_p = _brute(data, positions, k, largest)
        assert torch.equal(vals[0], want_v) and torch.equal(poss[0], want_p)
    # sums are float32 within a batch (40 values here) and float64 across batches
    torch.testing.assert_close(reducer.sum[0], data.double().sum(0), rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(reducer.sumsq[0], (data.double() ** 2).sum(0), rtol=1e-6, atol=1e-4)
    assert torch.equal(reducer.positive[0], (data > 0).sum(0))
    assert torch.equal(reducer.hist[0].sum(1), torch.full((d,), batches * tokens, dtype=torch.int32))


@pytest.mark.parametrize("n_tok", [320, 333])  # whole groups, and a tail after the last one
def test_candidates_hold_every_value_that_can_enter(n_tok):
    """The group pre-filter returns exactly the values beyond the threshold (a full state), and
    with the first batch's floor a superset of the batch's own top-k ties included, which
    still prunes most values (a negative control against a floor that does nothing)."""
    torch.manual_seed(2)
    reducer = AtlasReducer(1, 32, 7)
    for _ in range(10):
        a = (torch.randn(n_tok, 32) * torch.rand(32) * 10).round(decimals=0)  # ties
        for largest in (True, False):
            threshold = a.quantile(0.9 if largest else 0.1, dim=0)
            tok, neuron, value = reducer._candidates(a, threshold, largest, full=True)
            assert torch.equal(value, a[tok, neuron]) and bool((neuron.diff() >= 0).all())  # grouped by neuron
            want = (a > threshold) if largest else (a < threshold)
            got = torch.zeros_like(want)
            got[tok, neuron] = True
            assert torch.equal(got, want) and len(tok) == int(want.sum())
            for n in range(32):  # token order within each neuron, as the sparse merge needs
                assert bool((tok[neuron == n].diff() > 0).all())
            empty = torch.full((32,), -torch.inf if largest else torch.inf)
            tok, neuron, _ = reducer._candidates(a, empty, largest, full=False)
            got = torch.zeros_like(want)
            got[tok, neuron] = True
            kth = a.topk(7, dim=0, largest=largest).values[-1]
            must = (a >= kth) if largest else (a <= kth)
            assert bool(got[must].all())
            assert int(got.sum()) < a.numel() / 2


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


def test_samples_are_the_smallest_key_of_each_bin_and_split_and_merge_exactly():
    """The per-bin reservoir against a brute-force loop (each (split, neuron, bin) keeps the drawable
    position with the smallest key), and shards merged in any order equal one pass, values included."""
    from interp.tracing.reducers import SAMPLE_SHARE, hist_bins, mix
    from interp.tracing.reducers import heldout as is_heldout

    torch.manual_seed(2)
    d, T, n = 8, 16, 640
    data = torch.randn(n, d) * torch.logspace(-2, 1, n)[:, None]
    positions = torch.arange(n)
    one = AtlasReducer(1, d, 2, sample_seq_len=T)
    shards = [AtlasReducer(1, d, 2, sample_seq_len=T) for _ in range(2)]
    for b in range(n // 64):
        rows = slice(b * 64, (b + 1) * 64)
        one.update(0, data[rows], positions[rows])
        shards[b % 2].update(0, data[rows], positions[rows])
    merged = AtlasReducer(1, d, 2, sample_seq_len=T)
    for shard in reversed(shards):
        merged.merge(shard)
    assert torch.equal(merged.samp, one.samp) and torch.equal(merged.sval.nan_to_num(-9), one.sval.nan_to_num(-9))
    key = mix(positions) & 0x7FFFFFFF
    bins = hist_bins(data)
    split = is_heldout(positions // T).long()
    want = {}
    for p in range(n):
        if key[p] % SAMPLE_SHARE:
            continue
        for j in range(d):
            slot = (int(split[p]), j, int(bins[p, j]))
            if slot not in want or key[p] < key[want[slot]]:
                want[slot] = p
    drawn = one.samples()
    got = {(s, j, b): int(drawn["position"][0, s, j, b]) for s, j, b in zip(*(drawn["position"][0] >= 0).nonzero(
        as_tuple=True))}
    got = {(int(s), int(j), int(b)): p for (s, j, b), p in got.items()}
    assert got == want
    for (s, j, b), p in want.items():
        assert drawn["activation"][0, s, j, b] == data[p, j]
    assert len({s for s, _, _ in want}) == 2  # both splits drew
