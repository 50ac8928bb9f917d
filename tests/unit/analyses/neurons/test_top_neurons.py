from __future__ import annotations

import pytest
import torch

import interp
from interp.analyses.base import Config, get_analysis
from interp.errors import InterpError


def test_top_neurons_sums_and_saves(tiny):
    result = interp.run("top_neurons", tiny, prompt="hello there", top_k=5)
    table = result.table("neurons")
    assert len(table) == tiny.n_layers * tiny.d_mlp
    assert result.metrics["neurons_total_dla"] == pytest.approx(float(table.dla.sum()), rel=1e-4)
    top = result.table("top")
    assert top.dla.abs().is_monotonic_decreasing and len(top) == 5
    assert result.path is not None and interp.load_result(result.path).metrics == result.metrics
    assert torch.equal(result.tensors["dla"].flatten(), torch.tensor(table.dla.values))
    assert interp.list_runs("top_neurons").path.tolist() == [str(result.path)]


def test_unknown_option_and_analysis(tiny_llama):
    with pytest.raises(InterpError, match="unknown option"):
        interp.run("top_neurons", tiny_llama, promt="typo")
    with pytest.raises(InterpError, match="unknown analysis"):
        get_analysis("nope")


def test_config_round_trip():
    cfg = get_analysis("top_neurons").config(prompt="x", top_k=3)
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
    assert isinstance(cfg, Config) and len(cfg.digest()) == 8
