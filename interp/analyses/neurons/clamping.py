"""Clamping neurons: the decoding paper's causal check, and a generation probe.

``clamp`` holds chosen neurons at a value (at every position, and through
generation) and reports, per prompt, each target token's probability before and
after, plus greedy generations with and without the clamp.

``concept_experiment`` (``concept.py``) is the paper's experiment end to end: take a concept token,
find the neuron whose output direction promotes it most (the decoding Result's
inverted index; ``side="up"`` picks by up-projection decoding, as the paper does),
clamp it to ``multiple`` x its largest activation magnitude seen on a reference corpus
(``stdlib-docs``, 4,096 tokens, stated in the Result), with the sign that promotes
the concept (positive: the top lists are for positive activations), and measure
P(concept) on neutral prompts and the drift of generations toward it.

Why the magnitude and not the signed maximum: GLU neurons are signed and many are
negative almost everywhere (SmolLM2's 29.645, the top output-side neuron for
" Paris", never exceeds -0.26 on stdlib-docs), so "2 x max" would clamp them to a
negative value that suppresses the concept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch

from interp.analyses.base import register
from interp.errors import InterpError, require_finite
from interp.models.generation import generate
from interp.names import hook_name
from interp.result import Config, Result, option, provenance
from interp.tracing import clamp as clamp_hooks
from interp.tracing import record

NEUTRAL_PROMPTS = (
    "Let me tell you about",
    "My favourite thing in the world is",
    "Yesterday I saw a",
    "The story begins with",
    "Here is a short poem about",
    "I have always wanted to",
)


@dataclass(frozen=True)
class ClampConfig(Config):
    neurons: tuple[str, ...] = option(("29.1066",), "LAYER.INDEX (repeatable, or comma-separated)",
                                      flags=("--neuron", "-n"), nonempty=True)
    value: float = option(0.0, "the activation to hold them at", flags=("-v",))
    prompts: tuple[str, ...] = option(NEUTRAL_PROMPTS, "prompts (repeatable)", flags=("--prompt", "-p"), split=False,
                                      nonempty=True)
    targets: tuple[str, ...] = option((), "tokens to track (repeatable; default: the first prompt's top prediction)",
                                      flags=("--target", "-t"), split=False)
    generate: int = option(20, "greedy tokens to generate, clamp held", flags=("-g",), min=0)



@torch.no_grad()
def _before_after(model, tokens, neurons, value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token log-probs at the last position, without and with the clamp."""
    before = model(tokens)[0, -1].float().log_softmax(-1)
    final = hook_name("final_in")
    with clamp_hooks(model, neurons, value), record(model, [final]) as acts:
        after = model(tokens)[0, -1].float().log_softmax(-1)
    # an overflowing residual (its mean square is inf) leaves NaN, or a flat distribution that looks like an answer
    require_finite(f"the model's output with the clamp at {value:g}",
                   [after, acts[final].float().pow(2).mean(-1)],
                   "the value overflows the model; clamp to a value within a few times the neuron's range")
    return before, after


def clamped_generation(model, tokens, neurons, value: float, n_new: int) -> tuple[str, str]:
    """Greedy continuations without and with the clamp held at every step."""
    plain = generate(model, tokens, n_new)
    with clamp_hooks(model, neurons, value):
        clamped = generate(model, tokens, n_new)
    return model.tokenizer.decode(plain[0]), model.tokenizer.decode(clamped[0])


def clamp_effect(model, neurons, value: float, prompts, targets,
                 n_generate: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per prompt and target: P before and after clamping; and generations."""
    neurons = [model.check_neuron(n) for n in neurons]
    if not prompts:
        raise InterpError("no prompts given")
    target_ids = [model.token_id(t) for t in targets]
    rows, gens = [], []
    for prompt in prompts:
        tokens = model.to_tokens(prompt)
        before, after = _before_after(model, tokens, neurons, value)
        for target, tid in zip(targets, target_ids):
            rows.append({"prompt": prompt, "target": target, "p_before": float(before[tid].exp()),
                         "p_after": float(after[tid].exp()), "logp_before": float(before[tid]),
                         "logp_after": float(after[tid]),
                         "rank_after": int((after > after[tid]).sum())})
        if n_generate:
            plain, clamped = clamped_generation(model, tokens, neurons, value, n_generate)
            gens.append({"prompt": prompt, "before": plain, "after": clamped})
    return pd.DataFrame(rows), pd.DataFrame(gens, columns=["prompt", "before", "after"])


def next_token_table(model, prompt: str, neurons, value: float, k: int = 10) -> pd.DataFrame:
    """The union of the top-``k`` next tokens before and after clamping, with both probabilities."""
    neurons = [model.check_neuron(n) for n in neurons]
    before, after = (lp.exp() for lp in _before_after(model, model.to_tokens(prompt), neurons, value))
    ids = list(dict.fromkeys(before.topk(k).indices.tolist() + after.topk(k).indices.tolist()))
    return pd.DataFrame({"token": [model.token_str(i) for i in ids], "token_id": ids,
                         "p_before": before[ids].tolist(), "p_after": after[ids].tolist()})


@register("clamp", ClampConfig)
def run(model, config: ClampConfig) -> Result:
    """Clamp neurons to a value and measure target probabilities and generations."""
    targets = config.targets
    if not targets:  # the model's own top prediction on the first prompt
        with torch.no_grad():
            targets = (model.token_str(int(model(model.to_tokens(config.prompts[0]))[0, -1].argmax())),)
    probs, gens = clamp_effect(model, config.neurons, config.value, config.prompts, targets, config.generate)
    return Result(analysis="clamp", config=config, provenance=provenance(model, config),
                  tables={"probs": probs, "generations": gens}, metrics=clamp_metrics(probs, gens, targets))


def clamp_metrics(probs: pd.DataFrame, gens: pd.DataFrame, targets) -> dict:
    mentions = {t: float(gens.after.str.contains(t.strip(), regex=False).mean()) if len(gens) else None
                for t in targets}
    return {
        "mean_p_before": float(probs.p_before.mean()),
        "mean_p_after": float(probs.p_after.mean()),
        "mean_logp_gain": float((probs.logp_after - probs.logp_before).mean()),
        "frac_prompts_raised": float((probs.p_after > probs.p_before).mean()),
        "generations_mentioning_target": mentions,
    }


def sweep_values(peak: float, n: int = 9, multiple: float = 4.0) -> list[float]:
    """``n`` clamp values from ``-multiple x peak`` to ``+multiple x peak`` (0 included when ``n`` is odd)."""
    if not math.isfinite(peak) or peak <= 0:
        peak = 1.0
    return torch.linspace(-multiple * peak, multiple * peak, n, device="cpu").tolist()


@torch.no_grad()
def dose_response(model, neurons, target: str, values, prompts=NEUTRAL_PROMPTS) -> pd.DataFrame:
    """For each clamp value: the mean change of log p(``target``) at the next token over ``prompts``,
    the mean KL(unclamped || clamped) of the next-token distribution (large where the clamp breaks
    the model rather than steers it), and the mean p(target). One batched forward per value."""
    values = [float(v) for v in values]
    if not values:
        raise InterpError("no clamp values given: pass at least one number")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise InterpError(f"clamp value {bad[0]} is not a finite number: give finite values (e.g. -20,0,20)")
    neurons = [model.check_neuron(n) for n in neurons]
    tid = model.token_id(target)
    batch = model.batch(list(prompts))
    rows = torch.arange(len(batch.lengths), device=batch.tokens.device)

    def last_logp():
        return model(batch.tokens)[rows, batch.lengths - 1].float().log_softmax(-1)

    base = last_logp()
    out = []
    for value in values:
        with clamp_hooks(model, neurons, value):
            logp = last_logp()
        finite = bool(torch.isfinite(logp).all())
        kl = (base.exp() * (base - logp)).sum(-1) if finite else torch.full((len(rows),), torch.nan, device=base.device)
        out.append({"value": value, "dlogp": float((logp[:, tid] - base[:, tid]).mean()), "kl": float(kl.mean()),
                    "p_target": float(logp[:, tid].exp().mean()), "p_target_before": float(base[:, tid].exp().mean()),
                    "finite": finite})
    return pd.DataFrame(out)
