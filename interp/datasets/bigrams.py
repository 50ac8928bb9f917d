"""Bigram statistics in the model's own tokenizer, stored sparsely.

Counts run over one token stream: the corpus's documents tokenized and joined with the
EOS token, so EOS is the "beginning of sequence" placeholder for each document's first
token (the paper uses a BOS placeholder). Smoothing, the back-off bigram -> unigram ->
uniform of the paper written as one interpolation:

- unigram: ``P_uni(y) = (c(y) + 1) / (N + V)`` (add-one: never zero);
- bigram: ``P(y | x) = (c(x, y) + beta * P_uni(y)) / (c(x) + beta)``: a context seen
  often is its own counts, a rare one falls back to the unigram.

A context is "covered" when it occurs at least ``min_count`` times.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from interp.errors import InterpError


@dataclass
class BigramTable:
    d_vocab: int
    row_ptr: Tensor  # [V + 1]: the pairs with context x are next[row_ptr[x]:row_ptr[x+1]]
    next: Tensor  # [n_pairs]
    counts: Tensor  # [n_pairs]
    unigram: Tensor  # [V] counts of each token as a successor
    context: Tensor  # [V] counts of each token as a context
    beta: float = 1.0
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_tokens(self) -> int:
        return int(self.unigram.sum())

    def p_unigram(self) -> Tensor:
        return (self.unigram.double() + 1) / (self.n_tokens + self.d_vocab)

    def dist(self, cur: Tensor) -> Tensor:
        """``P(. | x)`` for each context ``x`` in ``cur`` (any shape): ``[..., V]``, float32, on ``cur``'s device.
        Vectorised (one scatter of the observed pairs into unigram-smoothed rows); the arithmetic is float64
        as in the loop it replaced, so the values are bit-identical (``benchmarks/bigram_subnetworks.py``)."""
        t = self._on(cur.device)  # built where the batch is (on a GPU, the paper's 32 x 128 batches are cheap)
        uniq, inverse = cur.flatten().long().unique(return_inverse=True)
        rows = (self.beta * t["uni"])[None].repeat(len(uniq), 1)  # [contexts, V], float64
        lo, n = t["row_ptr"][uniq], t["row_ptr"][uniq + 1] - t["row_ptr"][uniq]
        row = torch.repeat_interleave(torch.arange(len(uniq), device=cur.device), n)  # each pair's context row
        start = torch.repeat_interleave(n.cumsum(0) - n, n)
        pair = torch.arange(len(row), device=cur.device) - start + torch.repeat_interleave(lo, n)  # into next/counts
        rows.index_put_((row, t["next"][pair]), t["counts"][pair], accumulate=True)
        rows /= (t["context"][uniq] + self.beta)[:, None]
        return rows[inverse].float().view(*cur.shape, self.d_vocab)

    def _on(self, device) -> dict[str, Tensor]:
        """The tables on ``device`` (float64 counts), built once per device."""
        key = str(device)
        if key not in self._cache:
            self._cache[key] = {"uni": self.p_unigram().to(device), "row_ptr": self.row_ptr.long().to(device),
                                "next": self.next.long().to(device), "counts": self.counts.double().to(device),
                                "context": self.context.double().to(device)}
        return self._cache[key]

    def coverage(self, min_count: int = 5) -> dict:
        seen = self.context > 0
        covered = self.context >= min_count
        return {"contexts_seen": int(seen.sum()), "contexts_covered": int(covered.sum()),
                "token_share_covered": float(self.context[covered].sum() / max(1, int(self.context.sum()))),
                "min_count": min_count, "n_tokens": self.n_tokens, "n_pairs": len(self.next)}


def count_bigrams(stream: Tensor, d_vocab: int, beta: float = 1.0) -> BigramTable:
    """Bigram counts of consecutive tokens in ``stream`` (1-D token ids)."""
    stream = stream.flatten().long().cpu()
    if len(stream) < 2:
        raise InterpError("need at least 2 tokens to count bigrams")
    keys = stream[:-1] * d_vocab + stream[1:]
    uniq, counts = keys.unique(return_counts=True)  # sorted: grouped by context
    cur, nxt = uniq // d_vocab, uniq % d_vocab
    context = torch.bincount(cur, weights=counts.double(), minlength=d_vocab).long()
    row_ptr = torch.zeros(d_vocab + 1, dtype=torch.long, device="cpu")
    row_ptr[1:] = torch.bincount(cur, minlength=d_vocab).cumsum(0)
    unigram = torch.bincount(stream[1:], minlength=d_vocab)
    return BigramTable(d_vocab, row_ptr, nxt, counts, unigram, context, beta)
