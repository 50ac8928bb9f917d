"""A store that survives damage, interrupts that say what was saved, comparisons that refuse,
splits without leaks, and Results that are finite or refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import interp
from interp.analyses import base
from interp.errors import InterpError
from interp.result import Config, Result, provenance
from tests.unit.cli.helpers import run_cli, strict
from tests.unit.cli.test_hostile import PAIRS

ROOT = Path(__file__).resolve().parents[3]


def test_a_damaged_run_is_skipped_checked_and_pruned(capsys, monkeypatch, tmp_path, tiny_llama):
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path))
    good = interp.run("top_neurons", tiny_llama, prompt="abc")
    bad = tmp_path / "top_neurons" / "20260101-000000-broken-run-abcdef"  # named as interp names its runs
    bad.mkdir(parents=True)
    (bad / "result.json").write_text("[]")
    code, out, err = run_cli(capsys, monkeypatch, "runs", "--json")
    assert code == 0 and [r["path"] for r in strict(out)] == [str(good.path)]
    assert [line for line in err.splitlines() if line.startswith("warning:")] == [
        line for line in err.splitlines() if "broken-run" in line]
    code, out, _ = run_cli(capsys, monkeypatch, "runs", "--check", "--json")
    assert code == 0 and [r["path"] for r in strict(out)] == [str(bad)]
    code, out, _ = run_cli(capsys, monkeypatch, "runs", "--prune", "--json")
    assert code == 0 and strict(out)[0]["removed"] and not bad.exists() and good.path.exists()
    odd = tmp_path / "top_neurons" / "broken-run"  # not named as interp names runs: listed, never removed
    odd.mkdir()
    (odd / "result.json").write_text("[]")
    code, out, _ = run_cli(capsys, monkeypatch, "runs", "--prune", "--json")
    assert code == 0 and not strict(out)[0]["removed"] and odd.exists()


def test_a_truncated_result_json_is_named_by_path_and_id(capsys, monkeypatch, tmp_path, tiny_llama):
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path))
    r = interp.run("top_neurons", tiny_llama, prompt="abc")
    meta = r.path / "result.json"
    meta.write_text(meta.read_text()[:40])
    for ref in (str(r.path), r.run_id):
        code, _, err = run_cli(capsys, monkeypatch, "patch-compare", ref, ref)
        assert code == 2 and "is damaged: result.json is not valid JSON" in err and "Traceback" not in err


def test_cached_run_recomputes_a_damaged_run(monkeypatch, tmp_path, tiny_llama):
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path))
    first = interp.cached_run("lm_head_decoding", tiny_llama)
    table = first.path / "tables" / "decoded.parquet"
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    assert interp.storage.verify_run(first.path) == ["tables/decoded.parquet differs from what was saved"]
    with pytest.warns(UserWarning, match="is damaged"):
        second = interp.cached_run("lm_head_decoding", tiny_llama)
    assert interp.storage.verify_run(second.path) == []  # recomputed (same second: the same run id, repaired)
    assert len(interp.load_result(second.path).table("decoded"))


def test_a_runs_folder_that_is_a_file_fails_before_the_work(capsys, monkeypatch, tmp_path):
    runs = tmp_path / "runs"
    runs.write_text("not a folder")
    monkeypatch.setenv("INTERP_RUNS", str(runs))
    code, _, err = run_cli(capsys, monkeypatch, "top-neurons", "-m", "tiny-llama", "-p", "abc")
    assert code == 2 and "is a file, not a folder" in err and runs.read_text() == "not a folder"


def test_a_corrupted_model_cache_is_detected(tmp_path):
    from interp.models.embedded import _read_cache
    from interp.storage.cache import file_fingerprint

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(os.urandom(3 << 20))
    (tmp_path / "interp.json").write_text(json.dumps({"source": "x", "weights_hash": "y",
                                                      "file_fingerprint": file_fingerprint(weights)}))
    data = bytearray(weights.read_bytes())
    middle = (len(data) - (1 << 16)) * 32 // 63  # inside one of the sampled blocks
    data[middle:middle + 8] = b"\x00" * 8
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="differs from what was written"):
        _read_cache(tmp_path)


def _interrupt(args: list[str], env: dict, wait_for=None) -> tuple[int, str]:
    # SIGINT back to its default in the child: a shell that started this test in the background ignores it
    proc = subprocess.Popen([sys.executable, "-m", "interp.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not (wait_for() if wait_for else False):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_an_interrupt_exits_130_and_says_what_was_saved(tmp_path):
    env = {**os.environ, "INTERP_RUNS": str(tmp_path / "runs"), "INTERP_ATLAS_THROTTLE_S": "0.3",
           "PYTHONPATH": str(ROOT)}
    atlas = ["atlas", "-m", "tiny-llama", "--tokens", "4096", "--seq-len", "32", "--batch-size", "1"]
    ckpts = tmp_path / "runs" / "neuron_atlas" / ".checkpoints"
    t0 = time.time()
    code, err = _interrupt([*atlas, "--checkpoint-every", "2"], env, lambda: ckpts.exists() and any(ckpts.iterdir()))
    to_batches = time.time() - t0  # how long this machine takes to get two batches in
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 130 and len(errors) == 1, err[-2000:]
    assert "a checkpoint is saved at" in errors[0] and "resume" in errors[0]
    assert "Traceback" not in err
    # no checkpoints: interrupt a few batches in, timed by the first run (a fixed delay raced the imports on a
    # loaded machine; the whole run takes about 40 s)
    env2 = {**env, "INTERP_RUNS": str(tmp_path / "runs2")}
    started = tmp_path / "runs2" / "neuron_atlas"
    t0 = time.time()
    code, err = _interrupt([*atlas, "--checkpoint-every", "0", "--seed", "1"], env2,
                           lambda: time.time() > t0 + to_batches)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 130 and errors == ["error: interrupted; nothing was saved (no Result, no checkpoint)"], err[-2000:]
    assert not started.exists() or not [p for p in started.iterdir() if not p.name.startswith(".")]


def test_patch_compare_refuses_runs_on_different_pairs(capsys, monkeypatch, tmp_path, tiny_llama):
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path / "runs"))
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(PAIRS)
    b.write_text(PAIRS.splitlines()[0] + "\n")
    ra = interp.run("patching", tiny_llama, dataset=str(a), method="attribution", components=["resid"])
    rb = interp.run("patching", tiny_llama, dataset=str(b), method="relp", components=["resid"])
    code, out, err = run_cli(capsys, monkeypatch, "patch-compare", str(ra.path), str(rb.path), "--json")
    assert code == 2 and "are not comparable: they patch different pairs" in strict(out)["error"]
    assert "--force" in err
    code, out, _ = run_cli(capsys, monkeypatch, "patch-compare", str(ra.path), str(rb.path), "--force")
    assert code == 0 and "compared with --force, although they patch different pairs" in out


def test_factual_fix_drops_repeated_facts_before_the_split(tiny_llama, tmp_path):
    import torch

    rows = []
    for p in ["ab", "bc", "cd", "de", "ef", "fg", "gh", "hi"]:
        prompt = f"The {p} is"
        with torch.no_grad():
            top = int(tiny_llama(tiny_llama.to_tokens(prompt))[0, -1].argmax())
        rows.append({"prompt": prompt, "subject": p, "answer": tiny_llama.token_str(top), "relation": "r"})
    rows += [rows[0]] * 3  # four copies of one fact
    facts = tmp_path / "facts.jsonl"
    facts.write_text("\n".join(json.dumps(r) for r in rows))
    result = interp.run("factual_fix", tiny_llama, facts=str(facts), k=2, corpus_tokens=256, seq_len=32, save=False)
    assert result.metrics["duplicates_dropped"] == 3
    assert result.metrics["train_facts"] + result.metrics["held_out_facts"] == 8
    assert any("3 repeated fact(s)" in n for n in result.notes)


def test_a_jsonl_with_a_byte_order_mark_is_read(capsys, monkeypatch, tmp_path):
    facts = tmp_path / "bom.jsonl"
    facts.write_bytes(b"\xef\xbb\xbf" + b'{"prompt": "The capital of X is", "subject": "X", "answer": " Y", '
                      b'"relation": "r"}\n')
    code, out, _ = run_cli(capsys, monkeypatch, "data", str(facts), "--json")
    assert code == 0 and strict(out)["count"] == 1


@dataclass(frozen=True)
class _DemoConfig(Config):
    pass


def test_a_non_finite_result_is_refused_and_not_stored(monkeypatch, tmp_path, tiny_llama):
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path))

    def broken(model, config):
        return Result("demo_nan", config, provenance(model, config), metrics={"effect": float("nan")})

    monkeypatch.setitem(base.REGISTRY, "demo_nan", base.Analysis("demo_nan", _DemoConfig, broken))
    with pytest.raises(InterpError, match=r"non-finite results \(effect\): nothing was stored"):
        interp.run("demo_nan", tiny_llama)
    assert not (tmp_path / "demo_nan").exists()


def test_result_json_is_strict_and_restores_non_finite_values(tmp_path):
    r = Result("demo", {"x": 1}, {"model": "m", "created": "2026-01-01T00:00:00+00:00"},
               metrics={"a": float("nan"), "b": {"c": [1.0, float("-inf")]}})
    path = interp.save_result(r, tmp_path / "run")
    strict((path / "result.json").read_text())
    back = interp.load_result(path).metrics
    assert back["a"] != back["a"] and back["b"]["c"] == [1.0, float("-inf")]
