"""Constrained unlearning ("Selective Amnesia", SHA256 at SemEval-2025 Task 4).

Forget a set of facts by training only the MLPs of a few layers, and compare with the
same budget spent on every block (unconstrained):

- **Layers**: ``layers``, or the ``top_layers`` MLP layers where causal tracing of the
  forget facts peaks at the last subject token (``interp.analyses.patching.causal_tracing``).
- **Loss** (``loss="sha256"``, the paper's): ``-CE(forget) + alpha * CE(retain)`` over the
  answer tokens only, with ``alpha = clip(round(0.3 * 6**dL + 0.8, 1), 1.2, 2.3)`` and
  ``dL`` the retain loss minus its first-epoch mean (every forget item is in every step;
  ``retain_batch`` retain items per step, cycled, so an epoch is one pass over the retain
  set). ``loss="bounded"``: the forget CE capped at ``cap`` nats per token, plus ``kl`` x
  KL(original || edited) on two corpus windows a step (cycled).
- **Stop** when forget top-1 accuracy reaches ``target_forget_acc`` or after ``steps``.
- **Report** before and after: forget top-1 accuracy and answer probability, retain
  accuracy, paraphrase accuracy of the forgotten facts (``data/facts/paraphrases.json``),
  and perplexity on ``corpus``.
- The edited weights are stored as safetensors next to a pointer to the base model
  (``runs/unlearning/edits/<run>-<variant>``), a model spec; the model in memory is
  restored to its original weights.

CPU protocol (stated, not the paper's): full-batch AdamW at the paper's lr 1.5e-5 for up
to ``steps`` 60 steps on ~60 short items, instead of batch 12 x 10 accumulation for 8 epochs
on the SemEval data with OLMo.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from interp.analyses.base import register
from interp.datasets.corpus import window_tensor
from interp.datasets.jsonl import EmptyRecord, read_jsonl
from interp.datasets.prompts import DATA_DIR, Fact, SemEvalItem, resolve
from interp.errors import InterpError, scrub
from interp.metrics import lm_loss
from interp.models.loading import save_edit
from interp.names import hook_name
from interp.paths import runs_root
from interp.progress import bar
from interp.result import Config, Result, option, provenance
from interp.tracing import record


@dataclass(frozen=True)
class UnlearnConfig(Config):
    VERSION = 3  # 2: retain accuracy over the known retain facts; 3: the neuron_changes table
    forget: str = option("builtin:forget", "facts or SemEval-2025 Task 4 JSONL to forget")
    retain: str = option("builtin:retain", "facts or SemEval JSONL to keep")
    layers: tuple[int, ...] = option((), "MLP layers to train, e.g. 0-3 (default: from causal tracing)", min=0)
    top_layers: int = option(4, "layers taken from causal tracing", min=1)
    steps: int = option(60, "optimisation steps at most", min=1)
    lr: float = option(1.5e-5, "the paper's", above=0)
    loss: str = option("sha256", "sha256 (-CE forget + adaptive alpha CE retain) or bounded",
                       choices=("sha256", "bounded"))
    cap: float = option(15.0, "bounded: forget CE cap (nats/token)", above=0)
    kl: float = option(1.0, "bounded: weight of KL(original || edited) on corpus text", min=0)
    target_forget_acc: float = option(0.1, "stop when forget top-1 accuracy reaches this", min=0, max=1)
    retain_batch: int = option(16, "retain items per step (cycled through the set)", min=1)
    baseline: bool = option(True, "also run the unconstrained variant (every block) on the same budget")
    corpus: str = option("stdlib-docs", "text for the perplexity side cost")
    corpus_tokens: int = option(2048, "tokens of that text", min=1)
    seq_len: int = option(64, "tokens per corpus window", min=2)
    trace_samples: int = option(3, "noise samples of the causal trace that picks the layers", min=1)


@dataclass(frozen=True)
class Item:
    prompt: str
    answer: str
    subject: str = ""
    relation: str = ""


def load_items(source: str, split: str) -> list[Item]:
    """Facts JSONL (prompt/subject/answer/relation) or SemEval-2025 Task 4 JSONL
    (id/input/output/task/split; records of the other split are skipped)."""
    path = resolve(source, "unlearning") if str(source).startswith("builtin:") else resolve(source, "facts")
    first = read_jsonl(path, EmptyRecord, "record")[0]  # checks the file exists, is UTF-8 and holds JSON objects
    if "input" in first:
        recs = read_jsonl(path, SemEvalItem, "SemEval item")
        return [Item(r["input"], r["output"]) for r in recs if r.get("split", split) == split]
    recs = read_jsonl(path, Fact, "fact")
    return [Item(r["prompt"], r["answer"], r["subject"], r["relation"]) for r in recs]


def encode_items(model, items: list[Item]):
    """Right-padded prompt+answer tokens, labels only on answer tokens (-100 elsewhere), and each
    item's first answer position."""
    rows, labels, first = [], [], []
    for it in items:
        p, a = model.encode(it.prompt), model.continuation(it.prompt, it.answer)  # the answer after the prompt
        rows.append(p + a)
        labels.append([-100] * len(p) + a)
        first.append(len(p) - 1)  # the logits there predict the first answer token
    width = max(map(len, rows))
    pad = model.tokenizer.pad_token_id or model.tokenizer.eos_token_id or 0
    tokens = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=model.device)
    lab = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels], device=model.device)
    return tokens, lab, torch.tensor(first, device=model.device)


def answer_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token CE over the answer tokens."""
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                             ignore_index=-100)


def evaluate(model, items: list[Item]) -> dict:
    """Top-1 accuracy and mean probability of the first answer token."""
    if not items:
        return {"acc": float("nan"), "p": float("nan")}
    tokens, labels, first = encode_items(model, items)
    with torch.no_grad():
        logits = model(tokens)[torch.arange(len(items), device=model.device), first].float()
    answer = labels[torch.arange(len(items), device=model.device), first + 1]
    return {"acc": float((logits.argmax(-1) == answer).float().mean()),
            "p": float(logits.softmax(-1)[torch.arange(len(items), device=model.device), answer].mean()), "correct":
            (logits.argmax(-1) == answer).tolist()}


def paraphrase(items: list[Item]) -> list[Item]:
    templates = json.loads((DATA_DIR / "facts" / "paraphrases.json").read_text())
    return [Item(t.format(subject=it.subject), it.answer, it.subject, it.relation)
            for it in items for t in templates.get(it.relation, [])]


def trainable_names(model, layers: list[int] | None) -> list[str]:
    """HF-named parameters to train: the MLPs of ``layers``, or (None) every block parameter."""
    names = [b.name for b in model.block_params if layers is None or (b.part == "mlp" and b.layer in layers)]
    if not names:
        raise InterpError(f"no MLP parameters found for layers {layers}")
    return names


def train(model, names: list[str], forget: list[Item], retain: list[Item], windows: Tensor, config,
          desc: str) -> list[dict]:
    """Run the optimisation in place on ``names``; return the per-step log."""
    params = [model.hf_params[n] for n in names]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    f_tok, f_lab, f_first = encode_items(model, forget)
    r_tok, r_lab, _ = encode_items(model, retain)
    n_r, rb = len(retain), min(config.retain_batch, len(retain))
    ref = None
    if config.loss == "bounded":
        with torch.no_grad():
            ref = model(windows).float().log_softmax(-1)
    log, first = [], []
    try:
        with bar(range(config.steps), desc=desc, unit="step") as progress, torch.enable_grad():
            for step in progress:
                f_logits = model(f_tok)
                rows = torch.arange(step * rb, (step + 1) * rb, device=r_tok.device) % n_r
                forget_ce, retain_ce = answer_ce(f_logits, f_lab), answer_ce(model(r_tok[rows]), r_lab[rows])
                if step < -(-n_r // rb):  # the first epoch's retain losses set the baseline
                    first.append(float(retain_ce.detach()))
                base = sum(first) / len(first)
                alpha = min(2.3, max(1.2, round(0.3 * 6 ** (float(retain_ce.detach()) - base) + 0.8, 1)))
                if config.loss == "sha256":
                    loss = -forget_ce + alpha * retain_ce
                else:
                    w = torch.arange(step * 2, step * 2 + 2, device=windows.device) % len(windows)  # 2 a step
                    kl = torch.nn.functional.kl_div(model(windows[w]).float().log_softmax(-1), ref[w],
                                                    log_target=True, reduction="batchmean") / windows.shape[1]
                    loss = -forget_ce.clamp(max=config.cap) + alpha * retain_ce + config.kl * kl
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    acc = float((f_logits[torch.arange(len(forget), device=model.device), f_first].argmax(-1) ==
                                 f_lab[torch.arange(len(forget), device=model.device), f_first + 1]).float().mean())
                f_ce, r_ce = float(forget_ce.detach()), float(retain_ce.detach())
                log.append({"step": step, "forget_ce": f_ce, "retain_ce": r_ce,
                            "alpha": alpha, "forget_acc": acc})
                progress.set_postfix(forget_ce=f"{f_ce:.2f}", retain_ce=f"{r_ce:.2f}", acc=acc)
                if acc <= config.target_forget_acc + 1e-6:
                    break
    finally:
        for p in params:
            p.requires_grad_(False)
    return log


def choose_layers(model, forget: list[Item], config) -> tuple[list[int], str]:
    if config.layers:
        return sorted(model.check_layers(list(config.layers))), "given"
    from interp.analyses.patching.causal_tracing import TraceConfig
    from interp.analyses.patching.causal_tracing import run as trace

    facts = [Fact(it.prompt, it.subject, it.answer, it.relation) for it in forget if it.subject]
    if not facts:
        raise InterpError("the forget set has no subjects to trace (SemEval items): give --layers")
    traced = trace(model, TraceConfig(kinds=("mlp",), samples=config.trace_samples, subject_only=True, n=0,
                                      seed=config.seed), facts=facts)
    return sorted(traced.metrics["mlp_peak_layers"][: config.top_layers]), "causal tracing"


@torch.no_grad()
def last_token_acts(model, items: list[Item], layers: list[int]) -> Tensor:
    """The mean activation of every neuron of ``layers`` at the prompts' last token: ``[layer, d_mlp]``."""
    batch = model.batch([it.prompt for it in items])
    sites = [hook_name("mlp_post", l) for l in layers]
    rows = torch.arange(len(items), device=batch.tokens.device)
    with record(model, sites) as acts:
        model(batch.tokens)
    return torch.stack([acts[s][rows, batch.lengths - 1].float().mean(0).cpu() for s in sites])


def _neuron_weights(model, layer: int) -> dict[str, Tensor]:
    """One layer's per-neuron weights as rows: gate and up (what neuron n reads), down (what it writes)."""
    w = model.weights
    out = {"up": w.W_in[layer], "down": w.W_out[layer].T}
    if model.is_glu:
        out["gate"] = w.W_gate[layer]
    return {k: v.detach().float().cpu().clone() for k, v in out.items()}


def neuron_changes(model, variant: str, layers: list[int], weights_before: dict, acts_before: dict,
                   forget: list[Item], retain: list[Item]) -> pd.DataFrame:
    """Per neuron of ``layers`` (the run passes every layer): the relative change of its gate row, up
    row and down column (``|dW| / |W|``) and its mean last-token activation on the forget and the retain facts,
    before and after the edit."""
    after = {"forget": last_token_acts(model, forget, layers), "retain": last_token_acts(model, retain, layers)}
    parts = []
    for i, layer in enumerate(layers):
        now = _neuron_weights(model, layer)
        df = pd.DataFrame({"variant": variant, "layer": layer, "neuron": range(model.d_mlp)})
        for part, before in weights_before[layer].items():
            df[f"d_{part}"] = ((now[part] - before).norm(dim=1) / before.norm(dim=1).clamp(min=1e-12)).numpy()
        for split in ("forget", "retain"):
            df[f"act_{split}_before"] = acts_before[split][i].numpy()
            df[f"act_{split}_after"] = after[split][i].numpy()
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def _report(model, forget, retain, para, windows) -> dict:
    f, r, p = evaluate(model, forget), evaluate(model, retain), evaluate(model, para)
    return {"forget_acc": f["acc"], "forget_p": f["p"], "retain_acc": r["acc"], "paraphrase_acc": p["acc"],
            "perplexity": math.exp(lm_loss(model, windows))}


@register("unlearning", UnlearnConfig)
def run(model, config: UnlearnConfig) -> Result:
    """Forget facts by training a few MLP layers; compare with unconstrained training."""
    forget, retain = load_items(config.forget, "forget"), load_items(config.retain, "retain")
    if not forget or not retain:
        raise InterpError(f"need a non-empty forget and retain set; got {len(forget)} and {len(retain)}")
    overlap = sorted({it.prompt for it in forget} & {it.prompt for it in retain})
    if overlap:
        raise InterpError(f"the forget and retain sets share {len(overlap)} prompt(s): {overlap[:5]}; "
                          "a fact cannot be both forgotten and kept")
    known = evaluate(model, forget)["correct"]
    unknown = [it.prompt for it, ok in zip(forget, known) if not ok]
    forget = [it for it, ok in zip(forget, known) if ok]
    if not forget:
        raise InterpError(f"the model already gets all {len(unknown)} forget facts wrong: nothing to forget")
    # a fact the model never knew cannot be kept: retain accuracy is measured on the ones it knows
    kept_known = evaluate(model, retain)["correct"]
    retain_unknown = sum(1 for ok in kept_known if not ok)
    retain = [it for it, ok in zip(retain, kept_known) if ok]
    if not retain:
        raise InterpError("the model gets every retain fact wrong already: there is nothing to keep; "
                          "give a retain set it answers (--retain)")
    para = paraphrase(forget)
    windows = window_tensor(model, config.corpus, config.seq_len, config.corpus_tokens).to(model.device)
    layers, why = choose_layers(model, forget, config)
    before = _report(model, forget, retain, para, windows)
    original = {n: p.detach().clone() for n, p in model.hf_params.items()}
    every = list(range(model.n_layers))  # the card's per-neuron changes, in every layer (zero where not trained)
    weights_before = {layer: _neuron_weights(model, layer) for layer in every}
    acts_before = {"forget": last_token_acts(model, forget, every), "retain": last_token_acts(model, retain, every)}
    changes = []
    base_hash = model.weights_hash
    rows = [{"run": "before", **before, "steps": 0, "seconds": 0.0, "edit": ""}]
    logs = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    variants = [("constrained", layers)] + ([("unconstrained", None)] if config.baseline else [])
    try:
        for variant, which in variants:
            names = trainable_names(model, which)
            started = time.perf_counter()
            log = train(model, names, forget, retain, windows, config, f"unlearning ({variant})")
            seconds = time.perf_counter() - started
            where = runs_root() / "unlearning" / "edits" / f"{stamp}-{config.digest()}-{variant}"
            edit = save_edit(model, where, names, base_hash,
                             note=f"{variant} unlearning of {len(forget)} facts, layers {which or 'all'}")
            rows.append({"run": variant, **_report(model, forget, retain, para, windows), "steps": len(log),
                         "seconds": seconds, "edit": str(edit)})
            logs += [{"run": variant, **e} for e in log]
            changes.append(neuron_changes(model, variant, every, weights_before, acts_before, forget, retain))
            with torch.no_grad():  # back to the original weights before the next variant
                for n in names:
                    model.hf_params[n].copy_(original[n])
    finally:
        with torch.no_grad():
            for n, p in model.hf_params.items():
                if not torch.equal(p, original[n]):
                    p.copy_(original[n])
    summary = pd.DataFrame(rows)
    c = summary.set_index("run")
    metrics = {"before": {k: float(v) for k, v in before.items()}, "layers": layers, "layers_from": why,
               "n_forget": len(forget), "n_retain": len(retain),
               "forget_unknown_skipped": len(unknown), "retain_unknown_skipped": retain_unknown,
               "n_paraphrases": len(para)}
    for variant, _ in variants:
        metrics[variant] = {
            "forget_acc": float(c.loc[variant, "forget_acc"]),
            "retain_kept": float(c.loc[variant, "retain_acc"] / c.loc["before", "retain_acc"]),
            "perplexity_change": float(c.loc[variant, "perplexity"] / c.loc["before", "perplexity"] - 1),
            "paraphrase_acc": float(c.loc[variant, "paraphrase_acc"]), "steps": int(c.loc[variant, "steps"]),
            "seconds": float(c.loc[variant, "seconds"]), "edit": c.loc[variant, "edit"]}
    notes = [f"{len(unknown)} forget fact(s) the model already got wrong were skipped (nothing to forget)."
             ] if unknown else []
    if retain_unknown:
        notes.append(f"{retain_unknown} retain fact(s) the model already got wrong were left out (nothing to keep); "
                     f"retain accuracy is over the {len(retain)} it answers.")
    con = metrics["constrained"]
    notes.append(f"Constrained (MLPs of layers {layers}, from {why}): forget acc {before['forget_acc']:.2f} → "
                 f"{con['forget_acc']:.2f}, retain kept {con['retain_kept']:.0%}, perplexity "
                 f"{con['perplexity_change']:+.1%}, paraphrase acc {before['paraphrase_acc']:.2f} → "
                 f"{con['paraphrase_acc']:.2f} in {con['steps']} steps.")
    if config.baseline:
        un = metrics["unconstrained"]
        better = con["retain_kept"] >= un["retain_kept"] and con["perplexity_change"] <= un["perplexity_change"]
        notes.append(f"Unconstrained (every block, same budget): forget acc {un['forget_acc']:.2f}, retain kept "
                     f"{un['retain_kept']:.0%}, perplexity {un['perplexity_change']:+.1%}. The constrained run is "
                     f"{'' if better else 'not '}better on both retain and perplexity.")
    missing = [k for k, v in {**before, "retain_kept": con["retain_kept"]}.items() if not math.isfinite(v)]
    if missing:
        notes.append(f"Not measured (stored as null): {', '.join(missing)} (an empty set, or a zero baseline).")
    return Result(analysis="unlearning", config=config, provenance=provenance(model, config),
                  tables={"summary": summary, "log": pd.DataFrame(logs),
                          "neuron_changes": pd.concat(changes, ignore_index=True)},
                  metrics=scrub(metrics)[0], notes=notes)
