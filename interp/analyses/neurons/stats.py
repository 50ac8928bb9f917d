"""Neuron ranges: every neuron's max, min, mean and fraction of positive activations over
the first ``n_tokens`` of a corpus (a k=1 atlas pass), cached under ``$INTERP_HOME/stats``
by weights hash, corpus and window. The concept experiment scales its clamp by them."""

from __future__ import annotations

from safetensors.torch import load_file, save_file

from interp.datasets.corpus import window_tensor
from interp.paths import interp_home
from interp.storage.cache import Entry
from interp.tracing.reducers import AtlasReducer
from interp.tracing.stream import stream_batches

VERSION = 1


def neuron_stats(model, corpus: str = "stdlib-docs", n_tokens: int = 4096, window: int = 128,
                 batch_size: int = 8) -> dict:
    """Per-neuron ``max``/``min``/``mean``/``frac_positive`` (``[n_layers, d_mlp]``) over
    the first ``n_tokens`` of ``corpus``, cached by weights hash."""
    entry = Entry(interp_home(), "stats", model.weights_hash,
                  key={"corpus": corpus, "n_tokens": n_tokens, "window": window}, version=VERSION)
    cached = entry.read(lambda path: load_file(path / "stats.safetensors"))
    if cached is not None:
        return cached
    tokens = window_tensor(model, corpus, window, n_tokens)
    layers = list(range(model.n_layers))
    reducer = AtlasReducer(model.n_layers, model.d_mlp, k=1)
    stream_batches(model, tokens, layers, batch_size, range(-(-len(tokens) // batch_size)), reducer,
                   desc=f"neuron ranges on {corpus}")
    n = max(int(reducer.count), 1)
    out = {"max": reducer.top_v[..., 0].contiguous(), "min": reducer.bot_v[..., 0].contiguous(),
           "mean": (reducer.sum / n).float(), "frac_positive": (reducer.positive.double() / n).float(),
           "count": reducer.count.reshape(1)}
    with entry.write() as tmp:
        save_file(out, tmp / "stats.safetensors")
    return out
