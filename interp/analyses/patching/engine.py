"""Patching: activation patching (the ground truth), attribution patching and RelP.

One engine, three methods, one Result layout, so any two runs can be compared
(``interp.analyses.patching.read.compare``).

- **Components** (``components``): ``resid`` (residual stream entering each layer,
  ``hook_resid_pre``, layer x position), ``attn_out`` and ``mlp_out`` (layer x
  position), ``heads`` (``hook_z`` of one head at every position, layer x head) and
  ``neurons`` (``hook_post`` at ``neuron_pos``, layer x neuron).
- **Direction**: ``denoising`` (default, as in RelP) runs the corrupted prompt and
  patches in the clean activation; ``noising`` runs the clean prompt and patches in
  the corrupted one. Either way the score is ``metric(patched) - metric(base run)``.
- **Methods**:
  - ``activation``: one forward pass per (pair, component), batched ``batch_rows``
    rows at a time;
  - ``attribution``: ``(a_source - a_base) . d metric / d a`` on the base run, from one
    forward pass of each prompt and one backward pass (Nanda, 2023; Syed et al., 2023);
  - ``relp``: the same, with the backward pass in LRP mode (``interp.tracing.lrp``).
- **Metric**: ``logit_diff`` (answer - wrong, default), ``prob`` (answer probability)
  or ``kl`` (minus KL(clean || run)), at the last position.

Scale-out and resume (activation patching, the slow method): the patched rows are cut
into items of ``batch_rows`` rows of one (component, layer), which run in this process or
over Ray actors (``workers``, ``interp.scale.sweep``) - the same forward passes either way,
so the Result is the same - and are checkpointed every ``checkpoint_every`` items under
``$INTERP_RUNS/patching/.checkpoints/``; a rerun of a killed run continues from there.

Pairs must tokenize to the same length: patching aligns positions one to one, so a
pair whose prompts differ in length is refused with both tokenizations shown.
Pairs of different lengths are right-padded into one batch; heatmaps align positions from the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from interp.analyses.base import register
from interp.datasets.prompts import Pair, pairs_hash
from interp.errors import InterpError
from interp.metrics import answer_prob, kl_div, logit_diff
from interp.names import hook_name
from interp.paths import runs_root
from interp.result import Config, Result, option, provenance
from interp.scale.sweep import checkpointed_sweep
from interp.storage.cache import Entry
from interp.tracing import Write, intervene, record, track_grad
from interp.tracing.lrp import Rules, lrp_mode

# component -> interp site; position components are scored per (layer, position)
COMPONENTS = {"resid": "resid_pre", "attn_out": "attn_out", "mlp_out": "mlp_out",
              "heads": "attn_z", "neurons": "mlp_post"}
POSITIONAL = ("resid", "attn_out", "mlp_out")
METHODS = ("activation", "attribution", "relp")
METRICS = ("logit_diff", "prob", "kl")
DIRECTIONS = ("denoising", "noising")
IOI_SETS = {"ioi": "templates", "ioi-fresh": "fresh_templates"}  # generated pair sets -> their templates


@dataclass(frozen=True)
class PatchingConfig(Config):
    dataset: str = option("ioi", "ioi or ioi-fresh (generated from the builtin or the fresh templates) or a JSONL "
                          "of clean/corrupt/answer/wrong", flags=("-d",))
    n: int = option(16, "pairs (the first n of a file; 0 = all)", min=0)
    method: str = option("relp", "activation, attribution or relp", choices=METHODS)
    components: tuple[str, ...] = option(("resid", "attn_out", "mlp_out", "heads"),
                                         "any of resid, attn_out, mlp_out, heads, neurons", choices=tuple(COMPONENTS),
                                         nonempty=True)
    metric: str = option("logit_diff", "logit_diff, prob or kl", choices=METRICS)
    direction: str = option("denoising", "denoising: clean patched into the corrupt run; noising: the reverse",
                            choices=DIRECTIONS)
    rules: str = option("default", "LRP rules for relp: default (ln,identity,half), all, or a list")
    layers: tuple[int, ...] = option((), "e.g. 0-3,29 (default: all)", min=0)
    neuron_pos: int = option(-1, "position of the neuron component")
    neurons: tuple[int, ...] = option((), "neuron indices (in each layer) for the neurons component, e.g. 808,12 "
                                      "(default: all)", min=0)
    batch_rows: int = option(128, "rows per forward pass in activation patching", min=1)
    workers: int = option(1, "Ray workers for activation patching (needs Ray); 1: in-process",
                          flags=("-w",), min=1)
    checkpoint_every: int = option(25, "activation patching: forward passes between checkpoints (0: off)", min=0)
    launcher: str = option("ray", "where --workers run: ray (actors on a local or RAY_ADDRESS cluster) or submitit "
                           "(a SLURM array job; local processes where SLURM is absent)", choices=("ray", "submitit"))
    NOT_IDENTITY = ("batch_rows", "workers", "checkpoint_every", "launcher")

    def check(self, model) -> None:
        """The checks that need the model (the fields' own are declared with them)."""
        model.check_layers(list(self.layers))
        Rules.parse(self.rules)
        bad = [n for n in self.neurons if n >= model.d_mlp]
        if bad:
            raise InterpError(f"--neurons {bad[0]} is out of range: {model.spec} has {model.d_mlp} neurons a layer "
                              f"(0-{model.d_mlp - 1})")


@dataclass
class Batch:
    """The pairs as right-padded tensors (padding sits after each row's last token, so
    causal attention never sees it)."""

    clean: Tensor  # [batch, pos]
    corrupt: Tensor
    lengths: Tensor  # [batch]
    answer: Tensor
    wrong: Tensor

    @property
    def last(self) -> Tensor:
        return self.lengths - 1

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device) for t in (self.clean, self.corrupt, self.lengths, self.answer, self.wrong)))


def prepare(model, pairs: list[Pair]) -> Batch:
    """Tokenize and check the pairs."""
    if not pairs:
        raise InterpError("the dataset has no pairs: give at least one {clean, corrupt, answer, wrong}")
    for i, p in enumerate(pairs):
        clean, corrupt = model.encode(p.clean), model.encode(p.corrupt)
        if len(clean) != len(corrupt):
            raise InterpError(
                f"pair {i}: clean and corrupt prompts tokenize to different lengths ({len(clean)} vs "
                f"{len(corrupt)}): {model.to_str_tokens(p.clean)} vs {model.to_str_tokens(p.corrupt)}. "
                "Patching aligns positions one to one; reword the corrupt prompt so its tokens line up")
    ids = [(model.answer_token(p.clean, p.answer), model.answer_token(p.clean, p.wrong)) for p in pairs]
    clean, corrupt = model.batch([p.clean for p in pairs]), model.batch([p.corrupt for p in pairs])
    dev = model.device
    return Batch(clean.tokens, corrupt.tokens, clean.lengths,
                 torch.tensor([a for a, _ in ids], device=dev), torch.tensor([w for _, w in ids], device=dev))


def at_last(logits: Tensor, last: Tensor) -> Tensor:
    """``logits[r, last[r]]``: each row's prediction after its last real token."""
    return _wide(logits[torch.arange(len(last), device=logits.device), last])


def metric_fn(name: str, batch: Batch, clean_last: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """``f(last_logits, pairs) -> [rows]``: the metric for rows that run ``pairs``."""
    def f(logits: Tensor, pair: Tensor) -> Tensor:
        if name == "logit_diff":
            return logit_diff(logits, batch.answer[pair], batch.wrong[pair])
        if name == "prob":
            return answer_prob(logits, batch.answer[pair])
        return -kl_div(clean_last[pair], logits)

    return f


def _wide(x: Tensor) -> Tensor:
    """float32, or float64 where the model runs in float64."""
    return x if x.dtype == torch.float64 else x.float()


def units(model, component: str, T: int) -> int:
    return {"heads": model.n_heads, "neurons": model.d_mlp}.get(component, T)


def unit_write(component: str, site: str, src: Tensor, pair: Tensor, unit: Tensor, npos: Tensor) -> Write:
    """Row ``r`` gets ``src``'s value of unit ``unit[r]`` (of pair ``pair[r]``): a position for
    ``resid``/``attn_out``/``mlp_out``, a head (every position) for ``heads``, a neuron at
    ``npos`` for ``neurons``."""
    rows = torch.arange(len(pair), device=unit.device)
    if component in POSITIONAL:
        return Write(site, rows=rows, positions=unit, source=src, source_rows=pair)
    if component == "heads":  # hook_z: [batch, pos, head, d_head]
        return Write(site, rows=rows, units=unit, source=src, source_rows=pair)
    return Write(site, rows=rows, positions=npos[pair], units=unit, source=src, source_rows=pair)


def _runs(config: PatchingConfig, batch: Batch) -> tuple[Tensor, Tensor]:
    """(base tokens, source tokens) for the direction."""
    return (batch.corrupt, batch.clean) if config.direction == "denoising" else (batch.clean, batch.corrupt)


def _sites(model, config, layers) -> dict[tuple[str, int], str]:
    return {(c, l): hook_name(COMPONENTS[c], l) for c in config.components for l in layers}


def unit_rows(model, component: str, batch: Batch, only: tuple[int, ...] = ()) -> tuple[Tensor, Tensor]:
    """(pair, unit) of every patched row of one component: each pair's units in order (for
    ``neurons``, only those in ``only`` when it is given), positions past a pair's end left out."""
    B, T = batch.clean.shape
    dev = batch.clean.device
    chosen = (torch.tensor(sorted(set(only)), dtype=torch.long, device=dev) if only and component == "neurons"
              else torch.arange(units(model, component, T), device=dev))
    pair = torch.arange(B, device=dev).repeat_interleave(len(chosen))
    unit = chosen.repeat(B)
    if component in POSITIONAL:
        keep = unit < batch.lengths[pair]
        pair, unit = pair[keep], unit[keep]
    return pair, unit


def activation_items(model, config, batch, layers) -> dict[int, tuple[str, int, int, int]]:
    """The sweep's items: ``(component, layer, start, rows)``, one forward pass of at most
    ``batch_rows`` patched rows each."""
    items, key = {}, 0
    for component in config.components:
        n = len(unit_rows(model, component, batch, config.neurons)[0])
        for layer in layers:
            for start in range(0, n, config.batch_rows):
                items[key] = (component, layer, start, min(config.batch_rows, n - start))
                key += 1
    return items


def neuron_positions(config, batch: Batch) -> Tensor:
    """Each pair's position of the neuron component (``--neuron-pos``, negative from the end), refused when it
    is outside a prompt or before the clean and corrupt prompts differ in every pair (every score would be 0)."""
    p, shortest = config.neuron_pos, int(batch.lengths.min())
    if "neurons" not in config.components:
        return p % batch.lengths  # unused
    if not -shortest <= p < shortest:
        raise InterpError(f"--neuron-pos {p} is outside the shortest prompt ({shortest} tokens): give a position "
                          f"from {-shortest} to {shortest - 1} (-1: each prompt's last token)")
    npos = p % batch.lengths
    differs = batch.clean != batch.corrupt
    some = differs.any(1)  # identical pairs (clean into clean) score 0 anywhere: nothing to refuse
    first = differs.float().argmax(1)
    if bool(some.any()) and bool((npos[some] < first[some]).all()):
        raise InterpError(f"--neuron-pos {p} falls before the clean and corrupt prompts differ, in every pair (the "
                          f"first difference is at position {int(first[some].min())}): the neurons there see the same "
                          "tokens, so every score would be 0; give a later position (-1: the last token)")
    return npos


@torch.no_grad()
def activation_item(model, item, config: PatchingConfig, batch: Batch, source_acts: dict, clean_last: Tensor) -> Tensor:
    """The metric of one item's rows, each patched alone (one forward pass); runs wherever the model is."""
    component, layer, start, n = item
    batch, dev = batch.to(model.device), model.device
    site = hook_name(COMPONENTS[component], layer)
    pair, unit = (t[start:start + n] for t in unit_rows(model, component, batch, config.neurons))
    base, _ = _runs(config, batch)
    npos = neuron_positions(config, batch)
    metric = metric_fn(config.metric, batch, clean_last.to(dev))
    with intervene(model, [unit_write(component, site, source_acts[site].to(dev), pair, unit, npos)]):
        logits = at_last(model(base[pair]), batch.last[pair])
    return metric(logits, pair).cpu()


def activation_scores(model, config, batch, layers, base_metric, source_acts, clean_last, pairs) -> dict:
    """Score every (pair, component, layer, unit) by patching it alone; ``[batch, unit]``,
    NaN at positions past a pair's end. A sweep of items (see the module docstring)."""
    B, T = batch.clean.shape
    items = activation_items(model, config, batch, layers)
    entry = Entry(runs_root() / "patching", ".checkpoints", model.weights_hash, checkpoint=True,
                  key={"config": config.identity(), "batch_rows": config.batch_rows,
                       "pairs": [p.to_dict() for p in pairs]})
    args = (config, batch, source_acts, clean_last)
    if config.workers > 1:  # host copies travel to the actors once
        args = (config, batch.to("cpu"), {k: v.cpu() for k, v in source_acts.items()}, clean_last.cpu())
    outputs = checkpointed_sweep(model, items, activation_item, args, entry, "activation patching",
                                 workers=config.workers, every=config.checkpoint_every, weight=lambda item: item[3],
                                 desc="activation patching", unit="run", launcher=config.launcher)
    out = {}
    rows = {c: unit_rows(model, c, batch, config.neurons) for c in config.components}
    for component in config.components:
        for layer in layers:
            out[(component, layer)] = torch.full((B, units(model, component, T)), float("nan"),
                                                 device=base_metric.device, dtype=base_metric.dtype)
    for key, (component, layer, start, n) in items.items():
        pair, unit = (t[start:start + n] for t in rows[component])
        out[(component, layer)][pair, unit] = outputs[key].to(base_metric.device, base_metric.dtype) - base_metric[pair]
    return out


def gradient_scores(model, config, batch, layers, metric, source_acts, every_position: bool = False) -> dict:
    """Attribution patching (or RelP inside LRP mode): ``(a_source - a_base) . grad``; ``every_position``: the
    neurons' scores at every position (``[batch, pos, d_mlp]``), not at ``neuron_pos`` only."""
    base, _ = _runs(config, batch)
    B, T = base.shape
    npos = neuron_positions(config, batch)
    sites = _sites(model, config, layers)

    mode = lrp_mode(model, Rules.parse(config.rules)) if config.method == "relp" else nullcontext()
    pairs = torch.arange(B, device=base.device)
    with torch.enable_grad(), mode, track_grad(model), record(model, sites.values(), detach=False) as acts:
        logits = at_last(model(base), batch.last)
        grads = torch.autograd.grad(metric(logits, pairs).sum(), [acts[s] for s in sites.values()])
    past_end = torch.arange(T, device=base.device)[None] >= batch.lengths[:, None]
    out = {}
    for ((component, layer), site), grad in zip(sites.items(), grads):
        contrib = (_wide(source_acts[site]) - _wide(acts[site].detach())) * _wide(grad)
        if component in POSITIONAL:
            out[(component, layer)] = contrib.sum(-1).masked_fill(past_end, float("nan"))
        elif component == "heads":
            out[(component, layer)] = contrib.sum((1, 3))
        elif every_position:
            out[(component, layer)] = contrib
        else:
            out[(component, layer)] = contrib[pairs, npos]
            if config.neurons:  # the neurons asked for; the rest are left out of the Result, as in activation
                keep = torch.zeros(out[(component, layer)].shape[1], dtype=torch.bool, device=base.device)
                keep[list(config.neurons)] = True
                out[(component, layer)] = out[(component, layer)].masked_fill(~keep, float("nan"))
    return out


@dataclass
class Baseline:
    """The unpatched runs every method starts from."""

    source_acts: dict  # the recorded sites of the source run
    metric: Callable[[Tensor, Tensor], Tensor]
    base_metric: Tensor
    source_metric: Tensor
    clean_last: Tensor  # the clean run's last-position logits (the KL metric's reference)


@torch.no_grad()
def baseline(model, config: PatchingConfig, batch: Batch, layers) -> Baseline:
    """One forward pass of each prompt: the source run's sites recorded, both runs' metrics."""
    base, source = _runs(config, batch)
    with record(model, list(_sites(model, config, layers).values())) as source_acts:
        source_last = at_last(model(source), batch.last)
    base_last = at_last(model(base), batch.last)
    clean_last = source_last if config.direction == "denoising" else base_last
    metric = metric_fn(config.metric, batch, clean_last)
    idx = torch.arange(len(batch.lengths), device=base.device)
    return Baseline(dict(source_acts), metric, metric(base_last, idx), metric(source_last, idx), clean_last)


def load_pairs_for(model, config: PatchingConfig) -> list[Pair]:
    if config.dataset in IOI_SETS:
        from interp.datasets.ioi import ioi_pairs

        return ioi_pairs(model, n=config.n, seed=config.seed, template_set=IOI_SETS[config.dataset])
    from interp.datasets.prompts import load_pairs

    pairs = load_pairs(config.dataset)
    return pairs[: config.n] if config.n else pairs



@register("patching", PatchingConfig)
def run(model, config: PatchingConfig, pairs: list[Pair] | None = None) -> Result:
    """Score model components by how much patching them moves the metric."""
    config.check(model)
    pairs = pairs if pairs is not None else load_pairs_for(model, config)
    started = time.perf_counter()
    batch = prepare(model, pairs)
    layers = list(config.layers) or list(range(model.n_layers))
    active = config.method == "activation"
    if config.workers > 1 and not active:
        import warnings

        warnings.warn(f"--workers applies to activation patching; {config.method} runs in one pass here",
                      stacklevel=2)
    b = baseline(model, config, batch, layers)
    if active:
        scores = activation_scores(model, config, batch, layers, b.base_metric, b.source_acts, b.clean_last, pairs)
    else:
        scores = gradient_scores(model, config, batch, layers, b.metric, b.source_acts)
    base_metric, source_metric = b.base_metric, b.source_metric
    rows = []
    lengths = batch.lengths.cpu()
    for (component, layer), s in scores.items():
        B, U = s.shape
        pair, unit = torch.arange(B, device="cpu").repeat_interleave(U), torch.arange(U, device="cpu").repeat(B)
        values = s.flatten().cpu()
        keep = ~values.isnan()
        rows.append(pd.DataFrame({
            "pair": pair[keep].numpy(), "component": component, "layer": layer, "unit": unit[keep].numpy(),
            "pos_from_end": (lengths[pair] - 1 - unit)[keep].numpy() if component in POSITIONAL else -1,
            "score": values[keep].numpy(),
        }))
    pairs_df = pd.DataFrame([
        {"pair": i, **p.to_dict(), "n_tokens": int(lengths[i]),
         "metric_base": float(base_metric[i]), "metric_source": float(source_metric[i]),
         "clean_tokens": model.to_str_tokens(batch.clean[i, : lengths[i]].tolist()),
         "corrupt_tokens": model.to_str_tokens(batch.corrupt[i, : lengths[i]].tolist())}
        for i, p in enumerate(pairs)])
    seconds = time.perf_counter() - started
    scores = pd.concat(rows, ignore_index=True)
    base_name, source_name = ("corrupt", "clean") if config.direction == "denoising" else ("clean", "corrupt")
    return Result(
        analysis="patching",
        config=config,
        provenance=provenance(model, config),
        tables={"scores": scores, "pairs": pairs_df},
        metrics={"method": config.method, "direction": config.direction, "metric": config.metric,
                 "n_pairs": len(pairs), "seconds": seconds, "dataset_hash": pairs_hash(pairs_df),
                 f"mean_metric_{base_name}": float(pairs_df.metric_base.mean()),
                 f"mean_metric_{source_name}": float(pairs_df.metric_source.mean()),
                 "rules": str(Rules.parse(config.rules)) if config.method == "relp" else None},
        notes=[f"{config.direction}: the {base_name} prompt runs and {source_name} activations are patched in; "
               f"score = {config.metric}(patched) - {config.metric}({base_name})"],
    )
