"""Bigram subnetworks (Chang & Bergen, 2025): a mask over the block weights that makes the
model predict P(next | current token) alone, where it lives, and whether it matters.

Method (the authors' code, on NeuroSurgeon's continuous sparsification; ``interp.tracing.masks``):
one mask logit per block weight (attention Q/K/V/O, MLP gate/up/down), starting at
``init``; training uses ``W * sigmoid(T s)``, evaluation ``s > 0``. Loss: soft-target
cross-entropy between the masked model's next-token distribution and the corpus bigram
distribution (``interp.datasets.bigrams``), plus ``lam * mean(sigmoid(T s))``. ``T`` is
multiplied by ``t_mult`` each step; training stops when under 1% of weights are undecided
or after ``steps``. The "optimal pruning" comparison mask is trained the same way to match
the full model's own predictions.

Paper settings (the full protocol, for a GPU): AdamW lr 5e-5, batch 32 x 128 tokens, up
to 15k steps, ``t_mult`` 1.001, ``lam`` 10, OSCAR English. The CPU protocol (the defaults)
changes: sequences of 32 tokens, batch 8, 300 steps, mask lr 0.05, ``t_mult`` 1.016 (T reaches
about 117 by the end), and the corpus is Python's docs plus text sampled from the model (a
proxy for its training data). One step takes several seconds on 2 CPU cores: every one of the
~106M mask logits is read, sigmoid-ed and updated by AdamW.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from interp.analyses.base import register
from interp.analyses.subnetworks.surprisal import heldout_windows, surprisal_metrics, surprisal_rows
from interp.datasets.bigrams import BigramTable, count_bigrams
from interp.datasets.corpus import load_corpus, token_windows
from interp.errors import InterpError
from interp.names import hook_name
from interp.paths import runs_root
from interp.progress import bar
from interp.result import Config, Result, option, provenance
from interp.storage.cache import Entry, load_tensors, save_tensors
from interp.tracing import record
from interp.tracing.masks import Masks, masked, random_like

MIN_TOKENS = 2000


@dataclass(frozen=True)
class BigramConfig(Config):
    VERSION = 2  # 2: the paper's surprisal correlation on held-out text
    corpus: str = option("stdlib-docs+sampled:8192",
                         "text for the bigram counts and the training windows", flags=("-c",))
    corpus_tokens: int = option(60_000, "tokens of the corpus to count and train on", min=1)
    params: str = option("all", "all (attention + MLP block weights), mlp or attn", choices=("all", "mlp", "attn"))
    steps: int = option(300, "CPU protocol 300; the paper: 15000 (with --device cuda)", min=1)
    batch_size: int = option(8, "windows per step", min=1)
    seq_len: int = option(32, "tokens per window", min=2)
    lr: float = option(0.05, "mask learning rate (the paper: 5e-5 over 15k steps)", above=0)
    lam: float = option(10.0, "sparsity penalty weight", above=0, max=1e4)
    t_mult: float = option(1.016, "temperature multiplier per step (the paper: 1.001)", min=1)
    init: float = option(0.0, "initial mask logit")
    eval_windows: int = option(16, "held-out windows for evaluation", min=1)
    random_seeds: int = option(3, "random subnetworks of the same size to compare with", min=0)
    optimal_pruning: bool = option(True, "also train the optimal-pruning mask to compare with")
    checkpoint_every: int = option(20, "steps between checkpoints (0: off)", min=0)
    heldout_tokens: int = option(8192, "held-out tokens (after corpus_tokens) for the surprisal correlation", min=64)
    NOT_IDENTITY = ("checkpoint_every",)


def corpus_stream(model, config: BigramConfig) -> Tensor:
    windows = list(token_windows(model, load_corpus(config.corpus, model), config.seq_len, config.corpus_tokens))
    stream = torch.tensor([t for w in windows for t in w], device="cpu")
    if len(stream) < MIN_TOKENS:
        raise InterpError(f"corpus {config.corpus!r} gives {len(stream)} tokens; bigram estimates need at least "
                          f"{MIN_TOKENS:,} (the CPU protocol uses 60,000)")
    return stream


def soft_ce(logits: Tensor, target: Tensor) -> Tensor:
    return -(target * logits.float().log_softmax(-1)).sum(-1).mean()


def _checkpoint(config: BigramConfig, model, kind: str) -> Entry:
    return Entry(runs_root() / "bigram_subnetworks", ".checkpoints", f"{model.weights_hash}-{kind}",
                 key=config.identity(), checkpoint=True)


def _save_checkpoint(entry: Entry, masks: Masks, opt, state: dict) -> None:
    """Mask logits, the optimizer's ``state_dict()`` and the step, replaced together, atomically."""
    with entry.write() as tmp:
        save_file({n: m.logits.detach().contiguous() for n, m in masks.masks.items()}, tmp / "logits.safetensors")
        save_tensors(tmp / "optimizer.safetensors", opt.state_dict())
        (tmp / "state.json").write_text(json.dumps(state))


def _load_checkpoint(path: Path) -> tuple[dict, dict, dict]:
    return (json.loads((path / "state.json").read_text()), load_file(path / "logits.safetensors"),
            load_tensors(path / "optimizer.safetensors"))


def train_mask(model, masks: Masks, train: Tensor, target_fn, config: BigramConfig, kind: str) -> list[dict]:
    """Optimise the mask logits only; checkpoints every ``checkpoint_every`` steps and resumes."""
    opt = torch.optim.AdamW(masks.parameters(), lr=config.lr, weight_decay=0.0)
    where = _checkpoint(config, model, kind)
    log, start, T, undecided, kept = [], 0, 1.0, 1.0, float("nan")
    resumed = where.read(_load_checkpoint) if config.checkpoint_every else None
    if resumed is not None:
        state, logits, opt_state = resumed
        masks.load_logits(logits)
        opt.load_state_dict(opt_state)
        start, T, log = state["step"], state["T"], state["log"]
    n_windows = len(train)
    with bar(range(start, config.steps), desc=f"mask ({kind})", unit="step", initial=start,
              total=config.steps) as progress, torch.enable_grad():
        for step in progress:
            rows = torch.arange(step * config.batch_size, (step + 1) * config.batch_size, device="cpu") % n_windows
            tokens = train[rows].to(model.device)
            masks.set("soft", T=T)
            logits = model(tokens)
            fit = soft_ce(logits, target_fn(tokens))
            loss = fit + config.lam * masks.soft_mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            last = step + 1 == config.steps
            if step % 5 == 4 or last:  # two passes over every logit: not every step
                undecided = masks.undecided()
                kept = sum(int((m.logits > 0).sum()) for m in masks.masks.values()) / masks.n_params()
            log.append({"step": step, "loss": float(fit.detach()), "T": T, "kept": kept, "undecided": undecided})
            progress.set_postfix(loss=f"{float(fit.detach()):.3f}", kept=f"{kept:.4f}", undecided=f"{undecided:.3f}")
            T *= config.t_mult
            done = undecided < 0.01
            if config.checkpoint_every and ((step + 1) % config.checkpoint_every == 0 or done or last):
                _save_checkpoint(where, masks, opt, {"step": step + 1, "T": T, "log": log})
            if done:
                break
    masks.set("hard")
    return log


def layout(model, hard: dict[str, Tensor]) -> pd.DataFrame:
    where = {b.name: b for b in model.block_params}
    rows = []
    for name, keep in hard.items():
        b = where[name]
        rows.append({"layer": b.layer, "block": b.part, "matrix": b.matrix, "kept": int(keep.sum()),
                     "size": keep.numel(), "fraction": float(keep.float().mean())})
    return pd.DataFrame(rows)


def _scores(model, windows: Tensor, table: BigramTable) -> dict:
    """Soft CE and KL against the bigram distribution, and the LM loss, on ``windows``."""
    windows = windows.to(model.device)
    with torch.no_grad():
        logits = model(windows).float()
        target = table.dist(windows)
        logp = logits.log_softmax(-1)
        ce = float(-(target * logp).sum(-1).mean())
        entropy = float(-(target * target.clamp_min(1e-30).log()).sum(-1).mean())
        lm = float(torch.nn.functional.cross_entropy(logp[:, :-1].flatten(0, 1), windows[:, 1:].flatten()))
    return {"bigram_ce": ce, "bigram_kl": ce - entropy, "lm_loss": lm}


def geometry(model, windows: Tensor) -> pd.DataFrame:
    """Per layer: mean cosine of the residual stream with the current token's embedding and
    with the next token's unembedding."""
    sites = [hook_name("resid_post", l) for l in range(model.n_layers)]
    W_E, W_U = model.weights.W_E.float(), model.weights.W_U.float()
    cur, nxt = windows[:, :-1], windows[:, 1:]
    with torch.no_grad(), record(model, sites) as acts:
        model(windows)
    rows = []
    for l, site in enumerate(sites):
        r = acts[site][:, :-1].float()
        cos = torch.nn.functional.cosine_similarity
        rows.append({"layer": l, "current_embedding": float(cos(r, W_E[cur], dim=-1).mean()),
                     "next_unembedding": float(cos(r, W_U.T[nxt], dim=-1).mean())})
    return pd.DataFrame(rows)


def evaluate(model, masks: Masks, hard: dict[str, Tensor], windows: Tensor, table, config) -> tuple:
    fraction = sum(int(k.sum()) for k in hard.values()) / masks.n_params()
    rows = []
    masks.set("off")
    rows.append({"model": "full", **_scores(model, windows, table)})
    masks.set_fixed(hard)
    rows.append({"model": "subnetwork", **_scores(model, windows, table)})
    geo_sub = geometry(model, windows).assign(model="subnetwork")
    masks.set_fixed({n: ~k for n, k in hard.items()})
    rows.append({"model": "complement", **_scores(model, windows, table)})
    for seed in range(config.random_seeds):
        rand = random_like(hard, fraction, seed)
        masks.set_fixed(rand)
        rows.append({"model": "random subnetwork", "seed": seed, **_scores(model, windows, table)})
        masks.set_fixed({n: ~k for n, k in rand.items()})
        rows.append({"model": "random complement", "seed": seed, **_scores(model, windows, table)})
    masks.set("off")
    geo = pd.concat([geometry(model, windows).assign(model="full"), geo_sub], ignore_index=True)
    return pd.DataFrame(rows), geo, fraction



@register("bigram_subnetworks", BigramConfig, mutates_weights=True)
def run(model, config: BigramConfig) -> Result:
    """Learn a bigram subnetwork and measure its size, location, sufficiency and necessity."""
    started = time.perf_counter()
    stream = corpus_stream(model, config)
    table = count_bigrams(stream, model.d_vocab)
    windows = stream[: len(stream) // config.seq_len * config.seq_len].view(-1, config.seq_len)
    held, train = windows[: config.eval_windows].to(model.device), windows[config.eval_windows:]
    logs = []
    with masked(model, config.params, config.init) as masks:
        log = train_mask(model, masks, train, table.dist, config, "bigram")
        logs += [{"mask": "bigram", **e} for e in log]
        hard = {n: k.cpu() for n, k in masks.hard().items()}
        scores, geo, fraction = evaluate(model, masks, hard, held, table, config)
        try:
            heldout = heldout_windows(model, config.corpus, config.corpus_tokens, config.heldout_tokens,
                                      config.seq_len)
            surprisal = surprisal_rows(model, masks, hard, heldout, table, config.random_seeds)
        except InterpError as exc:  # a corpus with nothing past the counted tokens: said in the notes
            surprisal, no_surprisal = None, str(exc)
        overlap = {}
        if config.optimal_pruning:
            masks.load_logits({n: torch.full_like(m.logits, config.init) for n, m in masks.masks.items()})

            def full_model(tokens: Tensor) -> Tensor:
                masks.set("off")
                with torch.no_grad():
                    out = model(tokens).float().softmax(-1)
                masks.set("soft")
                return out

            log = train_mask(model, masks, train, full_model, config, "pruning")
            logs += [{"mask": "optimal pruning", **e} for e in log]
            prune = {n: k.cpu() for n, k in masks.hard().items()}
            inter = sum(int((hard[n] & prune[n]).sum()) for n in hard)
            union = sum(int((hard[n] | prune[n]).sum()) for n in hard)
            kept_b = sum(int(k.sum()) for k in hard.values())
            prune_fraction = sum(int(k.sum()) for k in prune.values()) / masks.n_params()
            overlap = {"jaccard": inter / max(1, union), "bigram_inside_pruning": inter / max(1, kept_b),
                       "pruning_fraction": prune_fraction,
                       "random_expectation_inside": prune_fraction}
        n_params = masks.n_params()
    where = layout(model, hard)
    by_layer = where.groupby("layer").kept.sum()
    first_mlp = where[(where.layer == 0) & (where.block == "mlp")].kept.sum()
    sc = scores.groupby("model")[["bigram_ce", "bigram_kl", "lm_loss"]].mean()
    metrics = {
        "kept_fraction": fraction, "kept_params": int(sum(int(k.sum()) for k in hard.values())),
        "masked_params": n_params, "share_in_layer0_mlp": float(first_mlp / max(1, by_layer.sum())),
        "top_layer": int(by_layer.idxmax()) if by_layer.sum() else None,
        "coverage": table.coverage(), "steps": len([e for e in logs if e["mask"] == "bigram"]),
        "seconds": time.perf_counter() - started,
        "sufficiency_kl": {m: float(sc.loc[m, "bigram_kl"]) for m in ("full", "subnetwork", "random subnetwork")},
        "necessity_lm_loss": {m: float(sc.loc[m, "lm_loss"]) for m in ("full", "complement", "random complement")},
        "overlap": overlap,
        "surprisal": surprisal_metrics(surprisal) if surprisal is not None else {},
    }
    notes = [f"Corpus {config.corpus!r}: Python's docs plus text sampled from the model, a proxy for its training "
             f"data; {metrics['coverage']['n_tokens']:,} tokens, {metrics['coverage']['contexts_covered']:,} "
             f"contexts seen at least {metrics['coverage']['min_count']} times.",
             f"CPU protocol: {config.steps} steps max of {config.batch_size} x {config.seq_len} tokens, mask lr "
             f"{config.lr}, T x{config.t_mult} per step, lam {config.lam} (paper: 15k steps of 32 x 128, lr 5e-5, "
             "T x1.001)."]
    if surprisal is None:
        notes.append(f"No surprisal correlation: {no_surprisal}")
    else:
        sub, full = metrics["surprisal"]["subnetwork"], metrics["surprisal"]["full"]
        notes.append(f"Surprisal vs bigram surprisal on held-out text (Pearson r, infinite dropped / replaced by the "
                     f"max): subnetwork {sub['pearson_dropped']:.3f} / {sub['pearson_max']:.3f}, full model "
                     f"{full['pearson_dropped']:.3f} / {full['pearson_max']:.3f}.")
    kept_idx = {f"kept/{n}": pack(k) for n, k in hard.items()}
    return Result(
        analysis="bigram_subnetworks", config=config, provenance=provenance(model, config),
        tables={"layout": where, "scores": scores, "geometry": geo, "log": pd.DataFrame(logs),
                **({"surprisal": surprisal} if surprisal is not None else {})},
        tensors={**kept_idx, "bigram/row_ptr": table.row_ptr, "bigram/next": table.next,
                 "bigram/counts": table.counts, "bigram/unigram": table.unigram, "bigram/context": table.context},
        metrics=metrics, notes=notes)


def pack(keep: Tensor) -> Tensor:
    """A boolean mask in few bytes: the kept indices (int32) when sparse, else 8 flags a byte (uint8)."""
    flat = keep.flatten()
    if int(flat.sum()) * 32 < flat.numel():
        return flat.nonzero()[:, 0].int()
    return torch.from_numpy(np.packbits(flat.numpy()))
