"""Streaming a corpus through the model in batches, with bounded memory.

``stream_windows`` groups token windows into batches, runs them (optionally while
recording sites) and hands each batch to a reducer; only one batch is alive at a
time, so memory does not grow with the corpus. A tqdm bar (stderr) shows tokens/s.

``NeuronStats`` is such a reducer: every neuron's max, min, mean and count of
positive activations, exact over the stream. ``neuron_stats`` runs it over a corpus
and caches the result (safetensors) under ``$INTERP_HOME/stats`` by weights hash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from interp.tracing.hooks import record
from interp.tracing.names import hook_name


def batched(windows: Iterable[list[int]], batch_size: int) -> Iterator[torch.Tensor]:
    it = iter(windows)
    while chunk := list(islice(it, batch_size)):
        width = min(map(len, chunk))
        yield torch.tensor([w[:width] for w in chunk])


@torch.no_grad()
def stream_windows(model, windows: Iterable[list[int]], sites: list[str], reduce: Callable[[torch.Tensor, dict], None],
                   batch_size: int = 8, total_tokens: int | None = None, desc: str = "streaming") -> int:
    """Run every batch of windows, recording ``sites``, and call ``reduce(tokens, acts)``."""
    seen = 0
    with tqdm(total=total_tokens, desc=desc, unit="tok", unit_scale=True, leave=False) as bar:
        for tokens in batched(windows, batch_size):
            tokens = tokens.to(model.device)
            with record(model, sites) as acts:
                model(tokens)
            reduce(tokens, acts)
            seen += tokens.numel()
            bar.update(tokens.numel())
    return seen


class NeuronStats:
    """Exact streaming max / min / mean / fraction-positive of every neuron."""

    def __init__(self, n_layers: int, d_mlp: int):
        self.max = torch.full((n_layers, d_mlp), -torch.inf)
        self.min = torch.full((n_layers, d_mlp), torch.inf)
        self.sum = torch.zeros(n_layers, d_mlp, dtype=torch.float64)
        self.positive = torch.zeros(n_layers, d_mlp, dtype=torch.float64)
        self.count = 0

    def __call__(self, tokens: torch.Tensor, acts: dict) -> None:
        for layer in range(self.max.shape[0]):
            a = acts[hook_name("mlp_post", layer)].flatten(0, 1).float().cpu()  # [tokens, d_mlp]
            self.max[layer] = torch.maximum(self.max[layer], a.max(0).values)
            self.min[layer] = torch.minimum(self.min[layer], a.min(0).values)
            self.sum[layer] += a.sum(0, dtype=torch.float64)
            self.positive[layer] += (a > 0).sum(0)
        self.count += tokens.numel()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"max": self.max, "min": self.min, "mean": (self.sum / max(self.count, 1)).float(),
                "frac_positive": (self.positive / max(self.count, 1)).float(),
                "count": torch.tensor([self.count])}


def neuron_stats(model, corpus: str = "stdlib-docs", n_tokens: int = 4096, window: int = 128) -> dict:
    """Per-neuron ``max``/``min``/``mean``/``frac_positive`` (``[n_layers, d_mlp]``) over
    the first ``n_tokens`` of ``corpus``, cached by weights hash."""
    from interp.datasets.corpus import load_corpus, token_windows
    from interp.models.loading import interp_home

    path = interp_home() / "stats" / f"{model.weights_hash}-{corpus.replace('/', '_')}-{n_tokens}-{window}.safetensors"
    if path.is_file():
        try:
            return load_file(path)
        except Exception:
            path.unlink()
    stats = NeuronStats(model.n_layers, model.d_mlp)
    windows = token_windows(model, load_corpus(corpus, model), window=window, max_tokens=n_tokens)
    sites = [hook_name("mlp_post", l) for l in range(model.n_layers)]
    stream_windows(model, windows, sites, stats, total_tokens=n_tokens, desc=f"neuron ranges on {corpus}")
    out = stats.tensors()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(out, tmp)
    tmp.replace(path)
    return out
