"""Linearised mode: the model made linear in its residual stream around one prompt.

Inside ``linearised(model, cut=...)`` the forward pass computes the same values, but its
gradients are those of the *local replacement model* of attribution graphs (Ameisen et
al., 2025), with the raw MLP neurons as the features:

- every norm's input-dependent scale is a constant (the LRP ``ln`` rule);
- every attention pattern is a constant (the LRP ``ah`` rule), so attention is linear
  in the residual stream through its values;
- each MLP neuron is linear in its input: a GLU neuron ``act(gate) * up`` keeps its gate
  ``act(gate)`` frozen at its value (gradient through ``up`` only); a plain MLP neuron
  ``act(pre)`` is ``pre * slope`` with its local slope ``act(pre) / pre`` frozen.

With ``cut=False`` gradients flow through the MLPs so linearised: ``act * d metric / d act`` at
a neuron is its *total* effect in the linear model (the sum over every path). With
``cut=True`` each MLP's activation (``hook_post``) is replaced by a leaf, so a gradient
stops at the first MLP it meets: ``act * grad`` at the leaf is the *direct* effect through
attention and the residual stream only (an edge of the graph), and the residual stream
entering layer 0 (the embeddings) is a leaf too.

The returned ``Linear`` holds, per layer, the activation tensors whose gradients are read
(``post``), the neurons' linear values (``value``: equal to the activation, but
differentiable through this layer's input in the linear model) and ``embed``.
Hooks are this model's only: no class is patched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from interp.names import hook_name
from interp.tracing.hooks import hooks
from interp.tracing.lrp import Rules, _same_value, _slope, mlp_taps, rule_hooks

FROZEN = Rules(ln=True, identity=False, half=False, ah=True)  # norm scales and patterns frozen


@dataclass
class Linear:
    embed: Tensor | None = None  # [batch, pos, d_model]: a leaf (the residual entering layer 0)
    post: dict[int, Tensor] = field(default_factory=dict)  # layer -> [batch, pos, d_mlp] (leaves when cut)
    value: dict[int, Tensor] = field(default_factory=dict)  # layer -> the neurons' linear values


def _mlp_hooks(model, layer: int, cut: bool, out: Linear) -> list:
    act_fn = model.weights.act_fn
    seen, points, at_zero = mlp_taps(model, layer)

    def linear(post: Tensor) -> Tensor:
        pre = seen.pop("pre")
        if model.is_glu:
            lin = act_fn(pre.detach()) * seen.pop("up")
        else:
            lin = pre * _slope(pre, act_fn(pre.detach()), at_zero)
        value = _same_value(post, lin.to(post.dtype))
        out.value[layer] = value
        if cut:
            leaf = post.detach().requires_grad_(True)
            out.post[layer] = leaf
            return leaf
        out.post[layer] = value
        return value

    return [*points, (hook_name("mlp_post", layer), linear)]


@contextmanager
def linearised(model, cut: bool) -> Iterator[Linear]:
    """The body's forward passes run in the linear model (see the module docstring); the returned
    ``Linear`` is filled as they run (a later pass overwrites an earlier one)."""
    out = Linear()

    def embed(x: Tensor) -> Tensor:
        out.embed = x.detach().requires_grad_(True)
        return out.embed

    fwd = [(hook_name("resid_pre", 0), embed), *rule_hooks(model, FROZEN)]
    for layer in range(model.n_layers):
        fwd += _mlp_hooks(model, layer, cut, out)
    with torch.enable_grad(), hooks(model, fwd):
        yield out
