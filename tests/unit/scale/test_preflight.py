"""The preflight: its pass counts equal the passes a job runs, it refuses a job that does not
fit (a planted memory limit), and ``--dry-run`` prints the estimate and stores nothing."""

from __future__ import annotations

import json

import pytest

import interp
from interp.analyses.base import estimate
from interp.errors import InterpError
from interp.models.model import Model
from interp.paths import runs_root
from interp.scale.preflight import Estimate, available_memory, parse_size
from tests.unit.cli.helpers import run_cli, strict


def stored(name: str) -> list[str]:
    folder = runs_root() / name
    return [p.name for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []

JOBS = [
    ("neuron_atlas", {"corpus": "stdlib-docs", "n_tokens": 700, "seq_len": 32, "batch_size": 4,
                      "checkpoint_every": 0}),
    ("patching", {"n": 3, "method": "activation", "components": ("mlp_out", "heads"), "batch_rows": 7,
                  "checkpoint_every": 0}),
    ("patching", {"n": 3, "method": "relp", "components": ("mlp_out", "neurons")}),
    ("lm_head_decoding", {"top_k": 3}),
]


PAIRS = [{"clean": "abcdefgh", "corrupt": "abxdefgh", "answer": "a", "wrong": "b"},
         {"clean": "hello wo", "corrupt": "jello wo", "answer": "r", "wrong": "x"},
         {"clean": "xyz", "corrupt": "xzz", "answer": "a", "wrong": "b"}]


@pytest.fixture
def pairs(tmp_path) -> str:
    """Pairs the tiny models' character tokenizer reads (IOI needs a word-level vocabulary)."""
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in PAIRS))
    return str(path)


@pytest.fixture
def forwards(monkeypatch):
    """Counts the model's forward passes (``__call__``, and ``run_for_hooks``: the atlas's pass for its hooks)."""
    count = {"n": 0}
    def counted(call):
        def counting(self, tokens):
            count["n"] += 1
            return call(self, tokens)
        return counting

    for name in ("__call__", "run_for_hooks"):
        monkeypatch.setattr(Model, name, counted(getattr(Model, name)))
    return count


@pytest.mark.parametrize("name,options", JOBS, ids=["atlas", "activation", "relp", "decoding"])
def test_the_estimate_counts_the_passes_the_job_runs(tiny_llama, forwards, pairs, name, options):
    if name == "patching":
        options = {**options, "dataset": pairs}
    est = estimate(name, tiny_llama, calibrate=False, **options)
    assert forwards["n"] == 0  # without a calibration, the estimate runs nothing
    interp.run(name, tiny_llama, save=False, **options)
    assert forwards["n"] == est.forwards
    assert est.peak >= est.memory["held now"] > 0 and est.seconds is None
    timed = estimate(name, tiny_llama, **options)
    assert timed.seconds > 0 and timed.calibration


def test_a_job_that_does_not_fit_is_refused_before_it_starts(tiny_llama, forwards, monkeypatch):
    options = dict(JOBS[0][1])
    monkeypatch.setenv("INTERP_MEMORY_LIMIT", "1MB")
    with pytest.raises(InterpError, match=r"neuron_atlas needs about .* but the device has 1\.0 MB: use a smaller "
                                          r"--batch-size"):
        interp.run("neuron_atlas", tiny_llama, **options)
    assert forwards["n"] == 0 and not stored("neuron_atlas")  # refused before any work, nothing stored
    monkeypatch.setenv("INTERP_MEMORY_LIMIT", "8GB")  # the negative control: the same job fits
    interp.run("neuron_atlas", tiny_llama, save=False, **options)
    assert forwards["n"] > 0


def test_dry_run_prints_the_estimate_and_stops(capsys, monkeypatch, pairs):
    code, out, _ = run_cli(capsys, monkeypatch, "atlas", "-m", "tiny-llama", "--corpus", "stdlib-docs",
                           "--tokens", "2048", "--seq-len", "32", "--dry-run", "--json")
    data = strict(out)
    assert code == 0 and data["forwards"] == 8 and data["fits"] and data["seconds"] > 0  # 8 batches, one pass
    assert not stored("neuron_atlas")
    code, out, _ = run_cli(capsys, monkeypatch, "patch", "-m", "tiny-llama", "-d", pairs, "--method", "activation",
                           "--components", "mlp_out", "--dry-run")
    assert code == 0 and out.startswith("preflight patching on cpu:") and "time   ~" in out
    assert not stored("patching")
    monkeypatch.setenv("INTERP_MEMORY_LIMIT", "1KB")
    code, out, _ = run_cli(capsys, monkeypatch, "decode", "-m", "tiny-llama", "--dry-run", "--json")
    assert code == 0 and strict(out)["fits"] is False  # a dry run reports, it does not refuse
    code, _, err = run_cli(capsys, monkeypatch, "decode", "-m", "tiny-llama")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "lm_head_decoding needs about" in err


def test_sizes_and_limits(monkeypatch):
    assert parse_size("24GB") == 24 * 1024**3 and parse_size("512 MB") == 512 * 1024**2
    assert parse_size("1000") == 1000 and parse_size("1.5GiB") == 1.5 * 1024**3
    with pytest.raises(InterpError, match="not a size"):
        parse_size("lots")
    monkeypatch.setenv("INTERP_MEMORY_LIMIT", "2GB")
    assert available_memory("cpu") == 2 * 1024**3
    monkeypatch.delenv("INTERP_MEMORY_LIMIT")
    assert available_memory("cpu") > 0
    est = Estimate("x", "cpu", forwards=1, memory={"a": 10.0}, measured_peak=30.0, available=20.0)
    assert est.peak == 30.0 and not est.fits  # a measured CUDA peak above the shapes' estimate counts
