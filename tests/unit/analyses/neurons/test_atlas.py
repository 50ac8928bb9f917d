"""The atlas equals brute force; it resumes after SIGKILL; Ray shards merge exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import interp
from interp.analyses.neurons.atlas import AtlasConfig, plan
from interp.analyses.neurons.read import active_on_text, contexts
from interp.errors import InterpError
from interp.names import hook_name
from interp.tracing.hooks import record
from interp.tracing.reducers import HIST_EDGES, N_BINS, hist_bins

TEXT = ("Neurons fire on some tokens and not on others. A streaming top-k keeps the best examples; "
        "a histogram keeps the shape. Zebras, quartz, 1234567890, and jumping foxes! ") * 6


@pytest.fixture
def corpus(tmp_path) -> str:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return str(path)


def _config(corpus: str, **kw) -> AtlasConfig:
    base = dict(corpus=corpus, n_tokens=1024, seq_len=32, batch_size=3, k=4, checkpoint_every=0)
    return AtlasConfig(**{**base, **kw})


def test_atlas_equals_brute_force(tiny, corpus):
    config = _config(corpus)
    result = interp.run("neuron_atlas", tiny, config, save=False)
    tokens = plan(tiny, config)
    sites = [hook_name("mlp_post", l) for l in range(tiny.n_layers)]
    with torch.no_grad(), record(tiny, sites) as acts:
        tiny(tokens)
    skip = result.metrics["skipped"]  # each window's BOS and first text token are left out
    assert skip == int(tiny.prepends_bos) + 1
    full = torch.stack([acts[s] for s in sites]).float()  # [layer, window, pos, d_mlp]
    dense = full[:, :, skip:].flatten(1, 2)  # [layer, positions, d_mlp]
    neurons, ex = result.table("neurons"), result.table("examples")
    assert result.metrics["tokens"] == dense.shape[1] == tokens.numel() - skip * len(tokens)
    assert int(ex[ex.window >= 0].pos.min()) >= skip  # no example without left context
    torch.testing.assert_close(torch.tensor(neurons["max"].values), dense.amax(1).flatten())
    torch.testing.assert_close(torch.tensor(neurons["min"].values), dense.amin(1).flatten())
    # sums are float32 within a batch and float64 across batches: float32 precision
    torch.testing.assert_close(torch.tensor(neurons["mean"].values), dense.double().mean(1).flatten(),
                               rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(torch.tensor(neurons["var"].values), dense.double().var(1, unbiased=False).flatten(),
                               rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(torch.tensor(neurons["frac_positive"].values), (dense > 0).double().mean(1).flatten())
    # density: |activation| >= a tenth of the peak, at the histogram's resolution (the crossing bin, at most
    # 1.25x wide, left out)
    tau = 0.1 * dense.abs().amax(1, keepdim=True)
    density = torch.tensor(neurons["density"].values).view(tiny.n_layers, tiny.d_mlp)
    upper, lower = (dense.abs() >= tau).double().mean(1), (dense.abs() >= tau * 1.25).double().mean(1)
    assert bool((density <= upper.float() + 1e-6).all() and (density >= lower.float() - 1e-6).all())
    assert float((upper - lower).abs().max()) < 0.5 and bool((density < upper.float() - 1e-6).any() or
                                                                torch.equal(upper, lower))
    hist = torch.stack([torch.stack([torch.bincount(hist_bins(dense[l, :, n]), minlength=N_BINS)
                                     for n in range(tiny.d_mlp)]) for l in range(tiny.n_layers)])
    assert torch.equal(result.tensors["hist"].long(), hist)
    assert int(result.tensors["hist"].sum()) == dense.numel()
    for layer, neuron in [(0, 0), (1, 17), (tiny.n_layers - 1, tiny.d_mlp - 1)]:
        col = dense[layer, :, neuron]
        rows = ex[(ex.layer == layer) & (ex.neuron == neuron)]
        for which, largest in (("top", True), ("bottom", False)):
            part = rows[rows.which == which].sort_values("rank")
            best = col.topk(4, largest=largest)
            torch.testing.assert_close(torch.tensor(part.activation.values), best.values)
            positions = part.window.values * 32 + part.pos.values
            torch.testing.assert_close(full[layer, :, :, neuron].flatten()[torch.tensor(positions)],
                                       best.values)  # positions point at them
        ctx = contexts(tiny, result, layer, neuron, "top", k=2, width=3)
        for c in ctx:
            assert c["acts"][c["center"]] == pytest.approx(c["activation"], abs=1e-6)


def test_resume_after_sigkill_gives_the_same_result(corpus, tmp_path):
    """Kill the CLI mid-run with SIGKILL, rerun it, and compare with an uninterrupted run."""
    args = [sys.executable, "-m", "interp.cli", "atlas", "-m", "tiny-gpt2", "-c", corpus, "-n", "1024",
            "--seq-len", "32", "--batch-size", "2", "-k", "3", "--checkpoint-every", "2", "--json"]
    killed = {**os.environ, "INTERP_RUNS": str(tmp_path / "killed"), "INTERP_ATLAS_THROTTLE_S": "0.3"}
    proc = subprocess.Popen(args, env=killed, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    progress = tmp_path / "killed" / "neuron_atlas" / ".checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not list(progress.glob("*/progress.json")):
        time.sleep(0.05)
    time.sleep(0.4)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    done = int(__import__("json").loads(next(progress.glob("*/progress.json")).read_text())["batches_done"])
    assert 0 < done < 16
    resumed = subprocess.run(args, env={**killed, "INTERP_ATLAS_THROTTLE_S": "0"}, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0 and "resuming the atlas from a checkpoint" in resumed.stderr
    fresh_env = {**os.environ, "INTERP_RUNS": str(tmp_path / "fresh")}
    fresh = subprocess.run(args, env=fresh_env, capture_output=True, text=True, timeout=300)
    a = interp.load_result(__import__("json").loads(resumed.stdout)["path"])
    b = interp.load_result(__import__("json").loads(fresh.stdout)["path"])
    _assert_same(a, b)
    assert not list(progress.glob("*")), "the checkpoint is removed once the Result is stored"


def _assert_same(a, b):
    for name in ("neurons", "examples"):
        pd.testing.assert_frame_equal(a.table(name), b.table(name))
    for name in a.tensors:
        torch.testing.assert_close(a.tensors[name], b.tensors[name], rtol=0, atol=0, equal_nan=True, msg=name)


def test_ray_workers_give_the_same_result(tiny_llama, corpus, one_thread):
    pytest.importorskip("ray")
    import ray

    local = interp.run("neuron_atlas", tiny_llama, _config(corpus), save=False)
    try:
        sharded = interp.run("neuron_atlas", tiny_llama, _config(corpus, workers=2), save=False)
    finally:
        ray.shutdown()
    _assert_same(local, sharded)


def test_bad_corpora_and_workers(tiny_llama, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "ws.txt").write_text(" \n\t  \n")
    (tmp_path / "short.txt").write_text("tiny")
    for name, message in (("empty.txt", "empty"), ("ws.txt", "empty"), ("short.txt", "fewer than 32 tokens")):
        with pytest.raises(InterpError, match=message):
            interp.run("neuron_atlas", tiny_llama, _config(str(tmp_path / name)), save=False)
    with pytest.warns(UserWarning, match="more than the .* cores"):
        from interp.scale.ray_backend import worker_cap

        assert worker_cap(10_000, threads=1) == os.cpu_count()


def test_active_on_text(tiny_llama, corpus):
    """GLU neurons rank by |activation| (their sign is arbitrary); the signed ranking would differ."""
    table = active_on_text(tiny_llama, "abc", k=3)
    assert len(table) == 9 and list(table.token[:3]) == ["a"] * 3
    assert table.groupby("pos").activation.apply(lambda s: s.abs().is_monotonic_decreasing).all()
    assert (table.activation < 0).any()  # negative activations rank too
    atlas = interp.run("neuron_atlas", tiny_llama, _config(corpus), save=False)
    rel = active_on_text(tiny_llama, "abc", k=3, atlas=atlas)
    stats = atlas.table("neurons").set_index(["layer", "neuron"])
    for row in rel.itertuples():
        peak = max(abs(stats.loc[(row.layer, row.neuron), "max"]), abs(stats.loc[(row.layer, row.neuron), "min"]))
        assert row.relative == pytest.approx(abs(row.activation) / peak, rel=1e-5)
    assert rel.groupby("pos").relative.apply(lambda s: s.is_monotonic_decreasing).all()


def test_long_documents_are_chunked_into_windows(tiny_llama, tmp_path):
    (tmp_path / "long.txt").write_text("x" * 500)  # one document, far longer than a window
    tokens = plan(tiny_llama, _config(str(tmp_path / "long.txt"), n_tokens=480))
    assert tokens.shape == (15, 32)
    assert Path(tmp_path / "long.txt").read_text()[:480] == tiny_llama.tokenizer.decode(tokens.flatten())


def test_hist_bins_follow_the_edges():
    """Arithmetic binning agrees with the edges (away from float rounding at an edge)."""
    x = torch.cat([torch.logspace(-5, 5, 2001), -torch.logspace(-5, 5, 2001), torch.zeros(3)]) * 1.0001
    assert len(HIST_EDGES) == N_BINS - 1 and torch.all(HIST_EDGES.diff() > 0)
    bins = hist_bins(x)
    edges = torch.cat([torch.tensor([-torch.inf]), HIST_EDGES, torch.tensor([torch.inf])])
    lower, upper = edges[bins], edges[bins + 1]
    assert torch.all((x >= lower) | torch.isclose(x, lower, rtol=1e-5))
    assert torch.all((x <= upper) | torch.isclose(x, upper, rtol=1e-5))


def test_glu_quadrants_and_stored_contexts_equal_brute_force(tiny_llama, corpus):
    """Each gate/up sign quadrant's share of positions and its top |activation| examples match a dense
    recording; the stored per-token context activations equal a re-run."""
    from interp.tracing.reducers import QUADRANTS

    config = _config(corpus)
    result = interp.run("neuron_atlas", tiny_llama, config, save=False)
    tokens = plan(tiny_llama, config)
    L = tiny_llama.n_layers
    sites = [hook_name(s, l) for l in range(L) for s in ("mlp_pre", "mlp_pre_linear", "mlp_post")]
    with torch.no_grad(), record(tiny_llama, sites) as acts:
        tiny_llama(tokens)
    neurons, ex = result.table("neurons"), result.table("examples")
    kept = torch.arange(tokens.shape[1]).repeat(len(tokens)) >= result.metrics["skipped"]  # left-out positions
    for layer, neuron in [(0, 3), (L - 1, 40)]:
        gate = (acts[hook_name("mlp_pre", layer)].flatten(0, 1)[:, neuron] > 0) & kept
        up = (acts[hook_name("mlp_pre_linear", layer)].flatten(0, 1)[:, neuron] > 0) & kept
        post = acts[hook_name("mlp_post", layer)].flatten(0, 1)[:, neuron].float()
        row = neurons[(neurons.layer == layer) & (neurons.neuron == neuron)].iloc[0]
        for name, inside in zip(QUADRANTS, (gate & up, gate & ~up & kept, ~gate & up & kept, ~gate & ~up & kept)):
            assert row[f"share_{name}"] == pytest.approx(float(inside.double().sum() / kept.sum()))
            part = ex[(ex.layer == layer) & (ex.neuron == neuron) & (ex.which == name) & (ex.window >= 0)]
            expected = torch.where(inside, post.abs(), -torch.inf).topk(min(3, int(inside.sum()))).values
            torch.testing.assert_close(torch.tensor(part.sort_values("rank").activation.abs().values), expected)
            positions = torch.tensor(part.window.values * 32 + part.pos.values)
            assert bool(inside[positions].all())
        stored = contexts(tiny_llama, result, layer, neuron, "top", k=3, width=4)
        fields = {k: v for k, v in result.__dict__.items() if not k.startswith("_")}  # not the look-up caches
        fresh = contexts(tiny_llama, result.__class__(**{**fields, "tensors": {
            k: v for k, v in result.tensors.items() if k != "context_acts"}}), layer, neuron, "top", k=3, width=4)
        for a, b in zip(stored, fresh):
            assert a["tokens"] == b["tokens"] and a["acts"] == pytest.approx(b["acts"], abs=1e-6)


def test_the_facade_reads_stored_contexts_without_a_forward_pass(tiny_llama, corpus, monkeypatch):
    """The explorer's default (``Workbench.contexts`` with no k or width) asks for what the atlas stored; a
    forward pass there would be a miss (a planted wider request does run one)."""
    import interp.analyses.neurons.read as read
    from interp.workbench import Workbench

    result = interp.run("neuron_atlas", tiny_llama, _config(corpus))
    wb = Workbench("tiny-llama", model=tiny_llama)
    calls = []
    real = read.record
    monkeypatch.setattr(read, "record", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    got = wb.contexts(str(result.path), "1.3", "top")
    assert calls == [] and len(got) == read.stored_contexts(result, 1, 3, "top") > 0
    assert len(got[0]["acts"]) <= 2 * read.stored_width(result) + 1
    wb.contexts(str(result.path), "1.3", "top", width=read.stored_width(result) + 1)
    assert calls == [1]


def test_firing_mass_per_sign_from_the_histogram(tiny_llama, corpus):
    """The histogram's firing mass per sign is close to a dense computation (bin midpoints, within the
    bins' 1.25x width), and a negative-only neuron's positive mass is zero."""
    from interp.analyses.neurons.atlas import DENSITY_FRACTION
    from interp.analyses.neurons.read import firing_mass

    config = _config(corpus)
    result = interp.run("neuron_atlas", tiny_llama, config, save=False)
    sites = [hook_name("mlp_post", l) for l in range(tiny_llama.n_layers)]
    with torch.no_grad(), record(tiny_llama, sites) as acts:
        tiny_llama(plan(tiny_llama, config))
    dense = torch.stack([acts[s].flatten(0, 1) for s in sites]).double()  # [layer, positions, d_mlp]
    peak = dense.abs().amax(1)
    tau = DENSITY_FRACTION * peak
    stats = result.table("neurons")
    shape = (tiny_llama.n_layers, tiny_llama.d_mlp)
    pos, neg = firing_mass(result.tensors["hist"], torch.tensor(stats["max"].values).view(shape),
                           torch.tensor(stats["min"].values).view(shape), int(result.metrics["tokens"]))
    want_pos = (dense * (dense >= tau[:, None] * 1.25)).mean(1)  # bins wholly beyond tau (at most 1.25x wide)
    want_pos_hi = (dense * (dense >= tau[:, None])).mean(1)
    assert bool((pos >= want_pos / 1.25 - 1e-9).all() and (pos <= want_pos_hi * 1.25 + 1e-9).all())
    want_neg_hi = (-dense * (dense <= -tau[:, None])).mean(1)
    assert bool((neg <= want_neg_hi * 1.25 + 1e-9).all())
    fake = torch.zeros_like(result.tensors["hist"])
    fake[..., 10] = 5  # every position in one negative bin
    p, q = firing_mass(fake, torch.full(shape, -1e-9), torch.full(shape, -1.0), 5)
    assert bool((p == 0).all())
