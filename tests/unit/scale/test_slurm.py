"""`--launcher submitit`: a sweep as a SLURM array job (submitit's local processes here, where SLURM is absent)
equals one process, for activation patching, causal tracing and the atlas; a failing task names its log."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.analyses.patching import causal_tracing, engine
from interp.analyses.patching.causal_tracing import TraceConfig
from interp.errors import InterpError
from tests.unit.analyses.neurons.test_atlas import TEXT, _assert_same, _config
from tests.unit.scale.test_sweep import PAIRS, _known, _patch_config, _same

pytest.importorskip("submitit")


@pytest.fixture(autouse=True)
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path / "runs"))  # job files go under the store's .submitit


def test_patching_and_tracing_as_array_jobs_equal_one_process(tiny_llama, tmp_path):
    local = engine.run(tiny_llama, _patch_config(), pairs=PAIRS)
    arrayed = engine.run(tiny_llama, _patch_config(workers=2, launcher="submitit"), pairs=PAIRS)
    _same(local, arrayed)
    known = _known(tiny_llama)
    traced = causal_tracing._trace_sweep(tiny_llama, TraceConfig(samples=2, batch_rows=16), known)
    arrayed = causal_tracing._trace_sweep(tiny_llama, TraceConfig(samples=2, batch_rows=16, workers=2,
                                                                  launcher="submitit"), known)
    for k in traced:
        for kind, grid in traced[k]["effects"].items():
            assert torch.equal(grid, arrayed[k]["effects"][kind])
    assert not (tmp_path / "runs" / ".submitit").exists()  # a run that succeeded leaves no job files, nor their folder


def test_an_atlas_as_an_array_job_equals_one_process(tiny_llama, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    local = interp.run("neuron_atlas", tiny_llama, _config(str(corpus)), save=False)
    arrayed = interp.run("neuron_atlas", tiny_llama, _config(str(corpus), workers=2, launcher="submitit"), save=False)
    _assert_same(local, arrayed)


def _fails(model, item, *args):
    raise ValueError("planted")


def test_a_failed_task_names_its_log(tiny_llama, tmp_path):
    from interp.scale.sweep import sweep

    with pytest.raises(InterpError, match=r"array task .* failed \(.*\); its log: .*\.err"):
        sweep(tiny_llama, {0: 1, 1: 2}, _fails, lambda k, out: None, workers=2, launcher="submitit")
