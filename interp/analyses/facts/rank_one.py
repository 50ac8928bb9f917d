"""A subject-keyed rank-one edit of the MLP output weights (ROME/MEMIT-style), for unlearning.

For each forget fact ``i`` and each edited layer ``l``: the key ``k_i`` is the neuron activation
(``hook_post``, the input of ``W_out``) at the subject's last token; the update direction is
``u_i = C^-1 k_i / (k_i . C^-1 k_i)``, with ``C`` the second moment of the layer's activations on corpus
text (ridge ``reg * mean(diag C)``), so ``u_i . k_i = 1`` and keys unlike ``k_i`` (in ``C``'s metric)
barely move it; the retain prompts' keys (at every token: the subjects, and the template words the forget
prompts share) are projected out of ``u`` (``u . k_retain = 0``), because corpus text says nothing about which
directions other countries share with this one. The weight becomes ``W_out + sum_i delta_i u_i^T``: one
rank-one term per fact, only ``delta_i`` (a ``d_model`` vector) is learned. Knowledge isolation in the
literal sense: only the directions the subject's key uses are touched, and nothing but ``W_out`` of the
chosen layers changes.

The ``delta`` are optimised through the real model (``interp.tracing.rank_update``: the weight is
parametrised), so architecture details such as Gemma's post-feedforward norm are honoured, then baked in.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from interp.datasets.prompts import subject_positions
from interp.errors import InterpError
from interp.names import hook_name
from interp.tracing import record


def out_module(model, layer: int) -> torch.nn.Module:
    """The Linear (or Conv1D) module whose weight ``W_out[layer]`` is."""
    mlp = model.bridge.blocks[layer].mlp.out
    return getattr(mlp, "original_component", None) or mlp


def out_param_name(model, layer: int) -> str:
    """The HF name of ``W_out[layer]``'s parameter (for ``save_edit``)."""
    weight = out_module(model, layer).weight
    names = [n for n, p in model.hf_params.items() if p is weight]
    if not names:
        raise InterpError(f"cannot find the HF parameter of W_out[{layer}] in {model.spec}")
    return names[0]


@torch.no_grad()
def acts_at(model, prompts: list[str], layers: list[int],
            positions: list[int] | None = None) -> Float[Tensor, "layer prompt d_mlp"]:
    """Each prompt's neuron activations (``hook_post``) at one position (default: its last token), per layer."""
    batch = model.batch(prompts)
    pos = batch.lengths - 1 if positions is None else torch.tensor(positions, device=batch.tokens.device)
    sites = [hook_name("mlp_post", l) for l in layers]
    with record(model, sites) as acts:
        model(batch.tokens)
    rows = torch.arange(len(prompts), device=pos.device)
    return torch.stack([acts[s][rows, pos].float() for s in sites])


def subject_keys(model, prompts: list[str], subjects: list[str],
                 layers: list[int]) -> Float[Tensor, "layer fact d_mlp"]:
    """Each prompt's neuron activations at its subject's last token, per layer."""
    return acts_at(model, prompts, layers, [subject_positions(model, p, s)[-1] for p, s in zip(prompts, subjects)])


@torch.no_grad()
def prompt_keys(model, prompts: list[str], layers: list[int]) -> Float[Tensor, "layer token d_mlp"]:
    """The neuron activations at every (unpadded) token of ``prompts``, per layer."""
    batch = model.batch(prompts)
    sites = [hook_name("mlp_post", l) for l in layers]
    with record(model, sites) as acts:
        model(batch.tokens)
    real = torch.arange(batch.tokens.shape[1], device=batch.tokens.device)[None] < batch.lengths[:, None]
    return torch.stack([acts[s][real].float() for s in sites])


@torch.no_grad()
def second_moment(model, windows: Tensor, layers: list[int]) -> Float[Tensor, "layer d_mlp d_mlp"]:
    """``E[a a^T]`` of each layer's neuron activations over every token of ``windows``."""
    sites = [hook_name("mlp_post", l) for l in layers]
    with record(model, sites) as acts:
        model(windows)
    out = []
    for s in sites:
        a = acts[s].flatten(0, 1).float()
        out.append(a.T @ a / len(a))
    return torch.stack(out)


def directions(keys: Tensor, moment: Tensor, reg: float, protect: Tensor | None = None) -> Tensor:
    """``u = C^-1 k / (k . C^-1 k)`` per (layer, fact), with ``C + reg * mean(diag C) * I``; with ``protect``
    (``[layer, n, d_mlp]``: the retain prompts' keys), ``C^-1 k`` is first projected off their span, so
    ``u . k_retain = 0``: the edit leaves those facts' subject activations exactly where they were
    (the null-space constraint of AlphaEdit, Fang et al., 2024)."""
    d = moment.shape[-1]
    eye = torch.eye(d, dtype=moment.dtype, device=moment.device)
    ridge = moment + reg * moment.diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None] * eye
    solved = torch.linalg.solve(ridge, keys.transpose(1, 2)).transpose(1, 2)  # [layer, fact, d_mlp]
    if protect is not None and protect.shape[1]:
        q, _ = torch.linalg.qr(protect.transpose(1, 2))  # [layer, d_mlp, n]: an orthonormal basis of their span
        solved = solved - (solved @ q) @ q.transpose(1, 2)
    return solved / (solved * keys).sum(-1, keepdim=True)
