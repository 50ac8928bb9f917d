"""The fused CPU pass (numba) against the torch passes it replaces on the CPU: the same state, every field."""

from __future__ import annotations

import pytest
import torch

from interp.tracing.reducers import AtlasReducer, fused_available
from interp.tracing.stream import fold

pytestmark = pytest.mark.skipif(not fused_available(), reason="numba is not installed")


def _stream(fused: bool, shards: int, glu: bool, skip: int, context_k: int = 3, seed: int = 0) -> dict:
    """Batches of windows with many ties (rounded values, whole windows of one value), an infinity, a run of
    zeros and a bfloat16 batch, over a full reducer (top/bottom with contexts, samples, quadrants), ``shards``
    interleaved and merged."""
    g = torch.Generator().manual_seed(seed)
    B, T, d, L = 3, 20, 24, 2
    make = dict(quadrant_k=3 if glu else 0, sample_seq_len=T, context_k=context_k, width=4)
    parts = [AtlasReducer(L, d, 5, **make) for _ in range(shards)]
    for part in parts:
        part.fused = fused
    for b in range(8):
        acts = torch.randn(B, T, d, generator=g).round(decimals=1)
        acts[0, :, :3] = 0.7  # every value of some neurons tied
        acts[1, 5:9, 4] = 0.0
        if b == 2:
            acts[2, 7, 5] = torch.inf
        gate, up = torch.randn(2, B, T, d, generator=g).unbind(0)
        gate[0, :4, 6] = 0.0  # a zero gate counts as negative
        if b == 5:
            acts, gate, up = acts.bfloat16(), gate.bfloat16(), up.bfloat16()
        positions = ((torch.arange(B) + b * B)[:, None] * T + torch.arange(skip, T)).flatten()
        part = parts[b % shards]
        for slot in range(L):
            fold(part, slot, acts * (slot + 1), positions, skip, gate if glu else None, up if glu else None)
        part.add_tokens(len(positions))
    merged = parts[0]
    for other in parts[1:]:
        merged.merge(other)
    return merged.state()


@pytest.mark.parametrize("glu", [True, False])
@pytest.mark.parametrize("shards,skip", [(1, 0), (1, 2), (3, 1)])
def test_the_fused_pass_equals_the_torch_passes(glu, shards, skip):
    """Every field bit for bit (NaN where NaN), the sums to float rounding (their order differs)."""
    want, got = _stream(False, shards, glu, skip), _stream(True, shards, glu, skip)
    assert want.keys() == got.keys()
    for name in want:
        if name in ("sum", "sumsq"):
            finite = want[name].isfinite()
            torch.testing.assert_close(got[name][finite], want[name][finite], rtol=1e-6, atol=1e-4)
            assert torch.equal(got[name].isfinite(), finite)
        else:
            assert torch.equal(got[name].nan_to_num(-7.0), want[name].nan_to_num(-7.0)), name


def test_contexts_off_and_the_switch():
    """Without stored contexts the two passes still agree; ``INTERP_FUSED=0`` turns the fused pass off."""
    want, got = _stream(False, 1, True, 1, context_k=0), _stream(True, 1, True, 1, context_k=0)
    for name in want:
        if name not in ("sum", "sumsq"):
            assert torch.equal(got[name].nan_to_num(-7.0), want[name].nan_to_num(-7.0)), name
    assert AtlasReducer(1, 4, 2).fused
    assert not AtlasReducer(1, 4, 2, device="meta").fused


def test_interp_fused_0_turns_it_off(monkeypatch):
    monkeypatch.setenv("INTERP_FUSED", "0")
    assert not AtlasReducer(1, 4, 2).fused
