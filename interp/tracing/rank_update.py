"""A model mode: low-rank additive updates of weight matrices, learnable, baked in on exit.

``rank_updates(modules, u, deltas)`` makes each module's weight ``W + delta^T u`` (``delta`` ``[k, out]``,
``u`` ``[k, in]``: a sum of ``k`` rank-one terms) through ``torch.nn.utils.parametrize``, so the model runs
and differentiates through the updated weight as it is; on exit the update is written into the weight
(the parameter object stays the same). Used by the rank-one unlearning edit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor
from torch.nn.utils import parametrize


class RankUpdate(torch.nn.Module):
    """``W -> W + delta^T u`` in the module's ``[out, in]`` layout: ``delta`` ``[fact, d_model]``, ``u``
    ``[fact, d_mlp]`` (Conv1D stores ``[in, out]``: ``transposed``)."""

    def __init__(self, delta: Tensor, u: Tensor, transposed: bool):
        super().__init__()
        self.delta, self.u, self.transposed = delta, u, transposed

    def forward(self, weight: Tensor) -> Tensor:
        update = (self.delta.T @ self.u).to(weight.dtype)
        return weight + (update.T if self.transposed else update)


@contextmanager
def rank_updates(modules: Sequence[torch.nn.Module], u: Sequence[Tensor] | Tensor,
                 deltas: Sequence[Tensor]) -> Iterator[None]:
    """While inside, each module's weight is ``W + delta^T u``; on exit the updates are baked into the
    weights (``parametrize.remove_parametrizations(leave_parametrized=True)``)."""
    from transformers.pytorch_utils import Conv1D

    for m, ul, dl in zip(modules, u, deltas):
        parametrize.register_parametrization(m, "weight", RankUpdate(dl, ul.to(dl.device), isinstance(m, Conv1D)),
                                             unsafe=True)
    try:
        yield
    finally:
        with torch.no_grad():
            for m in modules:
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
