"""Neuron weight views in one layout, whatever the architecture.

``W_in[l]`` and ``W_gate[l]`` are ``[d_mlp, d_model]`` (row ``n`` is what neuron ``n``
reads), ``W_out[l]`` is ``[d_model, d_mlp]`` (column ``n`` is what it writes), as in
``torch.nn.Linear``. GPT-2's ``Conv1D`` stores ``[in, out]`` and is transposed here.
The views are the live parameters (no copy), so an edit to the model shows through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from transformers.activations import ACT2FN
from transformers.pytorch_utils import Conv1D

from interp.errors import InterpError, check_range


def _orig(component) -> torch.nn.Module:
    return getattr(component, "original_component", None) or component


def linear_weight(module: torch.nn.Module) -> Tensor:
    """The weight of a Linear or Conv1D as ``[out, in]``."""
    module = _orig(module)
    return module.weight.T if isinstance(module, Conv1D) else module.weight


def linear_bias(module: torch.nn.Module) -> Tensor | None:
    return getattr(_orig(module), "bias", None)


class _PerLayer:
    """``view[l]`` returns layer ``l``'s tensor, with a range check in the user's terms."""

    def __init__(self, name: str, n_layers: int, get: Callable[[int], Tensor | None], optional=False):
        self.name, self.n_layers, self._get, self.optional = name, n_layers, get, optional

    def __getitem__(self, layer: int) -> Tensor | None:
        check_range("layer", layer, self.n_layers, f"this model ({self.name})")
        value = self._get(layer)
        if value is None and not self.optional:
            raise InterpError(f"{self.name} does not exist for this architecture")
        return value

    def __len__(self) -> int:
        return self.n_layers

    def stack(self) -> Tensor:
        return torch.stack([self[layer] for layer in range(self.n_layers)])


@dataclass
class FinalNorm:
    """The final norm before the unembedding: ``weight`` and ``bias`` are folded into
    decodings; the per-position scale ``1/rms(x)`` (or ``1/std``) is input-dependent."""

    kind: str  # "rms" or "layer"
    weight: Float[Tensor, " d_model"] | None
    bias: Float[Tensor, " d_model"] | None
    eps: float


class NeuronWeights:
    """Weight views of a bridged model (see the module docstring for layouts)."""

    def __init__(self, bridge, hf_config, is_glu: bool):
        blocks = bridge.blocks
        n = len(blocks)

        def mlp_part(part: str):
            return lambda layer: getattr(blocks[layer].mlp, part)

        self.is_glu = is_glu
        self.W_in = _PerLayer("W_in", n, lambda l: linear_weight(mlp_part("in")(l)))
        self.b_in = _PerLayer("b_in", n, lambda l: linear_bias(mlp_part("in")(l)), optional=True)
        self.W_out = _PerLayer("W_out", n, lambda l: linear_weight(mlp_part("out")(l)))
        self.b_out = _PerLayer("b_out", n, lambda l: linear_bias(mlp_part("out")(l)), optional=True)
        self.W_gate = _PerLayer(
            "W_gate", n, lambda l: linear_weight(mlp_part("gate")(l)) if is_glu else None
        )
        self.b_gate = _PerLayer(
            "b_gate", n, lambda l: linear_bias(mlp_part("gate")(l)) if is_glu else None, optional=True
        )
        # the weight of the norm in front of the MLP (ln2): it scales what neurons read
        self.mlp_norm_w = _PerLayer(
            "mlp_norm_w", n, lambda l: getattr(_orig(blocks[l].ln2), "weight", None), optional=True
        )
        # attention output projection: [d_model, n_heads * d_head]; head h owns columns h*d_head:(h+1)*d_head
        self.W_O = _PerLayer("W_O", n, lambda l: linear_weight(blocks[l].attn.o))
        self.b_O = _PerLayer("b_O", n, lambda l: linear_bias(blocks[l].attn.o), optional=True)
        self._bridge = bridge
        act_name = getattr(hf_config, "hidden_act", None) or getattr(
            hf_config, "activation_function", None
        )
        if act_name not in ACT2FN:
            raise InterpError(f"unsupported MLP activation {act_name!r}")
        self.act_name: str = act_name
        self.act_fn = ACT2FN[act_name]
        norm = _orig(bridge.ln_final)
        kind = "rms" if "rms" in type(norm).__name__.lower() else "layer"
        eps = getattr(norm, "variance_epsilon", None) or getattr(norm, "eps", 1e-5)
        self.final_norm = FinalNorm(kind, getattr(norm, "weight", None), getattr(norm, "bias", None), float(eps))

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        return linear_weight(self._bridge.unembed).T

    @property
    def b_U(self) -> Float[Tensor, " d_vocab"] | None:
        return linear_bias(self._bridge.unembed)

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return _orig(self._bridge.embed).weight

    def W_U_normed(self) -> Float[Tensor, "d_model d_vocab"]:
        """``W_U`` with the final norm's weight folded in: ``diag(w) @ W_U``."""
        w = self.final_norm.weight
        return self.W_U if w is None else w[:, None] * self.W_U

    def neuron_act(
        self, layer: int, x: Float[Tensor, "... d_model"]
    ) -> Float[Tensor, "... d_mlp"]:
        """The neuron activation by formula, from the MLP's (normed) input ``x``:
        ``act(x W_gate^T) * (x W_in^T)`` for GLU, ``act(x W_in^T + b_in)`` otherwise."""
        pre = _affine(x, self.W_in[layer], self.b_in[layer])
        if self.is_glu:
            return self.act_fn(_affine(x, self.W_gate[layer], self.b_gate[layer])) * pre
        return self.act_fn(pre)


def _affine(x: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
    out = x @ W.T
    return out if b is None else out + b
