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

from dataclasses import dataclass

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

    @property
    def n_tokens(self) -> int:
        return int(self.unigram.sum())

    def p_unigram(self) -> Tensor:
        return (self.unigram.double() + 1) / (self.n_tokens + self.d_vocab)

    def dist(self, cur: Tensor) -> Tensor:
        """``P(. | x)`` for each context ``x`` in ``cur`` (any shape): ``[..., V]``, float32."""
        flat = cur.flatten().cpu()
        uniq, inverse = flat.unique(return_inverse=True)
        uni = self.p_unigram()
        rows = torch.empty(len(uniq), self.d_vocab, dtype=torch.float64)
        for i, x in enumerate(uniq.tolist()):
            lo, hi = int(self.row_ptr[x]), int(self.row_ptr[x + 1])
            row = self.beta * uni.clone()
            row[self.next[lo:hi]] += self.counts[lo:hi].double()
            rows[i] = row / (self.context[x].double() + self.beta)
        return rows[inverse].float().view(*cur.shape, self.d_vocab).to(cur.device)

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
    row_ptr = torch.zeros(d_vocab + 1, dtype=torch.long)
    row_ptr[1:] = torch.bincount(cur, minlength=d_vocab).cumsum(0)
    unigram = torch.bincount(stream[1:], minlength=d_vocab)
    return BigramTable(d_vocab, row_ptr, nxt, counts, unigram, context, beta)
