"""neuron_stats (a k=1 pass of the streamed runner) equals a dense, brute-force computation."""

from __future__ import annotations

import torch

from interp.analyses.neurons.stats import neuron_stats
from interp.datasets.corpus import window_tensor
from interp.names import hook_name
from interp.tracing.hooks import record


def test_neuron_stats_equal_dense_activations(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_HOME", str(tmp_path / "home"))
    (tmp_path / "c.txt").write_text("The quick brown fox jumps over the lazy dog. " * 12)
    corpus = str(tmp_path / "c.txt")
    out = neuron_stats(tiny_llama, corpus, n_tokens=512, window=32, batch_size=3)
    windows = window_tensor(tiny_llama, corpus, 32, 512)
    sites = [hook_name("mlp_post", l) for l in range(tiny_llama.n_layers)]
    with torch.no_grad(), record(tiny_llama, sites) as acts:
        tiny_llama(windows)
    dense = torch.stack([acts[s].flatten(0, 1) for s in sites]).float()  # [layer, tokens, d_mlp]
    assert int(out["count"][0]) == dense.shape[1] == windows.numel()
    torch.testing.assert_close(out["max"], dense.amax(1))
    torch.testing.assert_close(out["min"], dense.amin(1))
    torch.testing.assert_close(out["mean"], dense.mean(1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["frac_positive"], (dense > 0).float().mean(1))


def test_neuron_stats_are_cached(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_HOME", str(tmp_path))
    first = neuron_stats(tiny_llama, "stdlib-docs", n_tokens=256, window=64)
    assert list((tmp_path / "stats").glob("*/stats.safetensors"))
    again = neuron_stats(tiny_llama, "stdlib-docs", n_tokens=256, window=64)
    assert torch.equal(first["max"], again["max"]) and int(first["count"][0]) == 256
