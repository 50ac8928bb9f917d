"""Factual-recall decomposition (Lv et al., 2024), at the prompt's last position.

For each fact the model answers correctly ("The capital of France is" -> " Paris"):

- **Direct logit attribution by layer**: the embedding, every attention and MLP output,
  and the bias terms, read through the unembedding with the final norm's scale frozen
  (``interp.metrics``). They sum to the answer's logit (``dla``), and, against the
  mean-over-vocabulary direction, to the logit minus the mean logit (``dla_rel``).
- **Argument-passing heads**: per head, the attention from the last position to the
  subject's tokens, and its output read through the unembedding on the subject's last
  token (``subject_dla``) and on the answer (``answer_dla``). A head's ``mover`` score
  is the mean over facts of attention x subject_dla (both high: it moves the subject).
- **The MLP as an "activation"**: per prompt, least squares of the chosen MLP's output on
  the outputs of the top argument-passing heads at or below its layer,
  ``mlp_out = sum_h beta_h head_h + remainder``; ``beta_h > 0``: the MLP amplifies head h,
  ``< 0``: it erases it. The remainder's DLA on the answer is the "get_capital(X)" part.
  The regression is **per prompt** (576 equations, a handful of unknowns); the table
  gives the betas' mean and spread across prompts.
- **Neuron-level decomposition** of the chosen MLP (default: the MLP with the largest
  mean DLA on the answer): each neuron's ``act * W_out[:, n] . (s * w * W_U[:, answer])``.
- **Final-layer suppression** (the paper's anti-overconfidence): the last layer's MLP and
  attention DLA on the answer relative to the mean logit, and the answer probability when
  each is zeroed at the last position. ``factual_fix`` evaluates the mitigation.

Answers of several tokens are scored by their first token (stated in the facts table);
facts the model gets wrong are kept in the facts table, flagged, and left out of the
decomposition (``metrics.n_correct`` says how many remain).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from interp.analyses.base import register
from interp.datasets.prompts import Fact, load_facts, subject_positions
from interp.errors import InterpError
from interp.metrics import (
    direct_logit,
    dla_tolerance,
    final_scale,
    head_outputs,
    neuron_dla,
    post_scale,
    precap_logit,
    score_facts,
    unembed_dirs,
)
from interp.names import hook_name
from interp.result import Config, Result, option, provenance
from interp.tracing import Write, intervene, record


@dataclass(frozen=True)
class FactualConfig(Config):
    facts: str = option("builtin:capitals",
                        "builtin:capitals|languages|city_country|makers, or a facts JSONL", flags=("-f",))
    n: int = option(0, "facts to read (0: all)", min=0)
    only_correct: bool = option(True, "decompose only facts answered correctly at top-1")
    mlp_layer: int = option(-1, "the MLP to decompose into neurons (-1: the largest DLA)", flags=("--layer", "-l"),
                            min=-1)
    activation_layer: int = option(-1,
                                   "the MLP regressed on the heads (-1: the block of the top argument-passing head)",
                                   min=-1)
    top_heads: int = option(5, "argument-passing heads the MLP is regressed on", min=1)
    top_neurons: int = option(20, "neurons listed in the metrics", min=1)
    batch_size: int = option(32, "prompts per forward pass", min=1)


def bias_logit(model, token: int) -> float:
    """The part of a logit no component writes: the final norm's bias through ``W_U``, plus ``b_U``."""
    w = model.weights
    total = 0.0
    if w.final_norm.bias is not None:
        total += float(w.final_norm.bias.float() @ w.W_U[:, token].float())
    if w.b_U is not None:
        total += float(w.b_U[token])
    return total


def _records(model, prompts: list[str]):
    sites = [hook_name("embed")] + [hook_name(s, l) for l in range(model.n_layers)
                                    for s in ("attn_out", "mlp_out", "attn_z", "attn_pattern", "mlp_post")]
    if _post_normed(model):  # Gemma 2/3, OLMo 2: the raw outputs give the post-norms' frozen scales
        sites += [hook_name(s, l) for l in range(model.n_layers) for s in ("mlp_raw_out", "attn_raw_out")]
    pos_embed = hook_name("pos_embed") if hook_name("pos_embed") in model.hook_dict else None
    batch = model.batch(prompts)
    with torch.no_grad(), record(model, sites + [hook_name("final_in")] + ([pos_embed] if pos_embed else [])) as acts:
        logits = model(batch.tokens)
    return batch, dict(acts), logits, pos_embed


def _post_normed(model) -> bool:
    w = model.weights
    return any(w.mlp_post_norm[l] is not None or w.attn_post_norm[l] is not None for l in range(model.n_layers))


def _post_scales(model, acts: dict, i: int, last: int, part: str) -> Tensor:
    """Each layer's post-norm scale for ``part`` at one position, ``[L, 1]`` (ones without post-norms)."""
    if not _post_normed(model):
        return torch.ones(model.n_layers, 1, device=model.device)  # multiplied into device tensors
    return torch.stack([post_scale(model, l, acts[hook_name(f"{part}_raw_out", l)][i, last], part)
                        for l in range(model.n_layers)])


def decompose(model, facts_df: pd.DataFrame, config: FactualConfig) -> dict:
    """The per-fact tables of the decomposition, for facts in ``facts_df`` (all assumed correct)."""
    dla_rows, head_rows, supp_rows, post, head_out, mlp_out_last, scales = [], [], [], [], [], [], []
    post_mlp, residuals = [], []
    W_U_n = model.weights.W_U_normed().float()
    mean_dir = W_U_n.mean(1)
    L, H = model.n_layers, model.n_heads
    for start in range(0, len(facts_df), config.batch_size):
        chunk = facts_df.iloc[start:start + config.batch_size]
        batch, acts, logits, pos_embed = _records(model, chunk.prompt.tolist())
        for i, fact in enumerate(chunk.itertuples()):
            last = int(batch.last[i])
            subj = subject_positions(model, fact.prompt, fact.subject)
            subject_id = int(batch.tokens[i, subj[-1]])
            ids = torch.tensor([fact.answer_id, subject_id], device=model.device)
            dirs = torch.cat([unembed_dirs(model, ids), (W_U_n[:, fact.answer_id] - mean_dir)[:, None]], 1)
            scale = final_scale(model, acts[hook_name("final_in")][i, last])
            comps = {("embed", -1): acts[hook_name("embed")][i, last]}
            if pos_embed in acts:  # learned positions (GPT-2); rotary models never fire this hook
                comps[("embed", -1)] = comps[("embed", -1)] + acts[pos_embed][i, last]
            for l in range(L):
                comps[("attn", l)] = acts[hook_name("attn_out", l)][i, last]
                comps[("mlp", l)] = acts[hook_name("mlp_out", l)][i, last]
            total = bias_logit(model, fact.answer_id)
            for (kind, layer), v in comps.items():
                d = direct_logit(model, v, scale, dirs)
                total += float(d[0])
                dla_rows.append({"fact": fact.Index, "kind": kind, "layer": layer,
                                 "dla": float(d[0]), "dla_rel": float(d[2])})
            dla_rows.append({"fact": fact.Index, "kind": "bias", "layer": -1,
                             "dla": bias_logit(model, fact.answer_id), "dla_rel": float("nan")})
            logit = float(precap_logit(model, logits[i, last, fact.answer_id].float()))
            residuals.append((total - logit, logit))
            z = torch.stack([acts[hook_name("attn_z", l)][i, last] for l in range(L)])  # [L, H, d_head]
            attn_post = _post_scales(model, acts, i, last, "attn")
            outs = torch.stack([head_outputs(model, l, z[l], attn_post[l]) for l in range(L)])  # [L, H, d_model]
            pattern = torch.stack([acts[hook_name("attn_pattern", l)][i, :, last, subj].sum(-1) for l in range(L)])
            hd = direct_logit(model, outs, scale, dirs)  # [L, H, 3]
            for l in range(L):
                for h in range(H):
                    head_rows.append({"fact": fact.Index, "layer": l, "head": h,
                                      "attn_to_subject": float(pattern[l, h]), "subject_dla": float(hd[l, h, 1]),
                                      "answer_dla": float(hd[l, h, 0])})
            head_out.append(outs)
            scales.append(scale)
            mlp_out_last.append(torch.stack([comps[("mlp", l)] for l in range(L)]).float())
            post.append(torch.stack([acts[hook_name("mlp_post", l)][i, last] for l in range(L)]).float())
            post_mlp.append(_post_scales(model, acts, i, last, "mlp"))
            supp_rows.append({"fact": fact.Index, "last_mlp_dla_rel": float(direct_logit(
                model, comps[("mlp", L - 1)], scale, dirs)[2]), "last_attn_dla_rel": float(direct_logit(
                    model, comps[("attn", L - 1)], scale, dirs)[2])})
    supp = pd.DataFrame(supp_rows)
    for kind in ("mlp", "attn"):
        supp[f"p_without_last_{kind}"] = ablated_prob(model, facts_df, kind, config.batch_size)
    return {"dla": pd.DataFrame(dla_rows), "heads": pd.DataFrame(head_rows), "suppression": supp,
            "head_out": torch.stack(head_out), "mlp_out": torch.stack(mlp_out_last), "post": torch.stack(post),
            "scale": torch.stack(scales), "post_scale": torch.stack(post_mlp), "residuals": residuals}


def ablated_prob(model, facts_df: pd.DataFrame, kind: str, batch_size: int = 32) -> list[float]:
    """P(answer) with the last layer's ``kind`` ("mlp" or "attn") output zeroed at the last position."""
    out = []
    site = hook_name("mlp_out" if kind == "mlp" else "attn_out", model.n_layers - 1)
    for start in range(0, len(facts_df), batch_size):
        chunk = facts_df.iloc[start:start + batch_size]
        batch = model.batch(chunk.prompt.tolist())
        rows = torch.arange(len(chunk), device=model.device)
        with torch.no_grad(), intervene(model, [Write(site, rows=rows, positions=batch.last, value=0.0)]):
            probs = model(batch.tokens)[rows, batch.last].float().softmax(-1)
        out += probs[rows, torch.tensor(chunk.answer_id.tolist(), device=model.device)].tolist()
    return out


def activation_regression(model, parts: dict, facts_df, heads: list[tuple[int, int]], layer: int):
    """Per prompt, ``mlp_out[layer] ~ sum_h beta_h head_h``; the betas and the answer DLA of each part."""
    X = torch.stack([parts["head_out"][:, l, h] for l, h in heads], -1)  # [fact, d_model, k]
    y = parts["mlp_out"][:, layer]  # [fact, d_model]
    beta = torch.linalg.lstsq(X, y[..., None]).solution[..., 0]  # [fact, k]
    fitted = (X * beta[:, None]).sum(-1)
    remainder = y - fitted
    r2 = 1 - remainder.pow(2).sum(-1) / y.pow(2).sum(-1)  # uncentred: no intercept in the fit
    dirs = unembed_dirs(model, torch.tensor(facts_df.answer_id.tolist(), device=model.device))

    def answer_dla(v: Tensor) -> list[float]:  # each fact's vector on its own answer, with its own scale
        return direct_logit(model, v, parts["scale"], dirs).diagonal().tolist()

    betas = pd.DataFrame([{"layer": l, "head": h, "beta_mean": float(beta[:, j].mean()),
                           "beta_std": float(beta[:, j].std()) if len(beta) > 1 else 0.0,
                           "share_positive": float((beta[:, j] > 0).float().mean())}
                          for j, (l, h) in enumerate(heads)])
    per_fact = pd.DataFrame({"fact": facts_df.index, "r2": r2.tolist(),
                             "mlp_dla": answer_dla(y), "heads_part": answer_dla(fitted),
                             "remainder_part": answer_dla(remainder)})
    return betas, per_fact



def _in_dtype(model) -> str:
    return "" if model.dtype == torch.float32 else f" in {str(model.dtype).split('.')[-1]}"


def decomposition_check(model, residuals: list[tuple[float, float]]) -> tuple[dict, str]:
    """The run-time check of ``sum of components = logit``: the largest residual, the tolerance, and a
    sentence for the Result (a warning past the tolerance)."""
    worst = max((abs(r) for r, _ in residuals), default=0.0)
    tol = dla_tolerance(max((abs(lg) for _, lg in residuals), default=0.0), model.dtype)
    of = "the logit before the final softcap" if model.weights.logit_softcap else "the answer's logit"
    text = (f"Decomposition check: the components sum to {of} within {worst:.2g} on every fact "
            f"(tolerance {tol:.2g}).")
    if worst > tol:
        text = (f"Decomposition check FAILED: the components miss {of} by up to {worst:.3g} "
                f"(tolerance {tol:.2g}{_in_dtype(model)}); the per-layer DLA is not exact for this architecture.")
        warnings.warn(text, stacklevel=2)
    if model.weights.logit_softcap:
        text += (f" {model.spec} caps its logits (cap * tanh(x / cap), cap {model.weights.logit_softcap:g}), "
                 "so the DLA decomposes the pre-cap logit; the capped logit itself is not a sum of components.")
    return {"dla_residual_max": worst, "dla_residual_tolerance": tol}, text


@register("factual_recall", FactualConfig)
def run(model, config: FactualConfig, facts: list[Fact] | None = None) -> Result:
    """Decompose how the model recalls facts: DLA by layer, argument-passing heads, the MLP
    as an activation, neuron contributions, and final-layer suppression."""
    facts = facts if facts is not None else load_facts(config.facts)
    facts = facts[: config.n] if config.n else facts
    scored = score_facts(model, facts, config.batch_size)
    known = scored[scored.correct] if config.only_correct else scored
    if known.empty:
        raise InterpError(f"the model answers none of the {len(scored)} facts correctly at top-1; "
                          f"nothing to decompose (e.g. {scored.prompt.iloc[0]!r} -> {scored.predicted.iloc[0]!r})")
    parts = decompose(model, known, config)
    dla = parts["dla"]
    by_layer = dla[dla.kind != "bias"].groupby(["kind", "layer"], as_index=False)[["dla", "dla_rel"]].mean()
    mlp_means = by_layer[by_layer.kind == "mlp"].set_index("layer").dla
    layer = config.mlp_layer if config.mlp_layer >= 0 else int(mlp_means.idxmax())
    model.check_layer(layer)
    heads_df = parts["heads"]
    summary = heads_df.groupby(["layer", "head"], as_index=False)[["attn_to_subject", "subject_dla",
                                                                    "answer_dla"]].mean()
    summary["mover"] = heads_df.assign(mover=heads_df.attn_to_subject * heads_df.subject_dla).groupby(
        ["layer", "head"]).mover.mean().values
    ranked = summary.sort_values("mover", ascending=False)
    act_layer = config.activation_layer if config.activation_layer >= 0 else int(ranked.layer.iloc[0])
    model.check_layer(act_layer)
    eligible = ranked[ranked.layer <= act_layer]  # heads that write before this MLP reads
    top = list(zip(eligible.layer.head(config.top_heads), eligible["head"].head(config.top_heads)))
    betas, per_fact = activation_regression(model, parts, known, top, act_layer)
    # neuron decomposition of the chosen MLP: act * s * W_out[:, n] . (w * W_U[:, answer])
    contrib = torch.stack([
        neuron_dla(model, layer, parts["post"][row, layer], parts["scale"][row],
                   unembed_dirs(model, torch.tensor([fact.answer_id], device=model.device)),
                   parts["post_scale"][row, layer])[:, 0]
        for row, fact in enumerate(known.itertuples())])  # [fact, d_mlp]
    neurons = pd.DataFrame({"layer": layer, "neuron": range(model.d_mlp), "mean_dla": contrib.mean(0).tolist(),
                            "share_of_layer": (contrib.mean(0) / contrib.mean(0).sum()).tolist()})
    neurons = neurons.reindex(neurons.mean_dla.abs().sort_values(ascending=False).index).reset_index(drop=True)
    supp = parts["suppression"].merge(known[["p_answer"]], left_on="fact", right_index=True)
    L = model.n_layers
    top_neurons = neurons.head(config.top_neurons)
    metrics = {
        "n_facts": len(scored), "n_correct": int(scored.correct.sum()), "n_decomposed": len(known),
        "n_multi_token_answers": int(scored.multi_token.sum()), "mlp_layer": layer, "activation_layer": act_layer,
        "top_heads": [f"{l}.{h}" for l, h in top],
        "mean_regression_r2": float(per_fact.r2.mean()),
        "top_neurons_share": float(top_neurons.mean_dla.sum() / contrib.mean(0).sum()),
        "share_last_mlp_suppresses": float((supp.last_mlp_dla_rel < 0).mean()),
        "share_last_attn_suppresses": float((supp.last_attn_dla_rel < 0).mean()),
        "mean_last_mlp_dla_rel": float(supp.last_mlp_dla_rel.mean()),
        "mean_p_answer": float(supp.p_answer.mean()),
        "mean_p_without_last_mlp": float(supp.p_without_last_mlp.mean()),
        "mean_p_without_last_attn": float(supp.p_without_last_attn.mean()),
    }
    check, check_note = decomposition_check(model, parts["residuals"])
    metrics.update(check)
    notes = [f"{metrics['n_correct']} of {len(scored)} facts are answered correctly at top-1; {len(known)} are "
             "decomposed. Wrong ones stay in the facts table, flagged (correct = false)."]
    if metrics["n_multi_token_answers"]:
        notes.append(f"{metrics['n_multi_token_answers']} answers span several tokens; their first token is scored.")
    notes.append(check_note)
    notes.append(f"Final layer ({L - 1}): its MLP lowers the answer's logit relative to the mean logit on "
                 f"{metrics['share_last_mlp_suppresses']:.0%} of facts; zeroing it at the last position moves "
                 f"mean P(answer) from {metrics['mean_p_answer']:.3f} to {metrics['mean_p_without_last_mlp']:.3f}.")
    return Result(
        analysis="factual_recall", config=config, provenance=provenance(model, config),
        tables={"facts": scored, "dla": dla, "dla_by_layer": by_layer, "heads": heads_df, "head_summary": summary,
                "betas": betas, "regression": per_fact, "neurons": neurons.head(max(200, config.top_neurons)),
                "suppression": supp},
        tensors={"neuron_dla": contrib.cpu()}, metrics=metrics, notes=notes)
