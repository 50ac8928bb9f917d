"""Diff two models neuron by neuron: which neurons' weights and activations an edit changed most.

``diff_models(base, edited)`` compares two models of the same shape (a base model and an
unlearning edit, an instruct model and its edit, two checkpoints): per neuron, the relative
change ``|W_b - W_a| / |W_a|`` of its gate row, up row and down column, and, when both models
have a stored atlas, the change of its typical activation (RMS over the atlas corpus)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from interp.errors import InterpError
from interp.result import Result


def _shape(model) -> tuple[int, int, int, bool]:
    return model.n_layers, model.d_model, model.d_mlp, model.is_glu


def check_same_shape(a, b) -> None:
    if _shape(a) != _shape(b):
        def say(m):
            return f"{m.spec} ({m.n_layers} layers, d_model {m.d_model}, d_mlp {m.d_mlp}{', GLU' if m.is_glu else ''})"
        raise InterpError(f"cannot diff {say(a)} and {say(b)}: their neurons do not line up; "
                          "diff two specs of the same architecture (a model and its edit)")


def _rows(model, layer: int) -> dict[str, torch.Tensor]:
    w = model.weights
    out = {"up": w.W_in[layer], "down": w.W_out[layer].T}
    if model.is_glu:
        out["gate"] = w.W_gate[layer]
    return {k: v.detach().float().cpu() for k, v in out.items()}


@torch.no_grad()
def diff_models(a, b, atlas_a: Result | None = None, atlas_b: Result | None = None, k: int = 50) -> pd.DataFrame:
    """The ``k`` neurons whose weights changed most between models ``a`` and ``b`` (all when k=0):
    layer, neuron, d_gate, d_up, d_down (relative changes), d_weights (their max) and, with both
    atlases, rms_a, rms_b and d_act (relative change of the typical |activation|)."""
    check_same_shape(a, b)
    parts = []
    for layer in range(a.n_layers):
        ra, rb = _rows(a, layer), _rows(b, layer)
        df = pd.DataFrame({"layer": layer, "neuron": np.arange(a.d_mlp)})
        for part in ra:
            df[f"d_{part}"] = ((rb[part] - ra[part]).norm(dim=1) / ra[part].norm(dim=1).clamp(min=1e-12)).numpy()
        parts.append(df)
    out = pd.concat(parts, ignore_index=True)
    out["d_weights"] = out[[c for c in out.columns if c.startswith("d_")]].max(axis=1)
    if atlas_a is not None and atlas_b is not None:
        def rms(atlas):
            s = atlas.table("neurons")
            return pd.Series(np.sqrt(s["var"] + s["mean"] ** 2).to_numpy(),
                             index=pd.MultiIndex.from_arrays([s.layer, s.neuron]))
        idx = pd.MultiIndex.from_arrays([out.layer, out.neuron])
        out["rms_a"], out["rms_b"] = rms(atlas_a).reindex(idx).to_numpy(), rms(atlas_b).reindex(idx).to_numpy()
        out["d_act"] = (out.rms_b - out.rms_a) / out.rms_a.where(out.rms_a > 0)
    out = out.sort_values("d_weights", ascending=False, kind="stable").reset_index(drop=True)
    return out.head(k) if k else out
