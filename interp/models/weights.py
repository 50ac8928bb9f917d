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

    def __getitem__(self, layer: int) -> Tensor | FinalNorm | None:
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
    """A norm (the final one before the unembedding, or a block's post-norm): ``weight`` is the
    effective per-channel gain (``1 + w`` for Gemma's offset RMSNorm) and, with ``bias``, is
    folded into decodings; the per-position scale ``1/rms(x)`` (or ``1/std``) is input-dependent."""

    kind: str  # "rms" or "layer"
    weight: Float[Tensor, " d_model"] | None
    bias: Float[Tensor, " d_model"] | None
    eps: float

    @classmethod
    def of(cls, bridge_norm) -> "FinalNorm":
        norm = _orig(bridge_norm)
        kind = "rms" if "rms" in type(norm).__name__.lower() else "layer"
        eps = getattr(norm, "variance_epsilon", None) or getattr(norm, "eps", 1e-5)
        return cls(kind, norm_gain(bridge_norm), getattr(norm, "bias", None), float(eps))

    def scale(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... 1"]:
        """The input-dependent scale ``s`` at each position (``1/rms``, or ``1/std`` for LayerNorm)."""
        x = x.float()
        if self.kind == "rms":
            return torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + self.eps)


def norm_gain(bridge_norm) -> Tensor | None:
    """The norm's effective gain: its weight, or ``1 + weight`` where the architecture offsets it
    (Gemma; the bridge says so through ``uses_weight_offset``)."""
    weight = getattr(_orig(bridge_norm), "weight", None)
    if weight is not None and getattr(bridge_norm, "uses_weight_offset", False):
        return 1.0 + weight
    return weight


def _has(block, name: str) -> bool:
    return name in getattr(block, "_modules", {})


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
        # the gain of the norm in front of the MLP (ln2; 1+w for Gemma): it scales what neurons read.
        # None where the MLP reads the raw residual (OLMo 2 normalises after the MLP instead).
        self.mlp_norm_w = _PerLayer(
            "mlp_norm_w", n, lambda l: norm_gain(blocks[l].ln2) if _has(blocks[l], "ln2") else None, optional=True
        )
        # the norm applied to the MLP's output before it joins the residual (Gemma 2/3, OLMo 2), and the
        # one after attention (ln1_post); None where the output is added as it is
        self.mlp_post_norm = _PerLayer(
            "mlp_post_norm", n, lambda l: FinalNorm.of(blocks[l].ln2_post) if _has(blocks[l], "ln2_post") else None,
            optional=True)
        self.attn_post_norm = _PerLayer(
            "attn_post_norm", n, lambda l: FinalNorm.of(blocks[l].ln1_post) if _has(blocks[l], "ln1_post") else None,
            optional=True)
        # attention output projection: [d_model, n_heads * d_head]; head h owns columns h*d_head:(h+1)*d_head
        self.W_O = _PerLayer("W_O", n, lambda l: linear_weight(blocks[l].attn.o))
        self.b_O = _PerLayer("b_O", n, lambda l: linear_bias(blocks[l].attn.o), optional=True)
        self._bridge = bridge
        act_name = next((getattr(hf_config, key) for key in ("hidden_activation", "hidden_act", "activation_function")
                         if getattr(hf_config, key, None)), None)
        if act_name not in ACT2FN:
            raise InterpError(f"unsupported MLP activation {act_name!r}")
        self.act_name: str = act_name
        self.act_fn = ACT2FN[act_name]
        self.final_norm = FinalNorm.of(bridge.ln_final)
        # Gemma 2's cap * tanh(logit / cap): monotone, so rankings hold, but no sum of components is the logit
        self.logit_softcap: float | None = getattr(hf_config, "final_logit_softcapping", None) or None

    def neuron_norms(self, layer: int) -> dict[str, torch.Tensor]:
        """Per neuron of ``layer``: the L2 norm of its output (``out``), input (``up``) and, GLU, gate (``gate``)
        weight vectors, float32 on the CPU; computed once per layer until its weights change (each card reads
        its layer's medians)."""
        sides = {"out": self.W_out[layer].T, "up": self.W_in[layer]}
        if self.is_glu:
            sides["gate"] = self.W_gate[layer]
        stamp = tuple((m.data_ptr(), m._version) for m in sides.values())
        memo = self.__dict__.setdefault("_norms", {})
        if memo.get(layer, (None,))[0] != stamp:
            with torch.no_grad():
                memo[layer] = (stamp, {side: m.float().norm(dim=1).cpu() for side, m in sides.items()})
        return memo[layer][1]

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        return linear_weight(self._bridge.unembed).T

    @property
    def b_U(self) -> Float[Tensor, " d_vocab"] | None:
        return linear_bias(self._bridge.unembed)

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return _orig(self._bridge.embed).weight

    def W_write(self, layer: int) -> Float[Tensor, "d_model d_mlp"]:
        """What each neuron writes into the residual stream, up to its positive per-position scale:
        ``W_out`` with the MLP's post-norm gain folded in (Gemma 2/3, OLMo 2: ``g * W_out[:, n]``,
        the post-norm's ``1/rms`` being the scale); ``W_out`` itself elsewhere. Decodings read this."""
        post = self.mlp_post_norm[layer]
        W = self.W_out[layer]
        return W if post is None or post.weight is None else post.weight[:, None] * W

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
