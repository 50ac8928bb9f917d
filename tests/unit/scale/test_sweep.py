"""Sweeps over Ray actors equal one process; killed sweeps resume to the same Result; the worker
cap follows a connected cluster's resources, not this machine's cores."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

import interp
from interp.analyses.patching import causal_tracing, engine
from interp.analyses.patching.causal_tracing import TraceConfig
from interp.datasets.prompts import Pair
from interp.scale.sweep import sweep

ray = pytest.importorskip("ray")


@pytest.fixture
def cluster():
    """A local Ray cluster with more CPUs than this machine reports."""
    cpus = (os.cpu_count() or 1) + 6
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        yield cpus
    finally:
        ray.shutdown()


def test_worker_cap_follows_the_cluster(cluster):
    import warnings

    from interp.scale.ray_backend import worker_cap

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within the cluster's CPUs: no cap, no warning
        assert worker_cap(cluster - 1, threads=1) == cluster - 1 > (os.cpu_count() or 1)
    with pytest.warns(UserWarning, match=f"the Ray cluster's {cluster} CPUs; using {cluster}"):
        assert worker_cap(cluster + 10, threads=1) == cluster
    with pytest.warns(UserWarning, match="at 4 threads an actor"):  # each actor reserves the cores it runs threads on
        assert worker_cap(cluster, threads=4) == cluster // 4


def test_worker_cap_without_a_cluster():
    from interp.scale.ray_backend import worker_cap

    assert not ray.is_initialized()
    with pytest.warns(UserWarning, match="cores here"):
        assert worker_cap(10_000, threads=1) == os.cpu_count()


def test_placement_reserves_what_an_actor_uses():
    """A CPU actor reserves as many CPUs as it runs threads; a cuda actor one GPU; an auto actor its share of the
    free GPUs; a local GPU cluster leaves out the GPUs the driver's model holds."""
    from interp.scale.ray_backend import free_gpus, placement

    assert placement("cpu", 3, 4, 0) == {"num_cpus": 4, "num_gpus": 0, "device": "cpu", "threads": 4}
    assert placement("cuda:0", 3, 4, 8) == {"num_cpus": 0, "num_gpus": 1, "device": "cuda", "threads": 4}
    assert placement("auto", 2, 4, 7)["num_gpus"] == 3 and placement("auto", 2, 4, 7)["device"] == "auto"
    assert placement("auto", 4, 4, 2)["num_gpus"] == 1
    assert free_gpus(4, {0}) == [1, 2, 3] and free_gpus(4, {0, 1, 2, 3}) == [] and free_gpus(2, set()) == [0, 1]


def test_sweep_skips_what_is_done_and_saves_as_it_goes():
    items = {k: k * 10 for k in range(7)}
    folded, saved = {}, []
    sweep(None, items, lambda model, x, add: x + add, folded.__setitem__, (1,), done={0, 1}, every=2,
          save=lambda done: saved.append(list(done)))
    assert folded == {k: k * 10 + 1 for k in range(2, 7)}
    assert saved == [[0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]


PAIRS = [Pair("abcdefgh", "abxdefgh", "a", "b"), Pair("hello wo", "jello wo", "r", "x"), Pair("xyz", "xzz", "a", "b")]


def _patch_config(**kw):
    base = dict(n=3, method="activation", components=("resid", "mlp_out", "heads", "neurons"), batch_rows=7)
    return engine.PatchingConfig(**{**base, **kw})


def _same(a, b):
    for name in a.tables:
        pd.testing.assert_frame_equal(a.table(name), b.table(name))
    for name in a.tensors:  # NaN marks context positions past a window's edge
        torch.testing.assert_close(a.tensors[name], b.tensors[name], rtol=0, atol=0, equal_nan=True, msg=name)


def test_patching_workers_equal_one_process(tiny_llama, one_thread):
    local = engine.run(tiny_llama, _patch_config(), pairs=PAIRS)
    try:
        sharded = engine.run(tiny_llama, _patch_config(workers=2), pairs=PAIRS)
    finally:
        ray.shutdown()
    _same(local, sharded)


def test_patching_resumes_after_an_interruption(tiny_llama, monkeypatch):
    real, calls, all_calls = engine.activation_item, [], []
    monkeypatch.setattr(engine, "activation_item", lambda *a: all_calls.append(1) or real(*a))
    fresh = engine.run(tiny_llama, _patch_config(checkpoint_every=3), pairs=PAIRS)

    def dies_on_the_eighth(*args):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(engine, "activation_item", dies_on_the_eighth)
    with pytest.raises(KeyboardInterrupt):
        engine.run(tiny_llama, _patch_config(checkpoint_every=3), pairs=PAIRS)
    monkeypatch.setattr(engine, "activation_item", real)
    resumed_calls = []
    monkeypatch.setattr(engine, "activation_item", lambda *a: resumed_calls.append(1) or real(*a))
    resumed = engine.run(tiny_llama, _patch_config(checkpoint_every=3), pairs=PAIRS)
    assert len(resumed_calls) == len(all_calls) - 6, "resumed from the checkpoint after 6 items"
    _same(fresh, resumed)


def _known(model):
    """Facts with the tiny model's own top prediction as the answer, so it 'knows' them."""
    rows = []
    for prompt, subject in [("The cat sat on the", "cat"), ("Paris is in the land of", "Paris"),
                            ("A dog and a bird", "dog and")]:
        answer_id = int(model(model.to_tokens(prompt))[0, -1].argmax())
        rows.append({"prompt": prompt, "subject": subject, "answer": model.token_str(answer_id),
                     "relation": "r", "answer_id": answer_id})
    return pd.DataFrame(rows)


def test_tracing_workers_equal_one_process(tiny_llama, one_thread):
    config = TraceConfig(samples=2, batch_rows=16)
    known = _known(tiny_llama)
    local = causal_tracing._trace_sweep(tiny_llama, config, known)
    try:
        sharded = causal_tracing._trace_sweep(tiny_llama, TraceConfig(samples=2, batch_rows=16, workers=2), known)
    finally:
        ray.shutdown()
    assert local.keys() == sharded.keys() == {0, 1, 2}
    for k in local:
        for kind, grid in local[k]["effects"].items():
            assert torch.equal(grid, sharded[k]["effects"][kind])
        assert local[k]["p_corrupt"] == sharded[k]["p_corrupt"]


def test_tracing_resumes_after_an_interruption(tiny_llama, monkeypatch):
    config = TraceConfig(samples=2, batch_rows=16)
    known = _known(tiny_llama)
    fresh = causal_tracing._trace_sweep(tiny_llama, config, known)
    real = causal_tracing.trace_fact
    monkeypatch.setattr(causal_tracing, "trace_fact", lambda m, fact, *a: (_ for _ in ()).throw(KeyboardInterrupt)
                        if fact.subject == "dog and" else real(m, fact, *a))
    with pytest.raises(KeyboardInterrupt):
        causal_tracing._trace_sweep(tiny_llama, config, known)
    seen = []
    monkeypatch.setattr(causal_tracing, "trace_fact",
                        lambda m, fact, *a: seen.append(fact.subject) or real(m, fact, *a))
    resumed = causal_tracing._trace_sweep(tiny_llama, config, known)
    assert seen == ["dog and"]  # the two facts done before the interruption came from the checkpoint
    for k in fresh:
        for kind, grid in fresh[k]["effects"].items():
            assert torch.equal(grid, resumed[k]["effects"][kind])


def test_sharded_atlas_resumes_after_sigkill(tmp_path):
    """SIGKILL the driver of a two-worker atlas after a checkpoint, rerun it, compare with one process."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Neurons fire on some tokens and not on others; a histogram keeps the shape. " * 30)
    args = [sys.executable, "-m", "interp.cli", "atlas", "-m", "tiny-gpt2", "-c", str(corpus), "-n", "1024",
            "--seq-len", "32", "--batch-size", "2", "-k", "3", "--checkpoint-every", "2", "--json"]
    # one thread a process: each actor reserves the cores of the driver's threads, so two actors fit on 2 cores
    killed = {**os.environ, "INTERP_RUNS": str(tmp_path / "killed"), "INTERP_ATLAS_THROTTLE_S": "0.5",
              "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*args, "--workers", "2"], env=killed, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    progress = tmp_path / "killed" / "neuron_atlas" / ".checkpoints"
    deadline = time.time() + 180
    while time.time() < deadline and not list(progress.glob("*/progress.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    proc.wait()
    done = json.loads(next(progress.glob("*/progress.json")).read_text())["batches"]
    assert 0 < len(done) < 16
    resumed = subprocess.run([*args, "--workers", "2"], env={**killed, "INTERP_ATLAS_THROTTLE_S": "0"},
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming the atlas from a checkpoint" in resumed.stderr
    fresh = subprocess.run(args, env={**os.environ, "INTERP_RUNS": str(tmp_path / "fresh"), "OMP_NUM_THREADS": "1"},
                           capture_output=True,
                           text=True, timeout=300)
    _same(interp.load_result(json.loads(resumed.stdout)["path"]), interp.load_result(json.loads(fresh.stdout)["path"]))


@pytest.mark.parametrize("command", ["patch", "trace"])
def test_sharded_patching_and_tracing_resume_after_sigkill(command, tiny_llama, tmp_path):
    """SIGKILL the driver of a two-worker sweep after a checkpoint (and the Ray processes it started), rerun it:
    it resumes from the checkpoint and gives the one-process Result."""
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p.to_dict()) + "\n" for p in PAIRS))
    facts = _known(tiny_llama).drop(columns="answer_id")
    (tmp_path / "facts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in facts.to_dict("records")))
    args = {"patch": ["patch", "--method", "activation", "-d", str(tmp_path / "pairs.jsonl"), "--n", "3",
                      "--components", "mlp_out,heads", "--batch-rows", "7"],
            "trace": ["trace", "-f", str(tmp_path / "facts.jsonl"), "--n", "3", "--samples", "2",
                      "--batch-rows", "16"]}[command]
    args = [sys.executable, "-m", "interp.cli", *args, "-m", "tiny-llama", "--checkpoint-every", "1", "--json"]
    # one thread a process, so two actors fit on 2 cores; each fold waits, so the kill lands mid-run
    env = {**os.environ, "OMP_NUM_THREADS": "1", "INTERP_RUNS": str(tmp_path / "killed")}
    proc = subprocess.Popen([*args, "--workers", "2"], env={**env, "INTERP_SWEEP_THROTTLE_S": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    analysis = {"patch": "patching", "trace": "causal_tracing"}[command]
    progress = tmp_path / "killed" / analysis / ".checkpoints"
    deadline = time.time() + 180
    while time.time() < deadline and not list(progress.glob("*/progress.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = json.loads(next(progress.glob("*/progress.json")).read_text())["done"]
    resumed = subprocess.run([*args, "--workers", "2"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    said = re.search(r"from a checkpoint: (\d+) of (\d+)", resumed.stderr)
    assert said and 0 < int(said[1]) == len(done) < int(said[2])  # killed mid-run, resumed from where it was
    fresh = subprocess.run(args, env={**env, "INTERP_RUNS": str(tmp_path / "fresh")}, capture_output=True, text=True,
                           timeout=300)
    _same(interp.load_result(json.loads(resumed.stdout)["path"]), interp.load_result(json.loads(fresh.stdout)["path"]))
