"""Pinned runs: chosen once, kept in the store, first wherever the store is read newest first."""

from __future__ import annotations

import pytest

from interp.result import Result
from interp.storage import list_runs, newest_run, pin_run, save_result, unpin
from interp.storage.pins import pins_path, run_label


def _save(root, day: int, n: int, weights: str = "abc"):
    r = Result(analysis="demo", config={"n": n, "dataset": "ioi"}, provenance={
        "model": "tiny-llama", "weights_hash": weights, "created": f"2026-01-0{day}T00:00:00+00:00"}, metrics={})
    return save_result(r, root / "demo" / r.run_id), r.run_id


def test_a_pin_wins_over_newer_runs_until_unpinned(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path))
    old, old_id = _save(tmp_path, 1, 16)
    new, _ = _save(tmp_path, 2, 8)
    other, _ = _save(tmp_path, 3, 4, weights="zzz")  # another model's run: its own pin slot
    assert newest_run("demo", "abc") == str(new)
    assert pin_run(old_id) == {"analysis": "demo", "run_id": old_id, "weights_hash": "abc"}
    assert newest_run("demo", "abc") == str(old)
    assert newest_run("demo", "zzz") == str(other)
    runs = list_runs("demo")
    assert runs.pinned.tolist() == [True, False, False] and runs.path.iloc[0] == str(old)
    _save(tmp_path, 4, 32)  # a newer run (a Verify, a quick run) does not replace the pinned one
    assert newest_run("demo", "abc") == str(old)
    unpin("demo", "abc")
    assert newest_run("demo", "abc") != str(old) and not list_runs("demo").pinned.any()


def test_an_unreadable_pins_file_is_ignored_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path))
    _, first = _save(tmp_path, 1, 16)
    new, _ = _save(tmp_path, 2, 8)
    pins_path(tmp_path).write_text("{not json")
    with pytest.warns(UserWarning, match="pins file"):
        assert newest_run("demo", "abc") == str(new)
    pin_run(first)  # pinning again rewrites it
    assert list_runs("demo").pinned.iloc[0]


def test_run_label_names_the_fields_that_tell_runs_apart():
    label = run_label("20260101-000000-x-abcdef", "2026-01-01T09:30:00+00:00",
                      {"forget": "builtin:forget", "retain": "builtin:retain", "n": 4, "layers": [], "seed": 0}, True)
    assert label == ("20260101-000000-x-abcdef (2026-01-01 09:30, pinned): forget builtin:forget; "
                     "retain builtin:retain; n 4")
