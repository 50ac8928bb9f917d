"""Continuous-sparsification masks over a model's block weights (Savarese et al., 2020, as
NeuroSurgeon and the bigram-subnetworks code use it).

Each masked weight ``W`` gets a logit ``s`` of its shape; the forward pass uses

- ``mode="soft"`` (training): ``W * sigmoid(T * s)``, with the temperature ``T`` annealed;
- ``mode="hard"`` (evaluation): ``W * (s > 0)``;
- ``mode="complement"``: ``W * (s <= 0)`` (the model with the subnetwork ablated);
- ``mode="fixed"``: ``W * keep`` for boolean masks set with ``Masks.set_fixed`` (random baselines).

Masks are ``torch.nn.utils.parametrize`` parametrizations on this model's own modules
(no class is patched); ``masked(...)`` removes them on exit, restoring the weights.
Only transformer-block matrices are masked (attention Q/K/V/O, MLP gate/up/down);
embeddings, unembedding, norms and biases never are.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from transformers.pytorch_utils import Conv1D

from interp.errors import InterpError

SCOPES = ("all", "mlp", "attn")


class _Mask(nn.Module):
    def __init__(self, shape, state: dict, init: float, device: torch.device):
        super().__init__()
        self.logits = nn.Parameter(torch.full(shape, float(init), device=device))
        self.state = state
        self.keep: Tensor | None = None
        self.last: Tensor | None = None

    def forward(self, W: Tensor) -> Tensor:
        mode = self.state["mode"]
        if mode == "soft":
            self.last = torch.sigmoid(self.state["T"] * self.logits)  # reused by the sparsity penalty
            return W * self.last.to(W.dtype)
        if mode == "hard":
            return W * (self.logits > 0).to(W.dtype)
        if mode == "complement":
            return W * (self.logits <= 0).to(W.dtype)
        if mode == "fixed":
            return W * self.keep.to(W.device, W.dtype)
        return W


class Masks:
    """The masks of one ``masked`` region: ``names`` (HF parameter names) -> ``_Mask``."""

    def __init__(self, masks: dict[str, _Mask], state: dict):
        self.masks, self.state = masks, state

    def parameters(self) -> list[nn.Parameter]:
        return [m.logits for m in self.masks.values()]

    def set(self, mode: str | None = None, T: float | None = None) -> None:
        if mode is not None:
            self.state["mode"] = mode
        if T is not None:
            self.state["T"] = float(T)

    def n_params(self) -> int:
        return sum(m.logits.numel() for m in self.masks.values())

    def soft_mean(self) -> Tensor:
        """Mean of ``sigmoid(T s)`` over every masked weight (the sparsity penalty), from the
        soft masks of the last forward pass when there was one."""
        T = self.state["T"]
        return sum((m.last if m.last is not None else torch.sigmoid(T * m.logits)).sum()
                   for m in self.masks.values()) / self.n_params()

    def undecided(self) -> float:
        """Share of weights whose soft mask lies strictly between 0.1 and 0.9."""
        T = self.state["T"]
        with torch.no_grad():
            n = sum(((torch.sigmoid(T * m.logits) > 0.1) & (torch.sigmoid(T * m.logits) < 0.9)).sum()
                    for m in self.masks.values())
        return float(n) / self.n_params()

    def hard(self) -> dict[str, Tensor]:
        return {n: (m.logits.detach() > 0) for n, m in self.masks.items()}

    def set_fixed(self, keep: dict[str, Tensor]) -> None:
        for n, m in self.masks.items():
            m.keep = keep[n].to(m.logits.device)
        self.state["mode"] = "fixed"

    def load_logits(self, logits: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for n, m in self.masks.items():
                m.logits.copy_(logits[n])


def maskable(model, scope: str = "all") -> list[str]:
    """HF names of the block weight matrices in ``scope`` (all, mlp, attn)."""
    if scope not in SCOPES:
        raise InterpError(f"unknown parameter set {scope!r}: choose one of {', '.join(SCOPES)}")
    names = [b.name for b in model.block_params if b.is_matrix and scope in ("all", b.part)]
    if not names:
        raise InterpError(f"--params {scope} selects no weight matrix of {model.spec}")
    return names


def _owners(model) -> dict[int, nn.Module]:
    return {id(mod.weight): mod for mod in model.hf_model.modules()
            if isinstance(mod, (nn.Linear, Conv1D)) and isinstance(getattr(mod, "weight", None), nn.Parameter)}


@contextmanager
def masked(model, scope: str = "all", init: float = 0.0):
    """Attach masks to the ``scope`` weights of ``model`` for the body; yields ``Masks``."""
    names = maskable(model, scope)
    owners = _owners(model)
    state = {"mode": "soft", "T": 1.0}
    masks: dict[str, _Mask] = {}
    attached = []
    with model.lock:
        try:
            for name in names:
                module = owners.get(id(model.hf_params[name]))
                if module is None:
                    raise InterpError(f"cannot find the module that owns {name}")
                mask = _Mask(module.weight.shape, state, init, module.weight.device)
                parametrize.register_parametrization(module, "weight", mask)
                attached.append(module)
                masks[name] = mask
            yield Masks(masks, state)
        finally:
            for module in attached:
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)


def random_like(hard: dict[str, Tensor], fraction: float, seed: int) -> dict[str, Tensor]:
    """A random subnetwork of the same expected size: each weight kept with probability ``fraction``."""
    gen = torch.Generator().manual_seed(seed)  # drawn in name order: the same masks from a stored run
    return {n: torch.rand(hard[n].shape, generator=gen, device="cpu") < fraction for n in sorted(hard)}
