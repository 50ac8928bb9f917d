"""Neuron atlas: what text makes each neuron fire, streamed over a corpus.

Anchors: Neuroscope's ``scan_over_data`` (a streaming top-k per neuron), OpenAI's
neuron-explainer ``NeuronRecord`` (top activations, mean, variance), Neuronpedia's
neuron page (histogram, density).

For every neuron of the chosen layers (default: all) over ``n_tokens`` of a corpus,
cut into ``seq_len``-token windows (``interp.datasets.corpus``): the top-k and
bottom-k activations with their window and position, a fixed-bin histogram and its
quantiles, the mean, the variance, the fraction of positive activations and the density (the share
of positions with |activation| at least a tenth of the neuron's peak; ``density``)
(``interp.tracing.reducers``). Memory is fixed, whatever the corpus length.

Samples and splits (version 4): every window is in the train or the held-out split (a fixed fifth held
out, by a hash of its index), and each neuron keeps, per split and per histogram bin, one example drawn
uniformly from the bin (``AtlasReducer``'s reservoir, in the same streamed pass): examples across the
whole activation range, delphi's protocol streamed. The Result keeps those at or beyond a tenth of the
neuron's peak |activation| and ``NON_ACTIVATING_K`` below it, per split (``which="sample"``, ``rank``:
the bin), and every example row says its ``split``. ``interp explain`` builds explanations from the train
split and scores them on the held-out one.

One pass: every statistic, example and stored context comes from the same streamed forward
passes, which stop after the last chosen layer's MLP (``interp.tracing.stream``). An example is
stored as (window, position) into the stored corpus tokens; the first ``CONTEXT_K`` top and bottom
examples and every quadrant example also keep their neuron's activations ``CONTEXT_WIDTH`` tokens
either side, read by the reducer from the batch that held them (``interp.tracing.topk``), so a
neuron card needs no forward pass and the atlas no second pass over the corpus. (Until 2026-12-06 a
second, unsharded pass re-ran the windows that held an example; the Result's meaning is unchanged, so
its VERSION is too: a context's values are now the very activations the statistics saw.)

Resumable: with ``checkpoint_every=N`` the reducer state is written (atomically)
every N batches under ``$INTERP_RUNS/neuron_atlas/.checkpoints/``; a rerun with the
same config and weights continues from it, and ends with the same Result.

Scale-out: ``workers > 1`` shards chunks of batches across Ray actors (one model each, on
the model's device, ``interp.scale``) and merges their reducers as they arrive; because each
batch's forward is the same computation and the merge is exact, the Result equals the
in-process one. Sharded runs checkpoint too (the merged state and the batches done, every
``checkpoint_every`` batches), in the same format, so a killed run resumes either way.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from interp.analyses.base import estimator, register
from interp.datasets.corpus import window_tensor
from interp.datasets.sampling import sampling_seconds
from interp.errors import InterpError
from interp.paths import runs_root
from interp.result import Config, Result, option, provenance
from interp.scale import preflight
from interp.scale.sweep import sweep
from interp.storage.cache import Entry
from interp.tracing.reducers import HIST_EDGES, N_BINS, QUADRANTS, SPLITS, AtlasReducer, heldout
from interp.tracing.stream import stream_batches

QUANTILES = (0.01, 0.1, 0.5, 0.9, 0.99)
QUADRANT_K = 3  # examples kept per gate/up sign quadrant (GLU models)
CONTEXT_K = 5  # top and bottom examples whose per-token activations are stored (and every quadrant example)
CONTEXT_WIDTH = 10  # tokens either side of an example with stored activations


def _reducer(model, n_layers: int, config: AtlasConfig, device="cpu") -> AtlasReducer:
    """An empty reducer with everything the atlas keeps: GLU quadrants, samples, stored contexts."""
    return AtlasReducer(n_layers, model.d_mlp, config.k, device, quadrant_k=QUADRANT_K if model.is_glu else 0,
                        sample_seq_len=config.seq_len, context_k=CONTEXT_K, width=CONTEXT_WIDTH)


@dataclass(frozen=True)
class AtlasConfig(Config):
    VERSION = 5  # 2: density; BOS windows. 3: GLU gate/up quadrants; stored context activations.
    # 4: examples sampled across the activation range, and a train / held-out split of windows
    # 5: each window's BOS and first text token (no left context) left out of every statistic and example
    corpus: str = option("stdlib-docs",
                         "a .txt file or folder, a .jsonl, stdlib-docs, sampled:N, hf:NAME; join with +", flags=("-c",))
    n_tokens: int = option(20_000, "tokens to stream", flags=("--tokens", "-n"), min=1)
    seq_len: int = option(128, "tokens per window", min=2)
    batch_size: int = option(8, "windows per forward pass", min=1)
    layers: tuple[int, ...] = option((), "e.g. 0-3,29 (default: all)", min=0)
    k: int = option(20, "top and bottom examples kept per neuron", flags=("-k",), min=1)
    skip_first: int = option(1, "text tokens at the start of each window left out (they have no left context); "
                             "a BOS is always left out", min=0)
    checkpoint_every: int = option(10, "batches between checkpoints (0: off)", min=0)
    workers: int = option(1, "Ray workers (needs Ray); 1: in-process", flags=("-w",), min=1)
    launcher: str = option("ray", "where --workers run: ray (actors on a local or RAY_ADDRESS cluster) or submitit "
                           "(a SLURM array job; local processes where SLURM is absent)", choices=("ray", "submitit"))
    NOT_IDENTITY = ("workers", "checkpoint_every", "launcher")


def skipped(model, config: AtlasConfig) -> int:
    """Positions left out at the start of every window: the BOS (models that need one) and ``skip_first``."""
    skip = int(model.prepends_bos) + config.skip_first
    if skip >= config.seq_len:
        raise InterpError(f"--skip-first {config.skip_first} leaves nothing of a {config.seq_len}-token window: "
                          "give a smaller --skip-first or a longer --seq-len")
    return skip


def plan(model, config: AtlasConfig) -> torch.Tensor:
    """The corpus as a ``[n_windows, seq_len]`` token tensor (the same on every run)."""
    return window_tensor(model, config.corpus, config.seq_len, config.n_tokens)


CHECKPOINT_FORMAT = 2  # 2: the stored contexts are in the reducer's state


def _checkpoint(model, config: AtlasConfig) -> Entry:
    return Entry(runs_root() / "neuron_atlas", ".checkpoints", model.weights_hash,
                 key={**config.identity(), "state": CHECKPOINT_FORMAT}, checkpoint=True)


def _save_checkpoint(entry: Entry, reducer: AtlasReducer, done: set[int]) -> None:
    with entry.write() as tmp:  # state and progress replaced together, atomically
        save_file(reducer.state(), tmp / "state.safetensors")
        (tmp / "progress.json").write_text(json.dumps({"batches_done": len(done), "batches": sorted(done)}))


def _read_checkpoint(path: Path) -> tuple[AtlasReducer, set[int]]:
    progress = json.loads((path / "progress.json").read_text())
    return AtlasReducer.from_state(load_file(path / "state.safetensors")), set(progress["batches"])


def _resume(model, config, layers, n_batches) -> tuple[Entry, AtlasReducer, set[int]]:
    """The checkpoint entry, and the reducer and batches done so far (in-process and sharded runs
    write the same format, so either resumes the other)."""
    ckpt = _checkpoint(model, config)
    resumed = ckpt.read(_read_checkpoint) if config.checkpoint_every else None
    reducer, done = resumed or (_reducer(model, len(layers), config), set())
    if done:
        tqdm.write(f"resuming the atlas from a checkpoint: {len(done)} of {n_batches} batches done", file=sys.stderr)
    return ckpt, reducer.to(model.device), done  # reducers run where the activations are; host copies at checkpoints


def _in_process(model, tokens, layers, config, n_batches) -> AtlasReducer:
    ckpt, reducer, done = _resume(model, config, layers, n_batches)
    todo = [b for b in range(n_batches) if b not in done]

    def on_batch(b: int) -> None:
        done.add(b)
        if config.checkpoint_every and len(done) % config.checkpoint_every == 0 and len(done) < n_batches:
            _save_checkpoint(ckpt, reducer, done)

    stream_batches(model, tokens, layers, config.batch_size, todo, reducer, on_batch, "atlas",
                   skip=skipped(model, config))
    return reducer


def _atlas_chunk(model, batch_ids: list[int], tokens, layers, config: AtlasConfig, skip: int) -> dict:
    """One actor's share: a chunk of batches into a fresh reducer, returned on the host."""
    reducer = _reducer(model, len(layers), config, model.device)
    stream_batches(model, tokens, layers, config.batch_size, batch_ids, reducer, desc="atlas shard", disable=True,
                   skip=skip)
    return reducer.state()


def _sharded(model, tokens, layers, config, n_batches, workers) -> AtlasReducer:
    """Chunks of batches over Ray actors, merged as they arrive and checkpointed like ``_in_process``.
    A chunk is ``checkpoint_every`` batches (or a quarter of a worker's share when checkpoints are off)."""
    ckpt, reducer, done = _resume(model, config, layers, n_batches)
    todo = [b for b in range(n_batches) if b not in done]
    size = config.checkpoint_every or max(1, -(-len(todo) // (4 * workers)))
    chunks = {i: todo[j:j + size] for i, j in enumerate(range(0, len(todo), size))}

    def fold(key: int, state: dict) -> None:
        reducer.merge(AtlasReducer.from_state(state, model.device))
        done.update(chunks[key])

    T = tokens.shape[1]
    args = (tokens, layers, config, skipped(model, config))
    sweep(model, chunks, _atlas_chunk, fold, args, workers=workers, every=1 if config.checkpoint_every else 0,
          save=lambda _: _save_checkpoint(ckpt, reducer, done) if len(done) < n_batches else None,
          weight=lambda chunk: len(chunk) * config.batch_size * T, desc="atlas", unit="tok", launcher=config.launcher)
    return reducer


@estimator("neuron_atlas")
def estimate(model, config: AtlasConfig, calibrate: bool) -> preflight.Estimate:
    """Batches and memory from the config's shapes; time from one batch of random tokens through the
    atlas's own loop (the corpus is not read, so a `sampled:` corpus is not generated for it)."""
    layers = model.check_layers(config.layers)
    n_windows = -(-config.n_tokens // config.seq_len)  # at most: a shorter corpus gives fewer
    n_batches = -(-n_windows // config.batch_size)
    B, T, L = min(config.batch_size, n_windows), config.seq_len, len(layers)
    per_neuron = (2 * config.k * (4 + 8) + N_BINS * 4 + 3 * 8 + 2 * N_BINS * (8 + 4)
                  + (2 * CONTEXT_K + 4 * QUADRANT_K * model.is_glu) * (2 * CONTEXT_WIDTH + 1) * 4)
    est = preflight.Estimate(
        "neuron_atlas", str(model.device), forwards=n_batches, units=n_batches,
        work=f"{n_batches:,} batches of {B} x {T} tokens, one pass, {L} layers of {model.d_mlp:,} neurons",
        memory={**preflight.held(model), "forward": preflight.forward_bytes(model, B, T),
                "reducer": L * model.d_mlp * per_neuron, "layer in flight": B * T * model.d_mlp * 4 * 6,
                "corpus": n_windows * T * 8},
        available=preflight.available_memory(model.device), calibrate_from=32,  # ~1 min and more: a few percent
        remedy="a smaller --batch-size, fewer --layers, a smaller -k, or --dtype bfloat16")
    if config.workers > 1:
        est.notes.append(f"with --workers {config.workers} the time divides by up to {config.workers} "
                         "(plus the actors' start-up), and each actor holds its own model")
    if calibrate:
        tokens = torch.randint(model.d_vocab, (B, T), generator=torch.Generator().manual_seed(0), device="cpu")
        reducer = _reducer(model, L, config, model.device)
        seconds, est.measured_peak = preflight.time_once(
            model, lambda: stream_batches(model, tokens, layers, B, [0], reducer, disable=True,
                                          skip=skipped(model, config)))
        est.seconds = seconds * n_batches
        est.calibration = f"one batch timed: {seconds:.2f} s"
        sampled = sum(int(p[8:]) for p in config.corpus.split("+") if p.startswith("sampled:") and p[8:].isdigit())
        sampling = sampling_seconds(model, sampled) if sampled else 0.0
        if sampling:  # a sampled corpus not generated yet: the model writes it first
            est.seconds += sampling
            est.calibration += f"; sampling {sampled:,} corpus tokens from the model first: ~{sampling:.0f} s"
    return est


@register("neuron_atlas", AtlasConfig)
def run(model, config: AtlasConfig) -> Result:
    """Top-activating contexts, histograms and moments of every neuron over a corpus."""
    layers = model.check_layers(config.layers)
    tokens = plan(model, config)
    n_batches = -(-len(tokens) // config.batch_size)
    if config.workers > 1:  # the Ray pool caps the workers by what the cluster (or machine) has
        reducer = _sharded(model, tokens, layers, config, n_batches, config.workers)
    else:
        reducer = _in_process(model, tokens, layers, config, n_batches)
    result = _result(model, config, layers, tokens, reducer)
    if config.checkpoint_every:
        _checkpoint(model, config).clear()
    return result


def atlas_of_tokens(model, tokens: torch.Tensor, config: AtlasConfig) -> Result:
    """An atlas of ``model`` over exactly these ``[windows, seq_len]`` tokens, in process, not checkpointed or
    stored: the random-weights baseline reads the very windows the trained model's atlas read (re-reading
    the corpus would sample a ``sampled:`` corpus from the random model instead)."""
    layers = model.check_layers(config.layers)
    reducer = _reducer(model, len(layers), config, model.device)
    stream_batches(model, tokens, layers, config.batch_size, range(-(-len(tokens) // config.batch_size)), reducer,
                   desc="atlas (same windows)", skip=skipped(model, config))
    return _result(model, config, layers, tokens, reducer)


def _result(model, config, layers, tokens, reducer: AtlasReducer) -> Result:
    reducer = reducer.to("cpu")
    n = reducer.count.item()
    mean = reducer.sum / max(n, 1)
    var = (reducer.sumsq / max(n, 1) - mean**2).clamp(min=0)
    q = reducer.quantiles(list(QUANTILES))
    L, d = len(layers), model.d_mlp
    layer_col = np.repeat(np.array(layers, dtype=np.int32), d)
    neuron_col = np.tile(np.arange(d, dtype=np.int32), L)
    neurons = pd.DataFrame({
        "layer": layer_col, "neuron": neuron_col,
        "max": reducer.top_v[..., 0].flatten().numpy(), "min": reducer.bot_v[..., 0].flatten().numpy(),
        "mean": mean.flatten().numpy(), "var": var.flatten().numpy(),
        "frac_positive": (reducer.positive.double() / max(n, 1)).flatten().numpy(),
        "density": density(reducer.hist, reducer.top_v[..., 0], reducer.bot_v[..., 0], n).flatten().numpy(),
    })
    for i, qv in enumerate(QUANTILES):
        neurons[f"q{int(qv * 100):02d}"] = q[..., i].flatten().numpy()
    sources = [("top", reducer.top_v, reducer.top_p, reducer.top_c), ("bottom", reducer.bot_v, reducer.bot_p,
                                                                          reducer.bot_c)]
    if reducer.quadrant_k:  # GLU: each gate/up sign quadrant's share of positions and its top |activation|
        for j, name in enumerate(QUADRANTS):
            neurons[f"share_{name}"] = (reducer.quad_count[..., j].double() / max(n, 1)).flatten().numpy()
            sources.append((name, reducer.quad_v[:, :, j], reducer.quad_p[:, :, j], reducer.quad_c[:, :, j]))
    T = config.seq_len
    flat_tokens = tokens.flatten()
    parts, stored, base = [], [], 0
    for which, vals, poss, ctx in sources:
        k = vals.shape[-1]
        p = poss.flatten()
        rank = np.tile(np.arange(k, dtype=np.int32), L * d)
        ck = ctx.shape[-2]  # the first ck of each neuron's examples have stored contexts
        index = np.where((rank < ck) & (p.numpy() >= 0), base + np.repeat(np.arange(L * d), k) * ck + rank, -1)
        stored.append(ctx.reshape(-1, ctx.shape[-1]))
        base += L * d * ck
        parts.append((which, {
            "layer": np.repeat(layer_col, k), "neuron": np.repeat(neuron_col, k), "rank": rank,
            "activation": vals.flatten().numpy(), "window": (p // T).numpy().astype(np.int32),
            "pos": (p % T).numpy().astype(np.int32),
            "token_id": flat_tokens[p.clamp(min=0)].numpy().astype(np.int32), "context": index,
        }))
    if reducer.sample_seq_len:
        samples = _sample_rows(reducer, layers, flat_tokens, T, neurons)
        parts.append(("sample", {**samples, "context": np.full(len(samples["rank"]), -1, dtype=np.int64)}))
    # one frame from whole columns (a concat of frames, or a string column made categorical, costs seconds)
    names = sorted({which for which, part in parts if len(part["rank"])})
    examples = pd.DataFrame({column: np.concatenate([part[column] for _, part in parts]) for column in parts[0][1]},
                            copy=False)  # no consolidating copy of the columns
    examples.insert(2, "which", pd.Categorical.from_codes(np.concatenate([
        np.full(len(part["rank"]), names.index(which) if which in names else 0, dtype=np.int8)
        for which, part in parts]), names))
    examples["split"] = pd.Categorical.from_codes(
        heldout(torch.tensor(examples.window.to_numpy(), device="cpu")).numpy().astype(np.int8), SPLITS)
    context_acts = torch.cat(stored)
    if reducer.quadrant_k:  # the quadrant examples were kept by |activation|: store the signed value
        quad = examples.which.isin(QUADRANTS)
        examples.loc[quad & (examples.window < 0), "activation"] = np.nan
        held = quad & examples.context.ge(0)
        examples.loc[held, "activation"] = context_acts[torch.tensor(examples.context[held].to_numpy(), device="cpu"),
                                                        CONTEXT_WIDTH].numpy()
    return Result(
        analysis="neuron_atlas",
        config=config,
        provenance=provenance(model, config),
        tables={"neurons": neurons, "examples": examples},
        tensors={"hist": reducer.hist, "hist_edges": HIST_EDGES, "tokens": tokens.to(torch.int32),
                 "layers": torch.tensor(layers, device="cpu"), "context_acts": context_acts},
        metrics={"tokens": n, "windows": len(tokens), "layers": len(layers), "k": config.k,
                 "quantiles": "from the histogram: the upper edge of the crossing bin",
                 "corpus": config.corpus, "context_width": CONTEXT_WIDTH, "skipped": skipped(model, config)},
        notes=[f"corpus {config.corpus!r}" + (" includes text sampled from the model itself, a proxy for its "
                                              "training distribution" if "sampled:" in config.corpus else ""),
               f"the first {skipped(model, config)} position(s) of every window are left out (a BOS, and tokens "
               "with no left context: their activations are first-token artefacts)"],
    )


NON_ACTIVATING_K = 8  # non-activating samples kept per neuron and split


def _sample_rows(reducer: AtlasReducer, layers, flat_tokens, T: int, neurons: pd.DataFrame) -> dict:
    """The reservoir samples as example columns (``which="sample"``, ``rank``: the histogram bin): every
    sample at or beyond ``DENSITY_FRACTION`` of the neuron's peak |activation| (its activating range, both
    signs), and the ``NON_ACTIVATING_K`` drawn first (smallest key: uniform over the positions below it)
    of the rest, per split."""
    drawn = reducer.samples()
    pos, act = drawn["position"], drawn["activation"]  # [L, split, d, bins]
    L, _, d, n_bins = pos.shape
    peak = np.maximum(neurons["max"].abs(), neurons["min"].abs()).to_numpy()
    peak = torch.tensor(peak, device="cpu").float().view(L, 1, d, 1)
    present = pos >= 0
    active = present & (act.abs() >= DENSITY_FRACTION * peak)
    key = torch.where(present & ~active, reducer.samp.cpu() >> 32, torch.iinfo(torch.int64).max)
    k = min(NON_ACTIVATING_K, n_bins)
    first = key.topk(k, dim=-1, largest=False)
    quiet = torch.zeros_like(present)
    quiet.scatter_(-1, first.indices, first.values < torch.iinfo(torch.int64).max)
    layer_i, _split, neuron_i, bin_i = (active | quiet).nonzero(as_tuple=True)
    p = pos[layer_i, _split, neuron_i, bin_i]
    return {"layer": np.asarray(layers, dtype=np.int32)[layer_i.numpy()], "neuron": neuron_i.numpy().astype(np.int32),
            "rank": bin_i.numpy().astype(np.int32), "activation": act[layer_i, _split, neuron_i, bin_i].numpy(),
            "window": (p // T).numpy().astype(np.int32), "pos": (p % T).numpy().astype(np.int32),
            "token_id": flat_tokens[p].numpy().astype(np.int32)}


DENSITY_FRACTION = 0.1  # a neuron is "active" where |activation| >= this share of its peak |activation|


def density(hist, top, bottom, n: int):
    """The share of positions where a neuron's |activation| is at least ``DENSITY_FRACTION`` of its
    peak |activation|, from the histogram: the bins wholly beyond the threshold on either side (so at
    the histogram's resolution: 4 bins an octave, each at most 1.25x wide; the crossing bin is left
    out). Unlike the share of positive values (about half for any signed GLU neuron) it says how often
    the neuron fires."""
    edges = HIST_EDGES.double()
    inf = torch.tensor([float("inf")], dtype=torch.float64, device="cpu")
    lo, hi = torch.cat([-inf, edges]), torch.cat([edges, inf])
    closest = torch.where(lo >= 0, lo, torch.where(hi <= 0, -hi, torch.zeros_like(lo)))  # a bin's least |value|
    tau = DENSITY_FRACTION * torch.maximum(top.abs(), bottom.abs()).double()
    beyond = closest >= tau[..., None]
    return ((hist.double() * beyond).sum(-1) / max(n, 1)).float()
