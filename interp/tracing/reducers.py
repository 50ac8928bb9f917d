"""Streaming reducers for the neuron atlas, exact and mergeable.

For every neuron of the chosen layers, over a stream of token batches:

- ``top`` / ``bottom``: the k largest and smallest activations with their corpus
  position (a global token index, ``window * seq_len + pos``). Candidates are merged
  by a stable sort with ties broken by the smaller position, so merging shards in
  any order gives the same answer as one pass.
- ``hist``: counts in fixed signed-log bins (``hist_bins``: 4 bins per octave from
  2^-12 to 2^12 on each side, read from the float bits, plus the bins next to zero and
  beyond +-2^12). Integer counts add exactly.
- moments: count, sum and sum of squares (float64), and the count of positive values.

Memory is fixed by (layers x d_mlp x k) and the bins, never by corpus length.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

# Histogram bins come straight from the float32 bits: sign, exponent and the top two
# mantissa bits give 4 bins per octave (ratio 2^(1/4) ~ 1.19), from 2^-12 to 2^12 on
# each side, plus a bin for |x| < 2^-12 (one per sign) and one beyond +-2^12.
_SHIFT, _LOW_KEY, _SPAN = 21, (115 << 2) - 1, 97  # key 460 is 2^-12 (biased exponent 115)
_SIDE = _SPAN + 1  # 98 bins per sign
N_BINS = 2 * _SIDE  # 196


def _lower_edge(m: int) -> float:
    key = _LOW_KEY + m
    return 2.0 ** ((key >> 2) - 127) * (1 + (key & 3) / 4)


_POS_EDGES = [_lower_edge(m) for m in range(1, _SPAN + 1)]  # 2^-12 ... 2^12
HIST_EDGES = torch.tensor([-e for e in reversed(_POS_EDGES)] + [0.0] + _POS_EDGES)  # 195 edges -> 196 bins


def hist_bins(x: Float[Tensor, "..."]) -> Int[Tensor, "..."]:
    """The histogram bin of each float32 value, read from its bits (integer ops only).

    Bins ``0..97`` hold negative values (``0``: below ``-2^12``; ``97``: ``(-2^-12, 0]``),
    bins ``98..195`` the rest (``98``: ``[0, 2^-12)``; ``195``: ``2^12`` and above);
    ``HIST_EDGES`` are the boundaries between them.
    """
    key = x.float().contiguous().view(torch.int32) >> _SHIFT
    mag = ((key & 1023) - _LOW_KEY).clamp_(0, _SPAN)
    return torch.where(key < 0, _SPAN - mag, _SIDE + mag)


def _stable_topk(values: Tensor, positions: Tensor, k: int, largest: bool) -> tuple[Tensor, Tensor]:
    """Top-k along the last axis, ties broken by the smaller position (deterministic)."""
    order = positions.argsort(dim=-1, stable=True)
    values, positions = values.gather(-1, order), positions.gather(-1, order)
    keep = values.argsort(dim=-1, descending=largest, stable=True)[..., :k]
    return values.gather(-1, keep), positions.gather(-1, keep)


class AtlasReducer:
    def __init__(self, n_layers: int, d_mlp: int, k: int):
        self.k = k
        shape = (n_layers, d_mlp)
        self.top_v = torch.full((*shape, k), -torch.inf)
        self.top_p = torch.full((*shape, k), -1, dtype=torch.long)
        self.bot_v = torch.full((*shape, k), torch.inf)
        self.bot_p = torch.full((*shape, k), -1, dtype=torch.long)
        self.hist = torch.zeros((*shape, N_BINS), dtype=torch.int32)  # < 2^31 positions per bin
        self.sum = torch.zeros(shape, dtype=torch.float64)
        self.sumsq = torch.zeros(shape, dtype=torch.float64)
        self.positive = torch.zeros(shape, dtype=torch.int64)
        self.count = torch.zeros((), dtype=torch.int64)

    def update(self, slot: int, acts: Float[Tensor, "tokens d_mlp"], positions: Int[Tensor, " tokens"]) -> None:
        """Fold one batch of one layer (``slot`` indexes the chosen layers) into the state."""
        a = acts.float().cpu().T.contiguous()  # [d_mlp, tokens]: reductions along a contiguous axis
        lo, hi = torch.aminmax(a, dim=1)
        for largest, extreme, vals, poss in ((True, hi, self.top_v, self.top_p), (False, lo, self.bot_v, self.bot_p)):
            # only neurons whose batch extreme can enter their current top (bottom) k need a top-k and a merge
            rows = (extreme > vals[slot, :, -1] if largest else extreme < vals[slot, :, -1]).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            sub = a[rows]
            cand = sub.topk(min(self.k, sub.shape[1]), dim=1, largest=largest)
            cand_pos = positions.cpu()[cand.indices]
            merged_v = torch.cat([vals[slot, rows], cand.values], dim=1)
            merged_p = torch.cat([poss[slot, rows], cand_pos], dim=1)
            vals[slot, rows], poss[slot, rows] = _stable_topk(merged_v, merged_p, self.k, largest)
        d_mlp = a.shape[0]
        bins = hist_bins(a) + torch.arange(d_mlp, dtype=torch.int32)[:, None] * N_BINS
        self.hist[slot].view(-1).add_(torch.bincount(bins.flatten(), minlength=d_mlp * N_BINS).to(torch.int32))
        self.sum[slot] += a.sum(1, dtype=torch.float64)
        self.sumsq[slot] += (a * a).sum(1, dtype=torch.float64)
        self.positive[slot] += (a > 0).sum(1)

    def add_tokens(self, n: int) -> None:
        self.count += n

    def merge(self, other: "AtlasReducer") -> None:
        """Fold another reducer's state into this one (exact; any order)."""
        for largest, mine_v, mine_p, theirs_v, theirs_p in (
            (True, self.top_v, self.top_p, other.top_v, other.top_p),
            (False, self.bot_v, self.bot_p, other.bot_v, other.bot_p),
        ):
            v, p = _stable_topk(torch.cat([mine_v, theirs_v], -1), torch.cat([mine_p, theirs_p], -1), self.k, largest)
            mine_v.copy_(v), mine_p.copy_(p)
        self.hist += other.hist
        self.sum += other.sum
        self.sumsq += other.sumsq
        self.positive += other.positive
        self.count += other.count

    FIELDS = ("top_v", "top_p", "bot_v", "bot_p", "hist", "sum", "sumsq", "positive", "count")

    def state(self) -> dict[str, Tensor]:
        return {name: getattr(self, name).clone() for name in self.FIELDS}

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> "AtlasReducer":
        n_layers, d_mlp, k = state["top_v"].shape
        reducer = cls(n_layers, d_mlp, k)
        for name in cls.FIELDS:
            setattr(reducer, name, state[name].clone())
        return reducer

    def quantiles(self, qs: list[float]) -> Tensor:
        """Approximate quantiles from the histogram: the upper edge of the bin where the
        cumulative count crosses q (exact to the bin width; stated in results)."""
        cdf = self.hist.cumsum(-1).double() / self.hist.sum(-1, keepdim=True).clamp(min=1)
        edges = torch.cat([HIST_EDGES, HIST_EDGES[-1:]]).double()  # the overflow bin reports the last edge
        out = []
        for q in qs:
            idx = (cdf < q).sum(-1).clamp(max=N_BINS - 1)
            out.append(edges[idx])
        return torch.stack(out, -1).float()
