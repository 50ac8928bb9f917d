"""Generation with the HF model's KV cache. Hooks attached to the bridge fire at
every step (the bridge's modules sit inside the HF module tree), so a clamp held
around ``generate`` applies to every generated token too."""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor


@torch.no_grad()
def generate(model, tokens: Int[Tensor, "batch pos"], n_new: int, temperature: float = 0.0,
             generator: torch.Generator | None = None, on_step=None) -> Int[Tensor, "batch n_new"]:
    """Greedy (``temperature=0``) or sampled continuation; returns the new tokens only. ``on_step(n)`` is
    called after each step with the tokens it wrote (``batch``), e.g. to move a progress bar."""
    with model.lock:
        return _generate(model.hf_model, tokens, n_new, temperature, generator, on_step)


def _generate(hf, tokens, n_new: int, temperature: float, generator, on_step=None):
    out = hf(tokens, use_cache=True)
    past, logits = out.past_key_values, out.logits[:, -1]
    new = []
    for _ in range(n_new):
        if temperature > 0:
            probs = torch.softmax(logits.float() / temperature, -1).cpu()
            nxt = torch.multinomial(probs, 1, generator=generator).to(tokens.device)
        else:
            nxt = logits.argmax(-1, keepdim=True)
        new.append(nxt)
        if on_step is not None:
            on_step(nxt.shape[0])
        out = hf(nxt, past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1]
    return torch.cat(new, dim=1) if new else tokens[:, :0]
