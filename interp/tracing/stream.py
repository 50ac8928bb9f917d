"""The streamed runner: batches of token windows through the model, folded into a reducer.

``stream_batches`` runs the chosen batches of a ``[n_windows, seq_len]`` token tensor,
folds the MLP neurons of the chosen layers into an ``AtlasReducer``
(``interp.tracing.reducers``), with the global position of every token. Each layer is
folded inside its hook, while its activations are still in cache, and dropped before the
next layer runs: one layer of one batch is alive at a time, so memory does not grow with
the corpus or the depth; the pass stops after the last chosen layer's MLP (no logits are needed,
and a model's unembedding can be the largest matrix it has);
a progress bar (stderr, and the job's progress in the dashboard) shows tokens/s and
the ETA. The atlas, its Ray shards and ``neuron_stats`` all use it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

import torch
from transformer_lens.model_bridge.exceptions import StopAtLayerException

from interp.names import hook_name
from interp.progress import bar as progress_bar
from interp.tracing.hooks import hooks
from interp.tracing.reducers import AtlasReducer


def fold(reducer: AtlasReducer, slot: int, act: torch.Tensor, positions: torch.Tensor, skip: int = 0,
         gate: torch.Tensor | None = None, up: torch.Tensor | None = None) -> None:
    """One layer of one batch (whole windows ``[batch, seq, d_mlp]``) into ``reducer``: the fused CPU pass
    (``interp.tracing.fused``, numba) where ``reducer.fused`` says it runs, otherwise the torch passes
    (``AtlasReducer.fold``)."""
    if reducer.fused:
        from interp.tracing.fused import fold_reducer

        fold_reducer(reducer, slot, act, positions, skip, gate, up)
    else:
        reducer.fold(slot, act, positions, skip, gate, up)


def _fold(reducer: AtlasReducer, slot: int, positions: torch.Tensor, signs: dict | None = None, skip: int = 0,
          last: bool = False):
    """A hook that folds its layer's activations into ``reducer`` and keeps nothing (with ``signs``,
    the gate/up pre-activations its layer's earlier hooks stashed there feed the quadrants, then are dropped).
    The first ``skip`` positions of every window are left out of the statistics (not of the stored contexts).
    The ``last`` layer's hook ends the forward pass (the bridge returns from ``StopAtLayerException``)."""
    def hook(act):
        gate, up = (signs.pop(("gate", slot)), signs.pop(("up", slot))) if signs is not None else (None, None)
        fold(reducer, slot, act, positions, skip, gate, up)
        if last:
            raise StopAtLayerException(None)
    return hook


def _stash(signs: dict, key: tuple):
    """Keep a pre-activation (the gate's or the up projection's) for its layer's fold."""
    def stash(pre):
        signs[key] = pre
    return stash


@torch.no_grad()
def stream_batches(model, tokens: torch.Tensor, layers: list[int], batch_size: int, batch_ids: Iterable[int],
                   reducer: AtlasReducer, on_batch: Callable[[int], None] | None = None,
                   desc: str = "streaming", disable: bool = False, skip: int = 0) -> AtlasReducer:
    """Run batches ``batch_ids`` (of ``batch_size`` windows) and fold them into ``reducer``, leaving out the
    first ``skip`` positions of every window (a BOS, or a token with no left context: the atlas's first-token
    artefacts). Positions stay global (``window * seq_len + pos``)."""
    batch_ids = list(batch_ids)
    sites = [hook_name("mlp_post", l) for l in layers]
    throttle = float(os.environ.get("INTERP_ATLAS_THROTTLE_S", "0"))  # tests slow the loop to kill it mid-run
    bs, T = batch_size, tokens.shape[1]
    with progress_bar(total=len(batch_ids) * bs * T, desc=desc, unit="tok", unit_scale=True,
                      disable=disable) as bar:
        for b in batch_ids:
            batch = tokens[b * bs:(b + 1) * bs]
            on = reducer.device
            positions = (torch.arange(b * bs, b * bs + len(batch), device=on)[:, None] * T
                         + torch.arange(skip, T, device=on)).flatten()

            signs = {} if reducer.quadrant_k else None
            last = max(range(len(layers)), key=layers.__getitem__)
            folds = [(site, _fold(reducer, slot, positions, signs, skip, slot == last))
                     for slot, site in enumerate(sites)]
            if signs is not None:  # GLU: the gate (hook_pre) and up (hook_pre_linear) signs run before hook_post
                folds += [(hook_name(name, l), _stash(signs, (part, slot))) for slot, l in enumerate(layers)
                          for part, name in (("gate", "mlp_pre"), ("up", "mlp_pre_linear"))]
            with hooks(model, folds):
                model.run_for_hooks(batch)
            reducer.add_tokens(len(positions))
            bar.update(batch.numel())
            if on_batch:
                on_batch(b)
            if throttle:
                time.sleep(throttle)
    return reducer
