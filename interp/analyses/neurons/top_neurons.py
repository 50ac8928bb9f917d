"""Top neurons: which MLP neurons write the predicted token, directly.

For one prompt and a target token (default: the model's own top prediction), every
neuron of every layer gets its direct logit attribution at the last position,
``act_n * s * (W_out[:, n] . (w * W_U[:, target]))``, with the final norm's scale
``s`` frozen (see ``interp.metrics``). This is the neuron-level direct effect used by
Geva et al. (2022) and the factual-recall decomposition (Lv et al., 2024); it
ignores what a neuron does through later layers.

It is the quick first analysis: one forward pass, any model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pandas as pd
import torch

from interp.analyses.base import register
from interp.metrics import direct_logit, dla_tolerance, final_scale, neuron_dla_at, unembed_dirs
from interp.names import hook_name
from interp.result import Config, Result, option, provenance
from interp.tracing.hooks import record


@dataclass(frozen=True)
class TopNeuronsConfig(Config):
    prompt: str = option("The capital of France is", "the prompt", flags=("-p",))
    target: str = option("", "token text, e.g. ' Paris' (default: top prediction)", flags=("-t",))
    top_k: int = option(20, "neurons listed", flags=("-k",), min=1)



@register("top_neurons", TopNeuronsConfig)
@torch.no_grad()
def run(model, config: TopNeuronsConfig) -> Result:
    """Direct logit attribution of every neuron at the last position of one prompt."""
    tokens = model.to_tokens(config.prompt)
    sites = [hook_name(s, l) for l in range(model.n_layers) for s in ("mlp_post", "mlp_raw_out", "mlp_out")]
    sites.append(hook_name("final_in"))
    with record(model, sites) as acts:
        logits = model(tokens)[0, -1]
    probs = logits.float().softmax(-1)
    target = model.token_id(config.target) if config.target else int(logits.argmax())
    scale = final_scale(model, acts[hook_name("final_in")][0, -1])
    dirs = unembed_dirs(model, torch.tensor([target], device=model.device))
    per_layer = torch.stack([neuron_dla_at(model, acts, l, (0, -1), dirs)[:, 0]
                             for l in range(model.n_layers)])  # [layer, d_mlp]
    # run-time check: the neurons (plus b_out where it is added as it is) sum to each MLP's own DLA
    whole = sum(float(direct_logit(model, acts[hook_name("mlp_out", l)][0, -1], scale, dirs)[0])
                for l in range(model.n_layers))
    bias = sum(float(direct_logit(model, model.weights.b_out[l], scale, dirs)[0]) for l in range(model.n_layers)
               if model.weights.b_out[l] is not None and model.weights.mlp_post_norm[l] is None)
    residual = float(per_layer.sum()) + bias - whole
    if abs(residual) > dla_tolerance(whole, model.dtype):
        warnings.warn(f"the neurons' DLA misses the MLPs' by {residual:.3g} on {model.spec}: the per-neuron "
                      "decomposition is not exact for this architecture", stacklevel=2)
    act_last = torch.stack([acts[hook_name("mlp_post", l)][0, -1] for l in range(model.n_layers)])
    layer_idx, neuron_idx = torch.meshgrid(torch.arange(model.n_layers, device="cpu"),
                                           torch.arange(model.d_mlp, device="cpu"), indexing="ij")
    table = pd.DataFrame({
        "layer": layer_idx.flatten().numpy(),
        "neuron": neuron_idx.flatten().numpy(),
        "activation": act_last.flatten().float().cpu().numpy(),
        "dla": per_layer.flatten().float().cpu().numpy(),
    })
    top = table.reindex(table.dla.abs().sort_values(ascending=False).index).head(config.top_k)
    total = float(per_layer.sum())
    return Result(
        analysis="top_neurons",
        config=config,
        provenance=provenance(model, config),
        tables={"neurons": table, "top": top.reset_index(drop=True),
                "layers": table.groupby("layer", as_index=False).dla.sum()},
        tensors={"dla": per_layer.cpu()},
        metrics={
            "target": model.token_str(target),
            "target_id": target,
            "target_prob": float(probs[target]),
            "target_logit": float(logits[target]),
            "neurons_total_dla": total,
            # signed contributions cancel, so the share is of the absolute direct effect
            "top_k_abs_share": float(top.dla.abs().sum() / table.dla.abs().sum()),
            "prompt_tokens": model.to_str_tokens(config.prompt),
            "dla_residual": residual,  # sum of neuron DLAs + b_out - the MLPs' DLA (0 up to float error)
        },
    )
