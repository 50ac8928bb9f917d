"""Scores for neuron explanations, many neurons at once: each column of a matrix is one neuron.

The metrics are the ones that pass recent sanity checks of explanation scoring (i.i.d. correlation
on random tokens, AUPRC) beside OpenAI's top-and-random correlation (Bills et al. 2023) and
delphi's detection AUROC (Paulo et al. 2024):

- ``pearson``: the correlation of predicted with true activations, per column (a column where either
  side is constant scores 0: the explanation predicts nothing there, as OpenAI's scorer treats it);
- ``average_precision``: AUPRC of the predictions against binary labels (ties in the prediction form
  one threshold, as scikit-learn's ``average_precision_score`` does; NaN for a column without a positive);
- ``auroc``: the Mann-Whitney probability that a positive outscores a negative (ties count a half).

Every function is checked against a brute-force loop over one column (``tests/unit/analyses/neurons``).
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor


def pearson(pred: Float[Tensor, "n neurons"], true: Float[Tensor, "n neurons"],
            mask: Bool[Tensor, "n neurons"] | None = None) -> Float[Tensor, " neurons"]:
    """Per-column Pearson correlation over the rows where ``mask`` (default: all); 0 where constant."""
    pred, true = pred.double(), true.double()
    w = torch.ones_like(pred) if mask is None else mask.double()
    n = w.sum(0).clamp(min=1)
    mp, mt = (pred * w).sum(0) / n, (true * w).sum(0) / n
    dp, dt = (pred - mp) * w, (true - mt) * w
    cov, vp, vt = (dp * dt).sum(0), (dp * dp).sum(0), (dt * dt).sum(0)
    denom = (vp * vt).sqrt()
    flat = (vp <= 1e-12 * n) | (vt <= 1e-12 * n)
    return torch.where(flat, torch.zeros_like(cov), cov / denom.clamp(min=1e-300)).float()


def average_precision(score: Float[Tensor, "n neurons"], label: Bool[Tensor, "n neurons"]) -> Float[Tensor, " neurons"]:
    """Per-column AUPRC: the mean, over positives, of the precision at the threshold of their score
    (tied scores share one threshold)."""
    order = score.argsort(dim=0, descending=True, stable=True)
    s, y = score.gather(0, order), label.gather(0, order).double()
    n = s.shape[0]
    tp = y.cumsum(0)
    rank = torch.arange(1, n + 1, dtype=torch.float64, device=s.device)[:, None]
    end = torch.ones_like(s, dtype=torch.bool)
    end[:-1] = s[:-1] != s[1:]  # the last row of each group of tied scores
    # each row's group end: the first end at or after it (a reverse running minimum over end indices)
    idx = torch.where(end, torch.arange(n, device=s.device)[:, None].expand_as(s), n)
    group_end = idx.flip(0).cummin(0).values.flip(0)
    precision = (tp / rank).gather(0, group_end)
    positives = y.sum(0)
    ap = (y * precision).sum(0) / positives.clamp(min=1)
    return torch.where(positives > 0, ap, torch.nan).float()


def auroc(pos: Float[Tensor, "neurons p"], pos_mask: Bool[Tensor, "neurons p"],
          neg: Float[Tensor, "neurons q"], neg_mask: Bool[Tensor, "neurons q"]) -> Float[Tensor, " neurons"]:
    """Per-row AUROC of positive against negative scores (padded rows, masks say which are real): the
    share of (positive, negative) pairs where the positive scores higher, ties counted a half; NaN for a
    row without a positive or a negative."""
    big = torch.finfo(torch.float64).max
    negs = torch.where(neg_mask, neg.double(), big).sort(1).values.contiguous()
    n_neg = neg_mask.sum(1, keepdim=True).double()
    p = pos.double().contiguous()
    below = torch.searchsorted(negs, p, side="left").double().clamp(max=n_neg.expand_as(p))
    upto = torch.searchsorted(negs, p, side="right").double().clamp(max=n_neg.expand_as(p))
    wins = torch.where(pos_mask, below + 0.5 * (upto - below), 0).sum(1)
    n_pos = pos_mask.sum(1).double()
    pairs = n_pos * n_neg[:, 0]
    return torch.where(pairs > 0, wins / pairs.clamp(min=1), torch.nan).float()
