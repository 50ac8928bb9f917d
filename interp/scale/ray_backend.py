"""Ray backend: shard an atlas's batches across actors, one model per actor.

``run_sharded`` starts a local Ray cluster (``ray.init(num_cpus=workers)``) unless
one is already connected (``ray.init(address=...)`` or ``RAY_ADDRESS`` for a
multi-node cluster started with ``ray start --head`` / ``ray start --address``).
Batch ``b`` goes to worker ``b % workers``; each worker loads the model spec itself
(so a hub id or a path must be reachable from every node), runs its batches with the
same reducer as the in-process path and returns the reducer state, which is merged
exactly (``AtlasReducer.merge``). Each actor uses one CPU thread.
"""

from __future__ import annotations

import os

import torch

from interp.errors import InterpError
from interp.models import load_model
from interp.tracing.reducers import AtlasReducer
from interp.tracing.stream import stream_batches


def _ray():
    try:
        import ray
    except ImportError:
        raise InterpError("--workers > 1 needs Ray: pip install 'interp[scale]' (or pip install ray)") from None
    return ray


def run_sharded(model, tokens: torch.Tensor, layers: list[int], batch_size: int, k: int, n_batches: int,
                workers: int) -> AtlasReducer:
    """Stream batches ``0..n_batches-1`` over ``workers`` actors and merge their reducers exactly."""
    ray = _ray()
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)

    AtlasWorker = ray.remote(num_cpus=1)(_AtlasWorker)

    dtype = str(model.dtype).removeprefix("torch.")
    actors = [AtlasWorker.remote(model.spec, dtype, os.environ.get("INTERP_HOME")) for _ in range(workers)]
    tokens_ref = ray.put(tokens)
    try:
        futures = [a.run.remote(tokens_ref, layers, batch_size, k, list(range(i, n_batches, workers)))
                   for i, a in enumerate(actors)]
        merged = AtlasReducer(len(layers), model.d_mlp, k)
        for state in ray.get(futures):
            merged.merge(AtlasReducer.from_state(state))
    finally:
        for a in actors:
            ray.kill(a)
    return merged


class _AtlasWorker:
    """One model per actor; runs its share of the batches with the in-process reducer."""

    def __init__(self, spec: str, dtype: str, home: str | None):
        import warnings

        warnings.filterwarnings("ignore")
        if home:
            os.environ["INTERP_HOME"] = home
        torch.set_num_threads(1)
        self.model = load_model(spec, dtype=dtype)

    def run(self, tokens, layers, batch_size: int, k: int, batch_ids):
        reducer = AtlasReducer(len(layers), self.model.d_mlp, k)
        stream_batches(self.model, tokens, layers, batch_size, batch_ids, reducer, desc="atlas shard")
        return reducer.state()
