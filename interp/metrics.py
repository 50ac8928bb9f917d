"""Metrics on logits and the direct-logit-attribution (DLA) arithmetic.

DLA reads a residual-stream component ``v`` straight through the unembedding with
the final norm's per-position scale frozen at its value on this input:

- RMSNorm: ``logit_t(v) = s * (v . (w * W_U[:, t]))`` with ``s = 1/sqrt(mean(x^2)+eps)``;
- LayerNorm: ``logit_t(v) = s * ((v - mean(v)) . (w * W_U[:, t]))``, ``s = 1/sqrt(var(x)+eps)``;

where ``x`` is the final residual and ``w`` the norm's effective gain (``1 + w`` for Gemma).
Summed over every component (embeddings, each attention and MLP output, as the bridge's
``hook_attn_out``/``hook_mlp_out`` give them: after any post-norm) this gives the logit minus
the norm bias and ``b_U`` terms. With Gemma 2's final-logit softcap the sum is the logit
*before* the cap (``cap * atanh(logit / cap)``); see ``precap_logit``.

Where a block normalises the MLP's (or attention's) output before adding it (Gemma 2/3,
OLMo 2: ``g ⊙ y / rms(y)``), a neuron's (or head's) share is read with that norm's scale
``1/rms(y)`` frozen too (``post_scale``), so neurons still sum exactly to ``hook_mlp_out``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.errors import InterpError
from interp.names import hook_name
from interp.tracing import intervene


def logit_diff(logits: Float[Tensor, "batch d_vocab"], answer: Int[Tensor, " batch"],
               wrong: Int[Tensor, " batch"]) -> Float[Tensor, " batch"]:
    """``logit[answer] - logit[wrong]`` per row."""
    return logits.gather(-1, answer[:, None])[:, 0] - logits.gather(-1, wrong[:, None])[:, 0]


def answer_prob(logits: Float[Tensor, "batch d_vocab"], answer: Int[Tensor, " batch"]) -> Float[Tensor, " batch"]:
    return logits.float().softmax(-1).gather(-1, answer[:, None])[:, 0]


def kl_div(logits_p: Float[Tensor, "batch d_vocab"],
           logits_q: Float[Tensor, "batch d_vocab"]) -> Float[Tensor, " batch"]:
    """``KL(p || q)`` per row, from logits."""
    logp, logq = logits_p.float().log_softmax(-1), logits_q.float().log_softmax(-1)
    return (logp.exp() * (logp - logq)).sum(-1)


def final_scale(model, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... 1"]:
    """The final norm's input-dependent scale ``s`` at each position."""
    return model.weights.final_norm.scale(resid)


def post_scale(model, layer: int, raw: Float[Tensor, "... d_model"], part: str = "mlp") -> Float[Tensor, "... 1"]:
    """The scale ``1/rms(y)`` of layer ``layer``'s post-norm at each position, from the block part's raw
    output ``y`` (``mlp_raw_out``/``attn_raw_out``); ones where the architecture adds the output as it is."""
    norm = (model.weights.mlp_post_norm if part == "mlp" else model.weights.attn_post_norm)[layer]
    return torch.ones_like(raw[..., :1], dtype=torch.float32) if norm is None else norm.scale(raw)


def precap_logit(model, logits: Tensor) -> Tensor:
    """The logit before Gemma 2's final softcap (``cap * atanh(logit / cap)``): what components sum to."""
    cap = model.weights.logit_softcap
    if cap is None:
        return logits
    return cap * torch.atanh((logits.double() / cap).clamp(-1 + 1e-12, 1 - 1e-12)).to(logits.dtype)


def unembed_dirs(model, tokens: Int[Tensor, " n"]) -> Float[Tensor, "d_model n"]:
    """``w * W_U[:, t]`` for each token: the direction a component must point along
    to raise that logit, with the final norm's weight folded in."""
    return model.weights.W_U_normed()[:, tokens]


def direct_logit(model, component: Float[Tensor, "... d_model"], scale: Float[Tensor, "... 1"],
                 dirs: Float[Tensor, "d_model n"]) -> Float[Tensor, "... n"]:
    """DLA of a residual component on each direction in ``dirs`` (see module docstring)."""
    v = component.float()
    if model.weights.final_norm.kind == "layer":
        v = v - v.mean(-1, keepdim=True)
    return (v * scale) @ dirs.float()


def neuron_dla(model, layer: int, acts: Float[Tensor, "... d_mlp"], scale: Float[Tensor, "... 1"],
               dirs: Float[Tensor, "d_model n"], post: Float[Tensor, "... 1"] | None = None
               ) -> Float[Tensor, "... d_mlp n"]:
    """Each neuron's direct contribution: ``act_n * s * (W_write[:, n] . dir)``, times the MLP
    post-norm's frozen scale ``post`` where there is one (see ``post_scale``); LayerNorm: columns
    centred. Sums over neurons to the DLA of the MLP output without its bias ``b_out``."""
    W = model.weights.W_write(layer).float()  # [d_model, d_mlp]
    if model.weights.final_norm.kind == "layer":
        W = W - W.mean(0, keepdim=True)
    per_neuron = W.T @ dirs.float()  # [d_mlp, n]
    if post is not None:
        scale = scale * post
    return acts.float()[..., :, None] * scale[..., None] * per_neuron


def neuron_dla_at(model, acts: dict, layer: int, at, dirs: Float[Tensor, "d_model n"]) -> Float[Tensor, "... d_mlp n"]:
    """Per-neuron DLA read from a ``record``-ed forward: ``acts`` holds ``mlp_post``/``mlp_raw_out`` of
    ``layer`` and ``final_in``; ``at`` indexes the positions (e.g. ``(rows, last)`` or ``(0, -1)``). The
    final norm's and any MLP post-norm's scales are frozen at their values there (``neuron_dla``)."""
    scale = final_scale(model, acts[hook_name("final_in")][at])
    post = post_scale(model, layer, acts[hook_name("mlp_raw_out", layer)][at])
    return neuron_dla(model, layer, acts[hook_name("mlp_post", layer)][at], scale, dirs, post)


def dla_sites(model, layers) -> list[str]:
    """The hook names ``neuron_dla_at`` reads for these layers."""
    return [hook_name(s, l) for l in layers for s in ("mlp_post", "mlp_raw_out")] + [hook_name("final_in")]


def lm_loss(model, windows: Int[Tensor, "batch pos"], batch_size: int = 32, writes=()) -> float:
    """Mean next-token cross-entropy over ``windows`` (with intervention ``writes`` applied, e.g. a fix)."""
    total, count = 0.0, 0
    with torch.no_grad(), intervene(model, writes):
        for start in range(0, len(windows), batch_size):
            w = windows[start:start + batch_size].to(model.device)
            logits = model(w)[:, :-1].float()
            total += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(), reduction="sum"))
            count += w[:, 1:].numel()
    return total / count


def head_outputs(model, layer: int, z: Float[Tensor, "... head d_head"],
                 post: Float[Tensor, "... 1"] | None = None) -> Float[Tensor, "... head d_model"]:
    """Each head's write into the residual stream, ``z_h @ W_O[:, h]^T`` (through the attention
    post-norm's gain and frozen scale ``post`` where there is one); they sum to the attention
    output less its bias ``b_O``."""
    W_O = model.weights.W_O[layer].float()  # [d_model, n_heads * d_head]
    out = torch.einsum("...hd,mhd->...hm", z.float(), W_O.view(W_O.shape[0], z.shape[-2], z.shape[-1]))
    norm = model.weights.attn_post_norm[layer]
    if norm is None:
        return out
    if post is None:
        raise ValueError(f"layer {layer} norms its attention output: pass its frozen scale (post_scale)")
    return out * (1.0 if norm.weight is None else norm.weight.float()) * post[..., None, :]


DLA_TOLERANCE = 1e-3  # |sum of components - logit| above this times (1 + |logit|) is warned about


def dla_tolerance(logit_size: float, dtype=None) -> float:
    """The decomposition tolerance for logits of magnitude up to ``logit_size``: float32 sums by default; a
    16-bit dtype rounds each part to 8 (bfloat16) or 11 (float16) bits, so its tolerance scales with its eps."""
    import torch

    scale = 1.0 if dtype in (None, torch.float32, torch.float64) else float(torch.finfo(dtype).eps) / 1.2e-4
    return DLA_TOLERANCE * scale * (1 + abs(logit_size))


# --- answers and agreement ----------------------------------------------------------------------

def score_facts(model, facts, batch_size: int = 32, want: int | None = None) -> pd.DataFrame:
    """One row per fact (``interp.datasets.prompts.Fact``): the answer's first token, the model's prediction,
    and whether it is right (rank 0). With ``want``, scoring stops once that many are right (a long file is
    not scored whole to take a few of its facts)."""
    from tqdm.auto import tqdm

    if not facts:
        raise InterpError("no facts given: the facts file is empty")
    rows = []
    bar = tqdm(total=len(facts), desc="scoring facts", unit="fact", leave=False, disable=len(facts) <= 4 * batch_size)
    for start in range(0, len(facts), batch_size):
        if want is not None and sum(r["correct"] for r in rows) >= want:
            break
        bar.update(min(batch_size, len(facts) - start))
        chunk = facts[start:start + batch_size]
        batch = model.batch([f.prompt for f in chunk])
        with torch.no_grad():
            logits = model(batch.tokens)[torch.arange(len(chunk), device=model.device), batch.last].float()
        probs = logits.softmax(-1)
        for i, f in enumerate(chunk):
            ids = model.continuation(f.prompt, f.answer)  # the answer as it follows the prompt
            answer = ids[0]
            rank = int((logits[i] > logits[i, answer]).sum())
            rows.append({**f.to_dict(), "answer_id": answer, "answer_token": model.token_str(answer),
                         "multi_token": len(ids) > 1,
                         "predicted": model.token_str(int(logits[i].argmax())), "rank": rank,
                         "correct": rank == 0, "p_answer": float(probs[i, answer]),
                         "logit": float(logits[i, answer])})
    bar.close()
    return pd.DataFrame(rows)


def ranks(x) -> np.ndarray:
    """Average ranks (ties share the mean of their ranks), 1-based."""
    _, inverse, counts = np.unique(np.asarray(x, dtype=float), return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2)[inverse]


def pearson(a, b) -> float:
    """Pearson's r of two score vectors; NaN when either is constant or they have under two values."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def correlation(a, b, method: str = "pearson") -> float:
    """Agreement of two score vectors: ``pearson``, or ``spearman`` (Pearson of the average ranks). The one
    definition every score table is compared with (patching runs, Verify, surprisal)."""
    if method == "spearman":
        return pearson(ranks(a), ranks(b))
    if method != "pearson":
        raise InterpError(f"unknown correlation {method!r}: choose pearson or spearman")
    return pearson(a, b)
