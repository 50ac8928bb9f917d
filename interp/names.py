"""One address per neuron, and the one place hook names are spelled (a leaf).

``NeuronId(layer, index)`` names a neuron. Its activation is the input to the MLP's
output projection (``blocks.{layer}.mlp.hook_post`` on the TransformerBridge):
``act(x W_gate^T) * (x W_in^T)`` for GLU models, ``act(x W_in^T + b_in)`` otherwise.
Every other module builds hook names through ``hook_name``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from interp.errors import InterpError

# site -> hook name template; {layer} is filled in.
SITES: dict[str, str] = {
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "resid_mid": "blocks.{layer}.hook_resid_mid",
    "resid_post": "blocks.{layer}.hook_resid_post",
    "attn_out": "blocks.{layer}.hook_attn_out",
    "mlp_in": "blocks.{layer}.mlp.hook_in",
    "mlp_pre": "blocks.{layer}.mlp.hook_pre",
    "mlp_pre_linear": "blocks.{layer}.mlp.hook_pre_linear",  # the GLU's up projection (x W_in^T)
    "mlp_post": "blocks.{layer}.mlp.hook_post",
    "mlp_out": "blocks.{layer}.hook_mlp_out",  # what joins the residual (after a post-norm, Gemma/OLMo 2)
    "mlp_raw_out": "blocks.{layer}.mlp.hook_out",  # the MLP's own output, before any post-norm
    "attn_raw_out": "blocks.{layer}.attn.hook_out",
    "attn_z": "blocks.{layer}.attn.hook_z",
    "attn_pattern": "blocks.{layer}.attn.hook_pattern",
    "ln1_scale": "blocks.{layer}.ln1.hook_scale",
    "ln2_scale": "blocks.{layer}.ln2.hook_scale",
    "ln1_in": "blocks.{layer}.ln1.hook_in",
    "ln1_out": "blocks.{layer}.ln1.hook_out",
    "ln2_in": "blocks.{layer}.ln2.hook_in",
    "ln2_out": "blocks.{layer}.ln2.hook_out",
    "ln1_post_in": "blocks.{layer}.ln1_post.hook_in",  # post-norms (Gemma 2/3, OLMo 2)
    "ln1_post_out": "blocks.{layer}.ln1_post.hook_out",
    "ln2_post_in": "blocks.{layer}.ln2_post.hook_in",
    "ln2_post_out": "blocks.{layer}.ln2_post.hook_out",
}
GLOBAL_SITES: dict[str, str] = {
    "embed": "hook_embed",
    "final_scale": "ln_final.hook_scale",
    "pos_embed": "hook_pos_embed",
    "final_in": "ln_final.hook_in",
    "final_out": "ln_final.hook_out",
}


def hook_name(site: str, layer: int | None = None) -> str:
    """The bridge hook name of ``site`` (one of ``SITES`` or ``GLOBAL_SITES``) at ``layer``."""
    if site in GLOBAL_SITES:
        return GLOBAL_SITES[site]
    if site not in SITES:
        choices = ", ".join([*SITES, *GLOBAL_SITES])
        raise InterpError(f"unknown site {site!r}: choose one of {choices}")
    if layer is None:
        raise InterpError(f"site {site!r} needs a layer")
    return SITES[site].format(layer=layer)


class NeuronId(NamedTuple):
    """An MLP neuron: ``NeuronId(layer, index)``, written ``L.N`` (e.g. ``12.345``)."""

    layer: int
    index: int

    def __str__(self) -> str:
        return f"{self.layer}.{self.index}"

    @property
    def hook(self) -> str:
        return hook_name("mlp_post", self.layer)

    @classmethod
    def parse(cls, text: str) -> "NeuronId":
        """Parse ``"L.N"`` (also ``"L/N"`` or ``"L:N"``)."""
        m = re.fullmatch(r"\s*(\d+)\s*[./:]\s*(\d+)\s*", str(text))
        if not m:
            raise InterpError(f"cannot read neuron {text!r}: write it as LAYER.INDEX, e.g. 12.345")
        return cls(int(m.group(1)), int(m.group(2)))
