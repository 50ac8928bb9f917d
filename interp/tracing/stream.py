"""The streamed runner: batches of token windows through the model, folded into a reducer.

``stream_batches`` runs the chosen batches of a ``[n_windows, seq_len]`` token tensor,
records the MLP neurons of the chosen layers and folds each batch into an
``AtlasReducer`` (``interp.tracing.reducers``), with the global position of every
token. Only one batch is alive at a time, so memory does not grow with the corpus;
a tqdm bar (stderr) shows tokens/s and the ETA. The atlas, its Ray shards and
``neuron_stats`` all use it.

``neuron_stats`` is the small case: every neuron's max, min, mean and fraction of
positive activations over the first ``n_tokens`` of a corpus (a k=1 atlas pass),
cached as safetensors under ``$INTERP_HOME/stats`` by weights hash.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from interp.tracing.hooks import record
from interp.tracing.names import hook_name
from interp.tracing.reducers import AtlasReducer


@torch.no_grad()
def stream_batches(model, tokens: torch.Tensor, layers: list[int], batch_size: int, batch_ids: Iterable[int],
                   reducer: AtlasReducer, on_batch: Callable[[int], None] | None = None,
                   desc: str = "streaming") -> AtlasReducer:
    """Run batches ``batch_ids`` (of ``batch_size`` windows) and fold them into ``reducer``."""
    batch_ids = list(batch_ids)
    sites = [hook_name("mlp_post", l) for l in layers]
    throttle = float(os.environ.get("INTERP_ATLAS_THROTTLE_S", "0"))  # tests slow the loop to kill it mid-run
    bs, T = batch_size, tokens.shape[1]
    with tqdm(total=len(batch_ids) * bs * T, desc=desc, unit="tok", unit_scale=True) as bar:
        for b in batch_ids:
            batch = tokens[b * bs:(b + 1) * bs]
            with record(model, sites) as acts:
                model(batch.to(model.device))
            positions = (torch.arange(b * bs, b * bs + len(batch))[:, None] * T + torch.arange(T)).flatten()
            for slot, site in enumerate(sites):
                reducer.update(slot, acts[site].flatten(0, 1), positions)
            reducer.add_tokens(batch.numel())
            bar.update(batch.numel())
            if on_batch:
                on_batch(b)
            if throttle:
                time.sleep(throttle)
    return reducer


def neuron_stats(model, corpus: str = "stdlib-docs", n_tokens: int = 4096, window: int = 128,
                 batch_size: int = 8) -> dict:
    """Per-neuron ``max``/``min``/``mean``/``frac_positive`` (``[n_layers, d_mlp]``) over
    the first ``n_tokens`` of ``corpus``, cached by weights hash."""
    from interp.datasets.corpus import window_tensor
    from interp.models.loading import interp_home

    path = interp_home() / "stats" / f"{model.weights_hash}-{corpus.replace('/', '_')}-{n_tokens}-{window}.safetensors"
    if path.is_file():
        try:
            return load_file(path)
        except Exception:
            path.unlink()
    tokens = window_tensor(model, corpus, window, n_tokens)
    layers = list(range(model.n_layers))
    reducer = AtlasReducer(model.n_layers, model.d_mlp, k=1)
    stream_batches(model, tokens, layers, batch_size, range(-(-len(tokens) // batch_size)), reducer,
                   desc=f"neuron ranges on {corpus}")
    n = max(int(reducer.count), 1)
    out = {"max": reducer.top_v[..., 0].contiguous(), "min": reducer.bot_v[..., 0].contiguous(),
           "mean": (reducer.sum / n).float(), "frac_positive": (reducer.positive.double() / n).float(),
           "count": reducer.count.reshape(1)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(out, tmp)
    tmp.replace(path)
    return out
