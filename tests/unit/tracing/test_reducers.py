"""The streaming reducer against a brute-force pass over all the data, on both merge paths."""

from __future__ import annotations

import pytest
import torch

from interp.tracing import reducers
from interp.tracing.reducers import AtlasReducer
from interp.tracing.stream import fold

PATHS = ["torch", pytest.param("fused", marks=pytest.mark.skipif(not reducers.fused_available(),
                                                                  reason="numba is not installed"))]


def _fold(reducer: AtlasReducer, path: str, acts, positions, skip: int = 0, gate=None, up=None) -> None:
    """One batch of windows ``[batch, seq, d]`` through ``fold``, on the torch passes or the fused CPU pass."""
    reducer.fused = path == "fused"
    fold(reducer, 0, acts, positions, skip, gate, up)


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
    for name, owner, attr in (("dense", reducer, "_dense"), ("sparse", reducers, "by_row")):
        original = getattr(owner, attr)
        monkeypatch.setattr(owner, attr,
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


@pytest.mark.parametrize("path", PATHS)
def test_interleaved_shards_merge_to_the_brute_force_pass(path):
    """Each shard streams its own batches in order (as a Ray actor does); merge combines them exactly."""
    torch.manual_seed(1)
    d, k, tokens = 16, 4, 25
    data = torch.randn(400, d).round(decimals=0)  # many ties
    positions = torch.arange(400)
    shards = [AtlasReducer(1, d, k) for _ in range(3)]
    for b in range(400 // tokens):
        rows = slice(b * tokens, (b + 1) * tokens)
        _fold(shards[b % 3], path, data[rows][None], positions[rows])
    merged = AtlasReducer(1, d, k)
    for shard in reversed(shards):
        merged.merge(shard)
    for largest, vals, poss in ((True, merged.top_v, merged.top_p), (False, merged.bot_v, merged.bot_p)):
        want_v, want_p = _brute(data, positions, k, largest)
        assert torch.equal(vals[0], want_v) and torch.equal(poss[0], want_p)


@pytest.mark.parametrize("path", PATHS)
def test_samples_are_the_smallest_key_of_each_bin_and_split_and_merge_exactly(path):
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
        _fold(one, path, data[rows][None], positions[rows])
        _fold(shards[b % 2], path, data[rows][None], positions[rows])
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


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shards", [1, 3])
def test_stored_contexts_are_the_activations_around_each_kept_example(shards, path):
    """The first ``context_k`` top and bottom examples carry their neuron's activations ``width`` tokens either
    side (NaN past the window, the skipped first positions included), read while their batch was in memory:
    equal to slicing the whole activation tensor at the brute-force examples, one pass or shards merged."""
    torch.manual_seed(2)
    n_windows, T, d, k, ck, width, skip, per_batch = 24, 12, 10, 4, 3, 2, 1, 2
    acts = torch.randn(n_windows, T, d).round(decimals=1)
    parts = [AtlasReducer(1, d, k, context_k=ck, width=width) for _ in range(shards)]
    for b in range(n_windows // per_batch):
        batch = acts[b * per_batch:(b + 1) * per_batch]
        positions = ((torch.arange(per_batch) + b * per_batch)[:, None] * T + torch.arange(skip, T)).flatten()
        _fold(parts[b % shards], path, batch, positions, skip)
    reducer = parts[0]
    for other in parts[1:]:
        reducer.merge(other)
    flat = acts[:, skip:].flatten(0, 1)
    positions = (torch.arange(n_windows)[:, None] * T + torch.arange(skip, T)).flatten()
    padded = torch.nn.functional.pad(acts, (0, 0, width, width), value=float("nan"))  # [windows, T + 2w, d]
    for largest, poss, ctx in ((True, reducer.top_p, reducer.top_c), (False, reducer.bot_p, reducer.bot_c)):
        _, want_p = _brute(flat, positions, k, largest)
        assert torch.equal(poss[0], want_p)
        for neuron in range(d):
            for rank in range(ck):
                w, p = divmod(int(want_p[neuron, rank]), T)
                want = padded[w, p:p + 2 * width + 1, neuron]
                torch.testing.assert_close(ctx[0, neuron, rank], want, equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shards", [1, 2])
def test_quadrants_equal_a_brute_force_pass_one_pass_or_sharded(shards, path):
    """Per gate/up sign quadrant: the count, and the top |activation| with positions and contexts, against a
    loop over all the data; sharded and merged the same. Small batches leave quadrants unfilled after the first
    batch (a threshold of -inf), the case that once lost candidates to inf - inf."""
    torch.manual_seed(3)
    d, T, skip, per_batch, n_windows, qk, width = 6, 10, 1, 2, 16, 2, 2
    acts, gate, up = torch.randn(3, n_windows, T, d).unbind(0)
    parts = [AtlasReducer(1, d, 4, quadrant_k=qk, context_k=3, width=width) for _ in range(shards)]
    for b in range(n_windows // per_batch):
        at = slice(b * per_batch, (b + 1) * per_batch)
        positions = ((torch.arange(per_batch) + b * per_batch)[:, None] * T + torch.arange(skip, T)).flatten()
        _fold(parts[b % shards], path, acts[at], positions, skip, gate[at], up[at])
    reducer = parts[0]
    for other in parts[1:]:
        reducer.merge(other)
    a, g, u = (x[:, skip:].flatten(0, 1) for x in (acts, gate, up))
    positions = (torch.arange(n_windows)[:, None] * T + torch.arange(skip, T)).flatten()
    padded = torch.nn.functional.pad(acts, (0, 0, width, width), value=float("nan"))
    code = (g <= 0).long() * 2 + (u <= 0).long()
    for neuron in range(d):
        for q in range(4):
            inside = code[:, neuron] == q
            assert int(reducer.quad_count[0, neuron, q]) == int(inside.sum())
            want_v, want_p = _brute(torch.where(inside, a[:, neuron].abs(), -torch.inf)[:, None], positions, qk, True)
            assert torch.equal(reducer.quad_v[0, neuron, q], want_v[0])
            assert torch.equal(reducer.quad_p[0, neuron, q], torch.where(want_v[0] > -torch.inf, want_p[0], -1))
            for rank, p in enumerate(reducer.quad_p[0, neuron, q].tolist()):
                w, t = divmod(p, T)
                torch.testing.assert_close(reducer.quad_c[0, neuron, q, rank], padded[w, t:t + 2 * width + 1, neuron],
                                           rtol=0, atol=0, equal_nan=True)
