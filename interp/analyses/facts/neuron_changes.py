"""What an edit changed, neuron by neuron: the relative change of each neuron's gate row, up row and down
column, and of its mean last-token activation on the forget and the retain prompts (the card's "Unlearning
edits" section reads the table this writes)."""

from __future__ import annotations

import pandas as pd
from torch import Tensor

from interp.analyses.facts import rank_one as r1


def last_token_acts(model, items, layers: list[int]) -> Tensor:
    """The mean activation of every neuron of ``layers`` at the prompts' last token: ``[layer, d_mlp]``."""
    return r1.acts_at(model, [it.prompt for it in items], layers).mean(1).cpu()


def neuron_weights(model, layer: int) -> dict[str, Tensor]:
    """One layer's per-neuron weights as rows: gate and up (what neuron n reads), down (what it writes)."""
    w = model.weights
    out = {"up": w.W_in[layer], "down": w.W_out[layer].T}
    if model.is_glu:
        out["gate"] = w.W_gate[layer]
    return {k: v.detach().float().cpu().clone() for k, v in out.items()}


def neuron_changes(model, variant: str, layers: list[int], weights_before: dict, acts_before: dict,
                   forget, retain) -> pd.DataFrame:
    """Per neuron of ``layers`` (the run passes every layer): the relative change of its gate row, up
    row and down column (``|dW| / |W|``) and its mean last-token activation on the forget and the retain facts,
    before and after the edit."""
    after = {"forget": last_token_acts(model, forget, layers), "retain": last_token_acts(model, retain, layers)}
    parts = []
    for i, layer in enumerate(layers):
        now = neuron_weights(model, layer)
        df = pd.DataFrame({"variant": variant, "layer": layer, "neuron": range(model.d_mlp)})
        for part, before in weights_before[layer].items():
            df[f"d_{part}"] = ((now[part] - before).norm(dim=1) / before.norm(dim=1).clamp(min=1e-12)).numpy()
        for split in ("forget", "retain"):
            df[f"act_{split}_before"] = acts_before[split][i].numpy()
            df[f"act_{split}_after"] = after[split][i].numpy()
        parts.append(df)
    return pd.concat(parts, ignore_index=True)
