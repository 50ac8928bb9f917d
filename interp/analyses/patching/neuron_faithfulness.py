"""Neuron-level faithfulness everywhere: AtP and RelP against activation patching for single neurons at every
layer and every kind of position, not only late layers at the last token.

For each pair (IOI, or capital facts whose subject is swapped), every position is put in one class:

- ``subject``: a position where the clean and corrupt prompts differ (the IOI names, the fact's subject);
- ``last``: the last token (where the metric is read);
- ``other``: any other position after the first difference (before it, both runs see the same tokens and every
  method scores 0 exactly: left out).

Sampled per layer and class (``sample``): ``n_random`` neurons drawn at random plus the ``top_k`` with the largest
mean |AtP| over the pairs at that class's positions; each is patched at one position of the class in every pair
(drawn at random among the pair's positions of that class). AtP and RelP come from one backward pass per method
over every neuron at every position; activation patching runs each sampled (pair, layer, position, neuron) alone
(rows batched, checkpointed like ``patching``). ``summary`` gives, per layer, class and method, the pooled
Pearson and Spearman with percentile bootstrap intervals over pairs.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.analyses.base import register
from interp.analyses.patching.engine import (
    Batch,
    PatchingConfig,
    _runs,
    at_last,
    baseline,
    gradient_scores,
    load_pairs_for,
    prepare,
)
from interp.analyses.patching.faithfulness import bootstrap
from interp.datasets.prompts import Pair, load_facts, pairs_hash
from interp.errors import InterpError
from interp.names import hook_name
from interp.paths import runs_root
from interp.result import Config, Result, option, provenance
from interp.scale.sweep import checkpointed_sweep
from interp.storage.cache import Entry
from interp.tracing import Write, intervene

CLASSES = ("subject", "last", "other")
TRUSTED = 0.8  # the Pearson below which a layer's cheap scores are called untrustworthy


@dataclass(frozen=True)
class NeuronFaithfulnessConfig(Config):
    NOT_IDENTITY: ClassVar[tuple[str, ...]] = ("batch_rows",)  # how rows are batched does not change a score
    dataset: str = option("ioi", "ioi, facts (capital facts, the subject swapped for another of the same length) or "
                          "a JSONL of pairs", flags=("-d",))
    n: int = option(8, "pairs", min=1)
    n_random: int = option(8, "random neurons per layer and position class", min=0)
    top_k: int = option(8, "plus each layer's top neurons by mean |AtP| per position class", min=0)
    layers: tuple[int, ...] = option((), "e.g. 0-3,29 (default: all)", min=0)
    metric: str = option("logit_diff", "logit_diff or prob", choices=("logit_diff", "prob"))
    batch_rows: int = option(128, "patched rows per forward pass", min=1)
    n_boot: int = option(1000, "bootstrap resamples of the pairs", min=10)
    spearman_boot: int = option(200, "resamples for Spearman's interval", min=10)


def fact_pairs(model, n: int, seed: int = 0) -> list[Pair]:
    """Capital facts as patching pairs: the clean prompt's subject swapped for another fact's subject whose prompt
    has as many tokens (answer: the clean capital; wrong: the other's); capitals of one token only."""
    def one_token(f) -> bool:
        try:
            model.answer_token(f.prompt, f.answer)
            return True
        except InterpError:
            return False

    facts = [f for f in load_facts("builtin:capitals") if one_token(f)]  # the logit difference needs one token each
    length = {f.prompt: len(model.encode(f.prompt)) for f in facts}
    rng = np.random.default_rng(seed)
    pairs = []
    for i in rng.permutation(len(facts)):
        f = facts[int(i)]
        others = [g for g in facts if g.answer != f.answer and length[g.prompt] == length[f.prompt]]
        if others:
            g = others[int(rng.integers(len(others)))]
            pairs.append(Pair(f.prompt, g.prompt, f.answer, g.answer))
        if len(pairs) == n:
            break
    if not pairs:
        raise InterpError(f"no two capital facts tokenize to the same length on {model.spec}")
    return pairs


def position_classes(batch: Batch) -> Int[Tensor, "batch pos"]:
    """Each position's class (an index into ``CLASSES``), -1 for padding and for positions before the pair's first
    difference."""
    B, T = batch.clean.shape
    pos = torch.arange(T, device=batch.clean.device)[None].expand(B, T)
    differs = batch.clean != batch.corrupt
    first = torch.where(differs.any(1), differs.float().argmax(1), batch.lengths)
    out = torch.full((B, T), CLASSES.index("other"), dtype=torch.long, device=pos.device)
    out[differs] = CLASSES.index("subject")
    out[pos == batch.last[:, None]] = CLASSES.index("last")
    out[(pos < first[:, None]) | (pos >= batch.lengths[:, None])] = -1
    return out


def sample(atp: dict[int, Float[Tensor, "batch pos d_mlp"]], classes: Int[Tensor, "batch pos"], n_random: int,
           top_k: int, seed: int) -> pd.DataFrame:
    """The (pair, layer, pos, neuron) rows to patch: per layer and class, random neurons plus the top ``top_k`` by
    mean |AtP| at the class's positions, each at one position of that class per pair (drawn at random)."""
    rng = np.random.default_rng(seed)
    cls = classes.cpu().numpy()
    B = cls.shape[0]
    at = {c: [rng.choice(np.flatnonzero(cls[b] == c)) if (cls[b] == c).any() else -1 for b in range(B)]
          for c in range(len(CLASSES))}
    rows = []
    for layer, scores in atp.items():
        d_mlp = scores.shape[-1]
        a = scores.abs().float().cpu().numpy()  # [B, T, d_mlp]
        for c, name in enumerate(CLASSES):
            mask = cls == c
            if not mask.any():
                continue
            mean = a[mask].mean(0)  # over every (pair, position) of the class
            top = [int(i) for i in np.argsort(-mean, kind="stable")[:top_k]]
            rand = [int(i) for i in rng.choice(d_mlp, size=min(n_random, d_mlp), replace=False)]
            for neuron in dict.fromkeys(top + rand):
                kind = "top" if neuron in top else "random"
                rows += [{"pair": b, "layer": layer, "pos": int(at[c][b]), "cls": name, "neuron": neuron,
                          "kind": kind} for b in range(B) if at[c][b] >= 0]
    return pd.DataFrame(rows, columns=["pair", "layer", "pos", "cls", "neuron", "kind"])


@torch.no_grad()
def _patch_item(model, item, rows: pd.DataFrame, batch: Batch, base: Tensor, source_acts: dict, metric) -> Tensor:
    """One forward pass: each row patched alone (its neuron at its position set to the source run's value)."""
    layer, start, n = item
    part = rows.iloc[start:start + n]
    dev = model.device
    pair = torch.tensor(part.pair.to_numpy(), device=dev)
    site = hook_name("mlp_post", layer)
    write = Write(site, rows=torch.arange(n, device=dev), positions=torch.tensor(part.pos.to_numpy(), device=dev),
                  units=torch.tensor(part.neuron.to_numpy(), device=dev), source=source_acts[site].to(dev),
                  source_rows=pair)
    with intervene(model, [write]):
        logits = at_last(model(base.to(dev)[pair]), batch.last.to(dev)[pair])
    return metric(logits, pair).cpu()


def summarise(rows: pd.DataFrame, n_boot: int, spearman_boot: int, seed: int) -> pd.DataFrame:
    """Per layer, class and method: pooled Pearson and Spearman against activation patching, with bootstrap
    intervals over pairs; then per class and method over every layer (``layer`` -1)."""
    out = []
    for method in ("attribution", "relp"):
        for keys, df in [*rows.groupby(["layer", "cls"], sort=True), *rows.groupby(["cls"], sort=True)]:
            layer, cls = keys if len(keys) == 2 else (-1, keys[0])
            both = pd.DataFrame({"pair": df.pair, "score_a": df.activation, "score_b": df[method]})
            out.append({"method": method, "layer": int(layer), "cls": cls,
                        **bootstrap(both, n_boot, seed, spearman_boot=spearman_boot)})
    return pd.DataFrame(out)


def untrusted(summary: pd.DataFrame, below: float = TRUSTED) -> dict[str, list[int]]:
    """Per method and class, the layers whose pooled Pearson is below ``below``."""
    s = summary[summary.layer >= 0]
    return {f"{m}/{c}": sorted(int(x) for x in df.layer[df.pearson < below])
            for (m, c), df in s.groupby(["method", "cls"], sort=True)}


@register("neuron_faithfulness", NeuronFaithfulnessConfig)
def run(model, config: NeuronFaithfulnessConfig) -> Result:
    """AtP and RelP against activation patching for sampled single neurons at every layer and position class."""
    started = time.perf_counter()
    layers = [model.check_layer(l) for l in config.layers] or list(range(model.n_layers))
    patch = PatchingConfig(dataset="ioi" if config.dataset == "facts" else config.dataset, n=config.n,
                           components=("neurons",), metric=config.metric, seed=config.seed, method="attribution")
    pairs = fact_pairs(model, config.n, config.seed) if config.dataset == "facts" else load_pairs_for(model, patch)
    batch = prepare(model, pairs)
    b = baseline(model, patch, batch, layers)
    cheap = {m: gradient_scores(model, dataclasses.replace(patch, method=m), batch, layers, b.metric,
                                b.source_acts, every_position=True) for m in ("attribution", "relp")}
    classes = position_classes(batch)
    rows = sample({l: cheap["attribution"][("neurons", l)] for l in layers}, classes, config.n_random, config.top_k,
                  config.seed).sort_values(["layer", "cls", "neuron", "pair"], kind="stable").reset_index(drop=True)
    for m, scores in cheap.items():
        rows[m] = [float(scores[("neurons", l)][p, t, u]) for p, l, t, u in
                   zip(rows.pair, rows.layer, rows.pos, rows.neuron)]
    base, _ = _runs(patch, batch)
    items, key = {}, 0
    for layer, idx in rows.groupby("layer").indices.items():
        for start in range(int(idx[0]), int(idx[-1]) + 1, config.batch_rows):
            items[key] = (int(layer), start, min(config.batch_rows, int(idx[-1]) + 1 - start))
            key += 1
    entry = Entry(runs_root() / "neuron_faithfulness", ".checkpoints", model.weights_hash, checkpoint=True,
                  key={"config": config.identity(), "batch_rows": config.batch_rows,
                       "pairs": [p.to_dict() for p in pairs]})
    outputs = checkpointed_sweep(model, items, _patch_item, (rows, batch, base, b.source_acts, b.metric), entry,
                                 "activation patching", every=25, weight=lambda item: item[2],
                                 desc="activation patching", unit="run")
    patched = torch.cat([outputs[k] for k in sorted(outputs)]).double().numpy()
    rows["activation"] = patched - b.base_metric.double().cpu().numpy()[rows.pair.to_numpy()]
    summary = summarise(rows, config.n_boot, config.spearman_boot, config.seed)
    lengths = batch.lengths.cpu()
    pairs_df = pd.DataFrame([{"pair": i, **p.to_dict(), "n_tokens": int(lengths[i]),
                              "clean_tokens": model.to_str_tokens(batch.clean[i, : lengths[i]].tolist()),
                              "corrupt_tokens": model.to_str_tokens(batch.corrupt[i, : lengths[i]].tolist())}
                             for i, p in enumerate(pairs)])
    low = untrusted(summary)
    notes = [f"{config.dataset} (n={len(pairs)}), {config.metric}; per layer and position class {config.n_random} "
             f"random neurons plus the top {config.top_k} by mean |AtP|; 95% percentile bootstrap over pairs."]
    notes += [f"{k}: Pearson below {TRUSTED} at layers {v}" for k, v in low.items() if v]
    return Result(analysis="neuron_faithfulness", config=config, provenance=provenance(model, config),
                  tables={"rows": rows, "summary": summary, "pairs": pairs_df},
                  metrics={"n_pairs": len(pairs), "n_rows": len(rows), "seconds": time.perf_counter() - started,
                           "dataset_hash": pairs_hash(pairs_df), "below_0.8": low,
                           **{f"{r.method}/{r.cls}": r.pearson for r in summary[summary.layer < 0].itertuples()}},
                  notes=notes)
