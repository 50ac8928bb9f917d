"""Mitigating final-layer suppression of correct answers ("anti-overconfidence", Lv et al., 2024).

The protocol, with a train/held-out split of the facts (drawn under ``seed``):

1. On the **train** facts the model answers correctly, measure at the last position each
   candidate's direct effect on the answer's log-probability, to first order: its DLA on
   ``W_U[:, answer] - W_U p`` (the answer's logit against the expected logit under the
   model's own prediction ``p``; final-norm scale frozen). Candidates: the final layer's MLP
   (``target="mlp"``), its attention (``"attn"``), or each of its neurons
   (``"neurons"``: the ``k`` with the most negative mean effect are selected).
2. The claim: scaling a component with a negative mean effect down by ``scale`` (0:
   remove it) raises the answer's probability; with a positive effect, it lowers it.
3. On the **held-out** facts, apply the scaling at every position and measure the
   answer's probability and top-1 accuracy, before and after.
4. The side cost: the LM loss (mean next-token cross-entropy) on ``corpus``, before and
   after, with the same scaling.

Nothing is tuned on the held-out facts: ``k`` and ``scale`` are inputs. The first-order
effect ignores the change of the final norm's scale, so the held-out direction is measured,
not assumed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from interp.analyses.base import register
from interp.datasets.corpus import window_tensor
from interp.datasets.prompts import load_facts, unique_facts
from interp.errors import InterpError
from interp.metrics import direct_logit, final_scale, lm_loss, neuron_dla_at, score_facts
from interp.names import hook_name
from interp.result import Config, Result, option, provenance
from interp.tracing import Write, intervene, record

TARGETS = ("neurons", "mlp", "attn")


@dataclass(frozen=True)
class FixConfig(Config):
    facts: str = option("builtin:capitals",
                        "builtin:capitals|languages|city_country|makers, or a facts JSONL", flags=("-f",))
    target: str = option("neurons", "neurons, mlp or attn of the final layer", choices=TARGETS)
    layer: int = option(-1, "-1: the final layer")
    k: int = option(10, "suppressing neurons to scale (target=neurons)", flags=("-k",), min=1)
    scale: float = option(0.0, "multiply the target's output by this (0: ablate; -1: flip; at most ±100, beyond "
                          "which the final norm divides the scaled write away)", min=-100, max=100)
    train_fraction: float = option(0.5, "share of facts that choose the neurons; the rest is held out", min=0.05,
                                   max=0.95)
    corpus: str = option("stdlib-docs", "text for the LM-loss side cost")
    corpus_tokens: int = option(4096, "tokens of that text", min=1)
    seq_len: int = option(128, "tokens per corpus window", min=2)
    batch_size: int = option(32, "prompts per forward pass", min=1)


def _last_effects(model, facts_df: pd.DataFrame, layer: int, batch_size: int) -> dict[str, Tensor]:
    """Per fact, the direct effect on (answer - mean logit) of the layer's MLP, attention and each neuron."""
    W_U_n = model.weights.W_U_normed().float()
    sites = [hook_name("mlp_post", layer), hook_name("mlp_out", layer), hook_name("attn_out", layer),
             hook_name("final_in"), hook_name("mlp_raw_out", layer)]
    out: dict[str, list] = {"neurons": [], "mlp": [], "attn": []}
    for start in range(0, len(facts_df), batch_size):
        chunk = facts_df.iloc[start:start + batch_size]
        batch = model.batch(chunk.prompt.tolist())
        rows = torch.arange(len(chunk), device=model.device)
        with torch.no_grad(), record(model, sites) as acts:
            probs = model(batch.tokens)[rows, batch.last].float().softmax(-1)
        at = {s: acts[s][rows, batch.last] for s in sites}
        for i, answer in enumerate(chunk.answer_id.tolist()):
            # d log P(answer) / d logits = onehot(answer) - p: the answer against the expected logit
            d = (W_U_n[:, answer] - W_U_n @ probs[i])[:, None]
            scale = final_scale(model, at[sites[3]][i])
            out["neurons"].append(neuron_dla_at(model, at, layer, i, d)[:, 0])  # post-norm scale frozen (Gemma)
            out["mlp"].append(direct_logit(model, at[sites[1]][i], scale, d)[0])
            out["attn"].append(direct_logit(model, at[sites[2]][i], scale, d)[0])
    return {k: torch.stack(v) for k, v in out.items()}


def scaling_writes(model, target: str, layer: int, scale: float, neurons: list[int] | None = None) -> list[Write]:
    """Writes that multiply the target's output by ``scale`` at every position."""
    if target == "neurons":
        return [Write(hook_name("mlp_post", layer), units=list(neurons or []), scale=scale)]
    return [Write(hook_name("mlp_out" if target == "mlp" else "attn_out", layer), scale=scale)]


@register("factual_fix", FixConfig)
def run(model, config: FixConfig) -> Result:
    """Scale down final-layer components that suppress correct answers; measure held-out gain and LM-loss cost."""
    layer = model.check_layer(config.layer + model.n_layers if config.layer < 0 else config.layer)
    facts, duplicates = unique_facts(load_facts(config.facts))  # a repeated fact would leak into held-out
    scored = score_facts(model, facts, config.batch_size)
    order = list(range(len(scored)))
    random.Random(config.seed).shuffle(order)
    cut = int(round(config.train_fraction * len(order)))
    train, held = scored.iloc[sorted(order[:cut])], scored.iloc[sorted(order[cut:])]
    train_known = train[train.correct]
    if train_known.empty or held.empty:
        raise InterpError(f"need correctly answered train facts and held-out facts; got {len(train_known)} and "
                          f"{len(held)} of {len(scored)} (use more facts or another train_fraction)")
    effects = _last_effects(model, train_known, layer, config.batch_size)
    neurons = None
    if config.target == "neurons":
        mean = effects["neurons"].mean(0)
        neurons = mean.argsort()[: config.k].tolist()
        effect = float(mean[neurons].sum())
    else:
        effect = float(effects[config.target].mean())
    claim = "up" if (effect < 0) == (config.scale < 1) else "down"
    writes = scaling_writes(model, config.target, layer, config.scale, neurons)
    with intervene(model, writes):
        after = score_facts(model, [facts[i] for i in held.index], config.batch_size).set_index(held.index)
    table = held[["prompt", "answer", "correct", "p_answer"]].join(
        after[["correct", "p_answer", "predicted"]].rename(columns=lambda c: f"{c}_after"))
    table["gain"] = table.p_answer_after - table.p_answer
    windows = window_tensor(model, config.corpus, config.seq_len, config.corpus_tokens)
    loss_before = lm_loss(model, windows, config.batch_size)
    loss_after = lm_loss(model, windows, config.batch_size, writes)
    gain = float(table.gain.mean())
    metrics = {
        "target": config.target, "layer": layer, "neurons": [f"{layer}.{n}" for n in neurons or []],
        "train_facts": len(train), "train_correct": len(train_known), "held_out_facts": len(held),
        "duplicates_dropped": duplicates,
        "train_effect_on_answer": effect, "claimed_direction": claim,
        "held_out_p_before": float(table.p_answer.mean()), "held_out_p_after": float(table.p_answer_after.mean()),
        "held_out_mean_gain": gain, "held_out_share_improved": float((table.gain > 0).mean()),
        "held_out_acc_before": float(table.correct.mean()), "held_out_acc_after": float(table.correct_after.mean()),
        "corpus_loss_before": loss_before, "corpus_loss_after": loss_after,
        "corpus_loss_change": loss_after / loss_before - 1, "corpus_tokens": int(windows.numel()),
    }
    held_dir = "up" if gain > 0 else "down"
    notes = [f"Scaling {config.target} of layer {layer} by {config.scale} (first-order train effect {effect:+.3f} "
             f"on log P(answer)) claims P(answer) goes {claim}; on {len(held)} held-out facts it went {held_dir} "
             f"({metrics['held_out_p_before']:.3f} → {metrics['held_out_p_after']:.3f}); LM loss on "
             f"{config.corpus} changed by {metrics['corpus_loss_change']:+.1%}."]
    if duplicates:
        notes.append(f"{duplicates} repeated fact(s) (same prompt and answer) were dropped before the split.")
    return Result(analysis="factual_fix", config=config, provenance=provenance(model, config),
                  tables={"held_out": table.reset_index(names="fact"),
                          "train_effects": pd.DataFrame({"neuron": range(model.d_mlp),
                                                         "mean_effect": effects["neurons"].mean(0).tolist()})},
                  metrics=metrics, notes=notes)
