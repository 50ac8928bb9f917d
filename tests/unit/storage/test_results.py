from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from interp.errors import InterpError
from interp.result import Result
from interp.storage import list_runs, load_result, save_result, sql
from interp.storage import results as results_module


def _result(seed=0) -> Result:
    g = torch.Generator().manual_seed(seed)
    return Result(
        analysis="demo",
        config={"layers": [0, 1], "k": 3},
        provenance={"model": "tiny-llama", "weights_hash": "abc", "created": f"2026-01-0{seed + 1}T00:00:00+00:00"},
        tables={"t": pd.DataFrame({"layer": [0, 1], "token": [" Paris", "x"], "score": [0.5, -1.25]})},
        tensors={"w": torch.randn(3, 4, generator=g), "i": torch.arange(5)},
        metrics={"r": 0.123456789012345, "nan": math.nan, "name": "x"},
        notes=["did not reproduce"],
    )


def test_round_trip_is_exact(tmp_path):
    r = _result()
    path = save_result(r, tmp_path / "run")
    back = load_result(path)
    pd.testing.assert_frame_equal(back.tables["t"], r.tables["t"])
    for k in r.tensors:
        assert torch.equal(back.tensors[k], r.tensors[k]) and back.tensors[k].dtype == r.tensors[k].dtype
    assert back.metrics["r"] == r.metrics["r"] and math.isnan(back.metrics["nan"])
    assert back.config == r.config and back.notes == r.notes and back.run_id == r.run_id


def test_a_crash_mid_save_leaves_no_run(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(results_module, "save_file", broken)
    with pytest.raises(OSError):
        save_result(_result(), tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_resave_replaces_atomically(tmp_path):
    r = _result()
    save_result(r, tmp_path / "run")
    r.metrics["r"] = 2.0
    save_result(r, tmp_path / "run")
    assert load_result(tmp_path / "run").metrics["r"] == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_list_runs_and_sql(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path))
    save_result(_result(0))
    save_result(_result(1))
    runs = list_runs()
    assert len(runs) == 2 and runs.created.iloc[0] > runs.created.iloc[1]
    hits = sql("SELECT token, score FROM table('demo', 't') WHERE score < 0")
    assert list(hits.token) == ["x", "x"]
    one = sql("SELECT token, score FROM table('demo', 't') WHERE score < 0", run=runs.run_id.iloc[0])
    assert list(one.token) == ["x"]  # one run's rows once, however many runs are stored
    with pytest.raises(InterpError, match="not a run id"):
        sql("SELECT 1", run="../x")
    assert len(list_runs("other")) == 0


def test_load_refuses_a_non_run(tmp_path):
    with pytest.raises(InterpError, match="not a stored run"):
        load_result(tmp_path)


@pytest.mark.parametrize("spec", ["meta-llama/Llama-3.1-8B", "/home/me/models/edited run (v2)/",
                                  "C:\\models\\odd:name", "../../escape/../x"])
def test_run_ids_are_one_safe_path_component(spec, tmp_path, monkeypatch):
    """Any spec (a hub id, a path, an edit directory) gives a run id that is one path component, so the
    run lands at runs/<analysis>/<id>/ where the store lists it."""
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path / "runs"))
    r = _result()
    r = Result(analysis=r.analysis, config=r.config, provenance={**r.provenance, "model": spec}, tables=r.tables)
    assert "/" not in r.run_id and "\\" not in r.run_id and ".." not in r.run_id and ":" not in r.run_id
    path = save_result(r)
    assert path.parent == tmp_path / "runs" / "demo"
    runs = list_runs("demo", tmp_path / "runs")
    assert list(runs.model) == [spec] and list(runs.path) == [str(path)]


def test_specs_that_share_a_slug_get_different_ids():
    r = _result()
    a = Result(analysis="demo", config=r.config, provenance={**r.provenance, "model": "/a/" + "m" * 60})
    b = Result(analysis="demo", config=r.config, provenance={**r.provenance, "model": "/b/" + "m" * 60})
    assert a.run_id != b.run_id


def test_a_directory_spec_is_listed_and_reused(tmp_path, monkeypatch, tiny_llama):
    """A model saved to a directory and loaded by its path: its run is listed and cached_run finds it."""
    import interp
    from interp.models import load_model

    monkeypatch.setenv("INTERP_RUNS", str(tmp_path / "runs"))
    tiny_llama.save_pretrained(tmp_path / "my model")
    model = load_model(str(tmp_path / "my model"))
    first = interp.run("lm_head_decoding", model, layers=(0,), top_k=3)
    runs = list_runs("lm_head_decoding", tmp_path / "runs")
    assert list(runs.model) == [str(tmp_path / "my model")] and list(runs.path) == [str(first.path)]
    again = interp.cached_run("lm_head_decoding", model, layers=(0,), top_k=3)
    assert again.path == first.path
