"""Causal tracing (ROME, Meng et al. 2022): where does the model recall a fact?

For one fact: a clean run, and ``samples`` corrupted copies whose subject-token
embeddings get Gaussian noise of ``noise`` x (the embedding matrix's standard
deviation, measured from the model; ROME's default is 3x). Then, at each (token,
layer), restore one clean state in every corrupted copy:

- ``resid``: the residual stream leaving the block (``hook_resid_post``);
- ``mlp`` / ``attn``: the MLP or attention outputs of a window of ``window`` layers
  centred on the layer (ROME uses 10 of GPT-2 XL's 48 layers; the default scales that
  to the model's depth: ``round(10 * n_layers / 48)``, at least 1).

Indirect effect = P(answer | corrupted, restored) - P(answer | corrupted), averaged over
the noise samples. Restorations are batched (``batch_rows`` rows a forward pass);
positions before the first subject token are never touched by the noise, so restoring
them changes nothing and they are filled in without a run.

Scale-out and resume: facts are independent items of a sweep (``interp.scale.sweep``), run
in this process or over Ray actors (``workers``) with the same Result, and checkpointed
every ``checkpoint_every`` facts under ``$INTERP_RUNS/causal_tracing/.checkpoints/``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from interp.analyses.base import register
from interp.datasets.prompts import Fact, load_facts, subject_positions
from interp.errors import InterpError
from interp.metrics import score_facts
from interp.names import hook_name
from interp.paths import runs_root
from interp.result import Config, Result, option, provenance
from interp.scale.sweep import checkpointed_sweep
from interp.storage.cache import Entry
from interp.tracing import Write, intervene, record

KINDS = {"resid": "resid_post", "mlp": "mlp_out", "attn": "attn_out"}


@dataclass(frozen=True)
class TraceConfig(Config):
    VERSION = 2  # 2: the noise is scaled to the embeddings the model uses (Gemma's sqrt(d_model))
    facts: str = option("builtin:capitals", "a facts JSONL or builtin:NAME", flags=("-f",))
    n: int = option(10, "facts the model knows to trace (0: all)", min=0)
    kinds: tuple[str, ...] = option(("resid", "mlp", "attn"), "any of resid, mlp, attn", flags=("--kind",),
                                    choices=tuple(KINDS), nonempty=True)
    noise: float = option(3.0, "x the embedding standard deviation (ROME: 3; beyond 1000 the noised embeddings "
                                "saturate the model and nothing is left to restore)", min=0, max=1000)
    samples: int = option(10, "noise samples per fact", min=1)
    window: int = option(0, "layers restored for mlp/attn (0: 10/48 of the depth)", min=0)
    batch_rows: int = option(256, "rows per forward pass", min=1)
    subject_only: bool = option(False, "restore only at the last subject token (fast; what unlearning uses)")
    workers: int = option(1, "Ray workers, facts shared among them (needs Ray); 1: in-process",
                          flags=("-w",), min=1)
    checkpoint_every: int = option(1, "facts between checkpoints (0: off)", min=0)
    launcher: str = option("ray", "where --workers run: ray (actors on a local or RAY_ADDRESS cluster) or submitit "
                           "(a SLURM array job; local processes where SLURM is absent)", choices=("ray", "submitit"))
    NOT_IDENTITY = ("workers", "checkpoint_every", "launcher")


def window_size(model, window: int) -> int:
    return window if window > 0 else max(1, round(10 * model.n_layers / 48))


def embed_std(model) -> float:
    """The standard deviation of the embeddings as they enter the residual stream: the embedding
    matrix's, times any scale the embedding applies in its forward (Gemma multiplies by sqrt(d_model);
    measured on a few tokens, exactly 1.0 elsewhere). Noise drawn at the raw matrix's scale would be
    25x too weak for Gemma 3 and leave the subject readable."""
    ids = torch.arange(min(256, model.d_vocab), device=model.device)
    with torch.no_grad():
        used = model.bridge.embed(ids[None])[0].float()
    raw = model.weights.W_E[ids].float()
    return float(model.weights.W_E.float().std()) * float(used.norm() / raw.norm())


def _window(layer: int, size: int, n_layers: int) -> list[int]:
    lo = max(0, min(layer - size // 2, n_layers - size))
    return list(range(lo, min(n_layers, lo + size)))


def trace_fact(model, fact: Fact, answer: int, config: TraceConfig, progress=None) -> dict:
    """Indirect effects ``[kind] -> [layer, pos]`` of one fact, plus the clean and corrupted probabilities."""
    tokens = model.to_tokens(fact.prompt)
    T = tokens.shape[1]
    subj = subject_positions(model, fact.prompt, fact.subject)
    S, L = config.samples, model.n_layers
    gen = torch.Generator().manual_seed(config.seed)
    noise = torch.randn(S, len(subj), model.d_model, generator=gen, device="cpu") * config.noise * embed_std(model)
    noise = noise.to(model.device, model.dtype)
    subj_idx = torch.tensor(subj, device=model.device)
    embed = hook_name("embed")

    def corrupt(rows: int) -> Write:  # rows are grouped by sample: row r carries noise r % S
        return Write(embed, positions=subj_idx, add=noise.repeat(rows // S, 1, 1), outer=True)

    sites = {k: [hook_name(site, l) for l in range(L)] for k, site in KINDS.items() if k in config.kinds}
    with torch.no_grad(), record(model, [s for v in sites.values() for s in v]) as clean:
        p_clean = float(model(tokens)[0, -1].float().softmax(-1)[answer])
    clean = dict(clean)
    with torch.no_grad(), intervene(model, [corrupt(S)]):
        p_corrupt = float(model(tokens.repeat(S, 1))[:, -1].float().softmax(-1)[:, answer].mean())
    size = window_size(model, config.window)
    positions = [subj[-1]] if config.subject_only else list(range(subj[0], T))
    effects = {}
    for kind in sites:
        grid = torch.zeros(L, T, device="cpu")
        combos = [(l, t) for l in range(L) for t in positions]
        per_run = max(1, config.batch_rows // S)
        for start in range(0, len(combos), per_run):
            chunk = combos[start:start + per_run]
            writes = [corrupt(len(chunk) * S)]
            # which rows restore which (layer, position): row block j restores chunk[j]
            by_layer: dict[int, list[tuple[int, int]]] = {}
            for j, (l, t) in enumerate(chunk):
                for layer in ([l] if kind == "resid" else _window(l, size, L)):
                    by_layer.setdefault(layer, []).append((j, t))
            for layer, items in by_layer.items():
                rows = torch.tensor([j * S + s for j, _ in items for s in range(S)], device=model.device)
                pos = torch.tensor([t for _, t in items for _ in range(S)], device=model.device)
                site = sites[kind][layer]  # restore the clean run's state (its row 0) at (row, position)
                writes.append(Write(site, rows=rows, positions=pos, source=clean[site], source_rows=0))
            with torch.no_grad(), intervene(model, writes):
                probs = model(tokens.repeat(len(chunk) * S, 1))[:, -1].float().softmax(-1)[:, answer]
            for j, (l, t) in enumerate(chunk):
                grid[l, t] = float(probs[j * S:(j + 1) * S].mean()) - p_corrupt
            if progress is not None:
                progress.update(len(chunk))
        effects[kind] = grid
    return {"effects": effects, "p_clean": p_clean, "p_corrupt": p_corrupt, "subject": subj, "tokens": T,
            "positions": positions}



def _trace_item(model, item, config: TraceConfig, progress=None) -> dict:
    prompt, subject, answer, relation, answer_id = item
    return trace_fact(model, Fact(prompt, subject, answer, relation), answer_id, config, progress)


def _trace_sweep(model, config: TraceConfig, known) -> dict[int, dict]:
    """Every known fact traced, here or over Ray actors, checkpointed (see the module docstring)."""
    items = {i: (f.prompt, f.subject, f.answer, f.relation, int(f.answer_id)) for i, f in enumerate(known.itertuples())}
    entry = Entry(runs_root() / "causal_tracing", ".checkpoints", model.weights_hash, checkpoint=True,
                  key={"config": config.identity(), "facts": list(items.values())})

    def restorations(item) -> int:
        prompt, subject = item[0], item[1]
        first = subject_positions(model, prompt, subject)[0]
        n = 1 if config.subject_only else len(model.encode(prompt)) - first
        return n * model.n_layers * len(config.kinds)

    return checkpointed_sweep(model, items, _trace_item, (config,), entry, "causal tracing", workers=config.workers,
                              every=config.checkpoint_every, weight=restorations, desc="causal tracing",
                              unit="restoration", launcher=config.launcher)


@register("causal_tracing", TraceConfig)
def run(model, config: TraceConfig, facts: list[Fact] | None = None) -> Result:
    """ROME-style causal tracing of facts the model knows: indirect effect per (layer, token)."""
    facts = facts if facts is not None else load_facts(config.facts)
    scored = score_facts(model, facts, want=config.n or None)  # a long file is scored only as far as needed
    known = scored[scored.correct]
    if known.empty:
        raise InterpError(f"the model answers none of the {len(scored)} facts correctly: nothing to trace")
    known = known.head(config.n) if config.n else known
    rows, tokens_rows = [], []
    outputs = _trace_sweep(model, config, known)
    for i, f in enumerate(known.itertuples()):
        out = outputs[i]
        strs = model.to_str_tokens(f.prompt)
        last_subj = out["subject"][-1]
        for kind, grid in out["effects"].items():
            for layer in range(model.n_layers):
                for t in range(out["tokens"]):
                    role = ("last subject" if t == last_subj else "subject" if t in out["subject"]
                            else "last" if t == out["tokens"] - 1 else "before" if t < out["subject"][0]
                            else "after subject")
                    rows.append({"fact": f.Index, "kind": kind, "layer": layer, "pos": t, "token": strs[t],
                                 "role": role, "effect": float(grid[layer, t]),
                                 "traced": t in out["positions"]})
        tokens_rows.append({"fact": f.Index, "prompt": f.prompt, "subject": f.subject, "answer": f.answer,
                            "p_clean": out["p_clean"], "p_corrupt": out["p_corrupt"]})
    effects = pd.DataFrame(rows)
    facts_df = pd.DataFrame(tokens_rows)
    mlp = effects[(effects.kind == "mlp") & (effects.role == "last subject")] if "mlp" in config.kinds else None
    metrics = {"n_facts": len(facts_df), "noise_std": config.noise * embed_std(model), "embed_std": embed_std(model),
               "window": window_size(model, config.window), "samples": config.samples,
               "mean_p_clean": float(facts_df.p_clean.mean()), "mean_p_corrupt": float(facts_df.p_corrupt.mean())}
    if mlp is not None and len(mlp):
        by_layer = mlp.groupby("layer").effect.mean()
        metrics["mlp_peak_layers"] = [int(l) for l in by_layer.sort_values(ascending=False).index[:5]]
        metrics["mlp_peak_effect"] = float(by_layer.max())
    notes = [f"Noise {config.noise} x embedding std ({metrics['embed_std']:.4f}), {config.samples} samples, "
             f"window {metrics['window']} layers for mlp/attn (ROME: 10 of 48 layers, scaled to {model.n_layers})."]
    if "mlp_peak_layers" in metrics:
        notes.append(f"The MLP effect at the last subject token peaks at layers {metrics['mlp_peak_layers'][:3]}.")
    return Result(analysis="causal_tracing", config=config, provenance=provenance(model, config),
                  tables={"effects": effects, "facts": facts_df}, metrics=metrics, notes=notes)
