"""Exact streaming top-k per row, each kept entry with its context: the merge ``AtlasReducer`` runs.

A row is a neuron (top or bottom examples) or a neuron's gate/up sign quadrant. Each batch offers
candidates per row (value, token); ``keep`` merges them into the row's kept k (value, corpus position),
ties broken by the smaller position, and refreshes the stored contexts of the first ``context_k``: the
row's neuron's activations ``width`` tokens either side of the example, read from the batch's windows
(``Windows``) while they are in memory, so no second pass over the corpus is needed. An entry's rank
only grows as better ones arrive, so the first ``context_k`` after a merge come from the first
``context_k`` before it or from this batch's candidates; only the latter are read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor


def stable_topk_index(values: Tensor, positions: Tensor, k: int, largest: bool) -> Tensor:
    """Indices of the top-k along the last axis, ties broken by the smaller position (deterministic)."""
    order = positions.argsort(dim=-1, stable=True)
    keep = values.gather(-1, order).argsort(dim=-1, descending=largest, stable=True)[..., :k]
    return order.gather(-1, keep)


@dataclass
class Windows:
    """One batch's activations ``[windows, seq_len, d_mlp]`` of one layer. Token ``i`` of the flattened
    batch (``skip`` positions left out of each window) is window ``i // (seq_len - skip)``, position
    ``i % (seq_len - skip) + skip``."""

    acts: Float[Tensor, "batch seq d_mlp"]
    skip: int
    width: int

    def around(self, tok: Int[Tensor, " n"], neuron: Int[Tensor, " n"]) -> Float[Tensor, "n ctx"]:
        """Each (token, neuron)'s activations ``width`` tokens either side, NaN past the window's edges."""
        T = self.acts.shape[1]
        window, pos = tok // (T - self.skip), tok % (T - self.skip) + self.skip
        at = pos[:, None] + torch.arange(-self.width, self.width + 1, device=tok.device)
        vals = self.acts[window[:, None], at.clamp(0, T - 1), neuron[:, None]].float()
        return torch.where((at >= 0) & (at < T), vals, torch.nan)


def by_row(tok: Tensor, row: Tensor, value: Tensor, pad: float) -> tuple[Tensor, Tensor, Tensor]:
    """Candidates grouped by row (tokens in order within each) as padded ``[rows, most]`` tables:
    (the rows, their values, their tokens; -1 and ``pad`` past each row's count)."""
    rows, counts = torch.unique_consecutive(row, return_counts=True)
    on = value.device
    group = torch.repeat_interleave(torch.arange(len(rows), device=on), counts)
    rank = torch.arange(len(row), device=on) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    cand_v = torch.full((len(rows), int(counts.max())), pad, device=on)
    cand_t = torch.full(cand_v.shape, -1, dtype=torch.long, device=on)
    cand_v[group, rank] = value
    cand_t[group, rank] = tok
    return rows, cand_v, cand_t


def keep(vals: Tensor, poss: Tensor, ctx: Tensor | None, rows: Tensor, neurons: Tensor, cand_v: Tensor,
         cand_t: Tensor, positions: Tensor, largest: bool, windows: Windows | None) -> None:
    """Merge candidates (``[rows, m]`` values and batch tokens, -1: none) into the kept ``vals`` / ``poss``
    (``[all rows, k]``, one layer) and, with ``ctx`` (``[all rows, context_k, 2 width + 1]``), the contexts.
    When every candidate follows every kept position (a stream moving forward) one stable sort by
    value breaks ties by the smaller position; otherwise positions are sorted first."""
    cand_p = torch.where(cand_t >= 0, positions[cand_t.clamp(min=0)], -1)
    old_v, old_p = vals.index_select(0, rows), poss.index_select(0, rows)
    merged_v, merged_p = torch.cat([old_v, cand_v], 1), torch.cat([old_p, cand_p], 1)
    k = old_v.shape[1]
    if int(positions.min()) > int(poss.max()):
        idx = merged_v.argsort(dim=1, descending=largest, stable=True)[:, :k]
    else:
        idx = stable_topk_index(merged_v, merged_p, k, largest)
    vals.index_copy_(0, rows, merged_v.gather(1, idx))
    poss.index_copy_(0, rows, merged_p.gather(1, idx))
    if ctx is None or windows is None:
        return
    old_c = ctx.index_select(0, rows)
    ck, width = old_c.shape[1], old_c.shape[2]
    src = idx[:, :ck]
    new_c = old_c.gather(1, src.clamp(max=ck - 1)[..., None].expand(-1, -1, width))
    r, j = (src >= k).nonzero(as_tuple=True)
    if len(r):
        tok = cand_t[r, src[r, j] - k]
        new_c[r, j] = torch.where(tok[:, None] >= 0, windows.around(tok.clamp(min=0), neurons[r]), torch.nan)
    ctx.index_copy_(0, rows, new_c)


def merge_kept(mine: tuple[Tensor, Tensor, Tensor | None], theirs: tuple[Tensor, Tensor, Tensor | None],
               k: int, largest: bool) -> None:
    """Fold another reducer's kept (values, positions, contexts), ``[..., k]``, into ``mine`` in place
    (exact, any order): each side's first ``context_k`` hold every context the union's first need."""
    (mv, mp, mc), (tv, tp, tc) = mine, theirs
    idx = stable_topk_index(torch.cat([mv, tv], -1), torch.cat([mp, tp], -1), k, largest)
    v, p = torch.cat([mv, tv], -1).gather(-1, idx), torch.cat([mp, tp], -1).gather(-1, idx)
    if mc is not None:
        ck = mc.shape[-2]
        src = idx[..., :ck]
        both = torch.cat([mc, tc], -2)  # mine's first ck, then theirs'
        at = torch.where(src < mv.shape[-1], src.clamp(max=ck - 1), ck + (src - mv.shape[-1]).clamp(0, ck - 1))
        mc.copy_(both.gather(-2, at[..., None].expand(*at.shape, both.shape[-1])))
    mv.copy_(v), mp.copy_(p)
