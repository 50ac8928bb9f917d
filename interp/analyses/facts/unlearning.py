"""Constrained unlearning ("Selective Amnesia", SHA256 at SemEval-2025 Task 4), beside NPO and a
subject-keyed rank-one edit.

Forget a set of facts by training only the MLPs of a few layers, and compare with the
same budget spent on every block (unconstrained), and, under the same step budget and report:

- **NPO** (negative preference optimisation; Zhang et al., 2024), the standard strong baseline of current
  unlearning benchmarks, on the same MLPs: ``(2/beta) softplus(beta (log p(y|x) - log p_ref(y|x)))`` over the
  forget answers (``log p`` summed over answer tokens, ``p_ref`` the model before the edit) plus the retain CE
  (``npo_retain`` x), at ``npo_lr``;
- **rank_one**: a rank-one change of ``W_out`` per fact and layer, keyed on the subject's last-token
  activations (``interp.analyses.facts.rank_one``); its ``delta`` vectors learn ``softplus(z_answer - z_rival)``
  (``-log(1 - p)`` with ``p`` the answer's share against its best rival token) on the forget facts plus the
  retain CE and ``rank_wd`` x ``|delta|^2``, at ``rank_lr``.

- **Layers**: ``layers``, or the ``top_layers`` MLP layers where causal tracing of the
  forget facts peaks at the last subject token (``interp.analyses.patching.causal_tracing``).
- **Loss** (``loss="sha256"``, the paper's): ``-CE(forget) + alpha * CE(retain)`` over the
  answer tokens only, with ``alpha = clip(round(0.3 * 6**dL + 0.8, 1), 1.2, 2.3)`` and
  ``dL`` the retain loss minus its first-epoch mean (every forget item is in every step;
  ``retain_batch`` retain items per step, cycled, so an epoch is one pass over the retain
  set). ``loss="bounded"``: the forget CE capped at ``cap`` nats per token, plus ``kl`` x
  KL(original || edited) on two corpus windows a step (cycled).
- **Stop** when forget top-1 accuracy reaches ``target_forget_acc`` or after ``steps`` (the rank-one edit runs
  every step unless ``rank_stop``: its vector is small and regularised, as in ROME's fixed-step optimisation).
- **Report** before and after: forget top-1 accuracy and answer probability, retain
  accuracy, paraphrase accuracy of the forgotten facts (``data/facts/paraphrases.json``),
  and perplexity on ``corpus``; and, per method, which of the goals it meets (``GOALS``: forget accuracy
  <= 10%, retain kept >= 90%, perplexity <= +10%, paraphrase accuracy <= 20%).
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

from interp.analyses.base import get_analysis, register
from interp.analyses.facts import rank_one as r1
from interp.analyses.facts.neuron_changes import last_token_acts, neuron_changes, neuron_weights
from interp.datasets.corpus import window_tensor
from interp.datasets.jsonl import EmptyRecord, read_jsonl
from interp.datasets.prompts import DATA_DIR, Fact, SemEvalItem, resolve
from interp.errors import InterpError, scrub
from interp.metrics import lm_loss
from interp.models.loading import save_edit
from interp.paths import runs_root
from interp.progress import bar
from interp.result import Config, Result, option, provenance
from interp.tracing.rank_update import rank_updates

METHODS = ("sha256", "npo", "rank_one")
GOALS = {"forget_acc": ("<=", 0.10), "retain_kept": (">=", 0.90), "perplexity_change": ("<=", 0.10),
         "paraphrase_acc": ("<=", 0.20)}


@dataclass(frozen=True)
class UnlearnConfig(Config):
    VERSION = 4  # 2: retain over the known retain facts; 3: neuron_changes; 4: NPO, rank-one, goals
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
    methods: tuple[str, ...] = option(METHODS, "sha256 (the paper's, on the traced MLPs), npo (the same MLPs), "
                                      "rank_one (a subject-keyed rank-one W_out edit per fact at those layers)",
                                      choices=METHODS, nonempty=True)
    npo_beta: float = option(0.1, "NPO's inverse temperature", above=0)
    npo_lr: float = option(5e-5, "NPO's learning rate", above=0)
    npo_retain: float = option(1.0, "NPO: weight of the retain CE", min=0)
    rank_lr: float = option(0.05, "rank-one: learning rate of the delta vectors (Adam)", above=0)
    rank_wd: float = option(1e-3, "rank-one: weight of |delta|^2", min=0)
    rank_reg: float = option(0.1, "rank-one: ridge of the activation second moment, relative to its mean diagonal",
                             above=0)
    rank_stop: bool = option(False, "rank-one: stop at the forget target like the others (default: every --steps "
                             "step, as ROME optimises its vector for a fixed number of steps)")
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


def answer_logprob(logits: Tensor, labels: Tensor) -> Tensor:
    """Per item: the log-probability of its answer tokens, summed."""
    logp = logits[:, :-1].float().log_softmax(-1)
    lab = labels[:, 1:]
    picked = logp.gather(-1, lab.clamp(min=0)[..., None])[..., 0]
    return (picked * (lab != -100)).sum(-1)


def train(model, names: list[str], forget: list[Item], retain: list[Item], windows: Tensor, config,
          desc: str, method: str = "sha256", params: list[Tensor] | None = None) -> list[dict]:
    """Run the optimisation in place on ``names`` (or on ``params``: the rank-one deltas); return the
    per-step log. ``method``: sha256 (with ``config.loss``), npo or rank_one."""
    own = params is None
    params = [model.hf_params[n] for n in names] if own else params
    for p in params:
        p.requires_grad_(True)
    lr = {"npo": config.npo_lr, "rank_one": config.rank_lr}.get(method, config.lr)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0) if own else torch.optim.Adam(params, lr=lr)
    f_tok, f_lab, f_first = encode_items(model, forget)
    ref_logp = None
    if method == "npo":
        with torch.no_grad():
            ref_logp = answer_logprob(model(f_tok), f_lab)
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
                if method == "npo":
                    ratio = answer_logprob(f_logits, f_lab) - ref_logp
                    loss = (2 / config.npo_beta) * torch.nn.functional.softplus(config.npo_beta * ratio).mean() \
                        + config.npo_retain * retain_ce
                elif method == "rank_one":
                    rows_f = torch.arange(len(forget), device=model.device)
                    z = f_logits[rows_f, f_first].float()
                    ans = f_lab[rows_f, f_first + 1]
                    rival = z.scatter(-1, ans[:, None], float("-inf")).max(-1).values
                    # -log(1 - p) with p the answer's share against its best rival: pushes it below that rival
                    loss = torch.nn.functional.softplus(z[rows_f, ans] - rival).mean() + retain_ce \
                        + config.rank_wd * sum((p * p).sum(-1).mean() for p in params)
                elif config.loss == "sha256":
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
                if acc <= config.target_forget_acc + 1e-6 and (method != "rank_one" or config.rank_stop):
                    break
    finally:
        for p in params:
            p.requires_grad_(False)
    return log


def rank_one_edit(model, forget: list[Item], retain: list[Item], layers: list[int], windows: Tensor,
                  config) -> tuple[list[str], list[dict]]:
    """Learn and bake in the rank-one W_out edits of ``layers`` (see ``interp.analyses.facts.rank_one``);
    returns the HF names of the edited parameters and the per-step log."""
    if any(not it.subject for it in forget):
        raise InterpError("the rank-one edit is keyed on each fact's subject; these forget items have none "
                          "(SemEval items): leave rank_one out of --methods")
    keys = r1.subject_keys(model, [it.prompt for it in forget], [it.subject for it in forget], layers)
    protect = r1.prompt_keys(model, [it.prompt for it in retain], layers)
    u = r1.directions(keys, r1.second_moment(model, windows, layers), config.rank_reg, protect)
    deltas = [torch.zeros(len(forget), model.cfg.d_model, device=model.device) for _ in layers]
    with rank_updates([r1.out_module(model, l) for l in layers], u, deltas):
        log = train(model, [], forget, retain, windows, config, "unlearning (rank_one)", "rank_one", deltas)
    return [r1.out_param_name(model, l) for l in layers], log


def choose_layers(model, forget: list[Item], config) -> tuple[list[int], str]:
    if config.layers:
        return sorted(model.check_layers(list(config.layers))), "given"
    facts = [Fact(it.prompt, it.subject, it.answer, it.relation) for it in forget if it.subject]
    if not facts:
        raise InterpError("the forget set has no subjects to trace (SemEval items): give --layers")
    # causal tracing is another technique's analysis: reached through the registry, not imported
    trace = get_analysis("causal_tracing")
    traced = trace.run(model, trace.config.from_dict(dict(kinds=("mlp",), samples=config.trace_samples,
                                                          subject_only=True, n=0, seed=config.seed)), facts=facts)
    return sorted(traced.metrics["mlp_peak_layers"][: config.top_layers]), "causal tracing"


def _report(model, forget, retain, para, windows) -> dict:
    f, r, p = evaluate(model, forget), evaluate(model, retain), evaluate(model, para)
    return {"forget_acc": f["acc"], "forget_p": f["p"], "retain_acc": r["acc"], "paraphrase_acc": p["acc"],
            "perplexity": math.exp(lm_loss(model, windows))}


@register("unlearning", UnlearnConfig, mutates_weights=True)
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
    weights_before = {layer: neuron_weights(model, layer) for layer in every}
    acts_before = {"forget": last_token_acts(model, forget, every), "retain": last_token_acts(model, retain, every)}
    changes = []
    base_hash = model.weights_hash
    rows = [{"run": "before", "method": "", "params": "", **before, "steps": 0, "seconds": 0.0, "edit": ""}]
    logs = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    variants = [(v, m, w) for v, m, w in [("constrained", "sha256", layers), ("unconstrained", "sha256", None),
                                          ("npo", "npo", layers), ("rank_one", "rank_one", layers)]
                if m in config.methods and (v != "unconstrained" or config.baseline)]
    try:
        for variant, method, which in variants:
            started = time.perf_counter()
            if method == "rank_one":
                names, log = rank_one_edit(model, forget, retain, which, windows, config)
            else:
                names = trainable_names(model, which)
                log = train(model, names, forget, retain, windows, config, f"unlearning ({variant})", method)
            seconds = time.perf_counter() - started
            where = runs_root() / "unlearning" / "edits" / f"{stamp}-{config.digest()}-{variant}"
            edit = save_edit(model, where, names, base_hash,
                             note=f"{variant} unlearning of {len(forget)} facts, layers {which or 'all'}")
            rows.append({"run": variant, "method": method, "params": "W_out" if method == "rank_one" else "MLP" if which
                         else "every block", **_report(model, forget, retain, para, windows), "steps": len(log),
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
    for variant, *_ in variants:
        metrics[variant] = {
            "forget_acc": float(c.loc[variant, "forget_acc"]),
            "retain_kept": float(c.loc[variant, "retain_acc"] / c.loc["before", "retain_acc"]),
            "perplexity_change": float(c.loc[variant, "perplexity"] / c.loc["before", "perplexity"] - 1),
            "paraphrase_acc": float(c.loc[variant, "paraphrase_acc"]), "steps": int(c.loc[variant, "steps"]),
            "seconds": float(c.loc[variant, "seconds"]), "edit": c.loc[variant, "edit"]}
    notes = [f"{len(unknown)} forget fact(s) the model already got wrong were skipped (nothing to forget)."
             ] if unknown else []
    if before["paraphrase_acc"] < 0.7:
        notes.append(f"Before unlearning the model answers only {before['paraphrase_acc']:.0%} of the forget facts' "
                     "paraphrases: a low paraphrase accuracy afterwards shows little.")
    if retain_unknown:
        notes.append(f"{retain_unknown} retain fact(s) the model already got wrong were left out (nothing to keep); "
                     f"retain accuracy is over the {len(retain)} it answers.")
    con = metrics.get("constrained")
    for variant, method, which in variants:
        m = metrics[variant]
        what = {"sha256": "SHA256 loss", "npo": "NPO"}.get(method, "rank-one W_out edit")
        where = f"layers {layers}, from {why}" if which else "every block, same budget"
        notes.append(f"{variant} ({what}, {where}): forget acc {before['forget_acc']:.2f} → {m['forget_acc']:.2f}, "
                     f"retain kept {m['retain_kept']:.0%}, perplexity {m['perplexity_change']:+.1%}, paraphrase acc "
                     f"{before['paraphrase_acc']:.2f} → {m['paraphrase_acc']:.2f} in {m['steps']} steps.")
    for variant, *_ in variants:
        m = metrics[variant]
        met = {k: (m[k] <= t + 1e-6 if op == "<=" else m[k] >= t - 1e-6) if math.isfinite(m[k]) else False
               for k, (op, t) in GOALS.items()}
        m["goals_met"] = met
        failed = [f"{k} {m[k]:.2f} (goal {op} {t})" for k, (op, t) in GOALS.items() if not met[k]]
        notes.append(f"{variant}: " + ("meets every goal." if not failed else "misses " + ", ".join(failed) + "."))
    metrics["goals_met_by"] = [v for v, *_ in variants if all(metrics[v]["goals_met"].values())]
    if con is not None and "unconstrained" in metrics:
        un = metrics["unconstrained"]
        better = con["retain_kept"] >= un["retain_kept"] and con["perplexity_change"] <= un["perplexity_change"]
        notes.append(f"The constrained SHA256 run is {'' if better else 'not '}better than the unconstrained one on "
                     "both retain and perplexity.")
    missing = [k for k, v in {**before, **{f"{v}.retain_kept": metrics[v]["retain_kept"] for v, *_ in variants}}.items()
               if not math.isfinite(v)]
    if missing:
        notes.append(f"Not measured (stored as null): {', '.join(missing)} (an empty set, or a zero baseline).")
    return Result(analysis="unlearning", config=config, provenance=provenance(model, config),
                  tables={"summary": summary, "log": pd.DataFrame(logs),
                          "neuron_changes": pd.concat(changes, ignore_index=True)},
                  metrics=scrub(metrics)[0], notes=notes)
