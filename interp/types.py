"""The axis vocabulary, declared once, and the jaxtyping aliases built from it.

Axes (the names used in every shape annotation in interp):

- ``batch``   prompts or corpus windows processed together
- ``pos``     token positions within a sequence
- ``d_model`` the residual stream
- ``d_mlp``   the neurons of one MLP block ("neuron" indexes this axis)
- ``d_vocab`` the tokenizer's vocabulary
- ``layer``   transformer blocks, 0-based
- ``neuron``  a flat list of selected neurons (e.g. the rows of a decoding table)
- ``head``    attention heads

Weight layout follows ``torch.nn.Linear`` (``[out, in]``), which is how the papers
and issues write it:

- ``W_in[l]``, ``W_gate[l]``: ``[d_mlp, d_model]`` - row ``n`` is what neuron ``n`` reads;
- ``W_out[l]``: ``[d_model, d_mlp]`` - column ``n`` is what neuron ``n`` writes;
- ``W_U``: ``[d_model, d_vocab]`` - column ``t`` is token ``t``'s unembedding;
- ``W_E``: ``[d_vocab, d_model]`` - row ``t`` is token ``t``'s embedding.
"""

from __future__ import annotations

from jaxtyping import Float, Int
from torch import Tensor

Tokens = Int[Tensor, "batch pos"]
Logits = Float[Tensor, "batch pos d_vocab"]
Resid = Float[Tensor, "batch pos d_model"]
NeuronActs = Float[Tensor, "batch pos d_mlp"]
WeightIn = Float[Tensor, "d_mlp d_model"]
WeightOut = Float[Tensor, "d_model d_mlp"]
Unembed = Float[Tensor, "d_model d_vocab"]
Embed = Float[Tensor, "d_vocab d_model"]

__all__ = [
    "Embed",
    "Logits",
    "NeuronActs",
    "Resid",
    "Tokens",
    "Unembed",
    "WeightIn",
    "WeightOut",
]
