"""Every analysis on CUDA equals the CPU (skipped unless ``pytest --device cuda``; ``make gpu-check``).

Each test loads tiny-llama on the CPU and on the GPU in float32 and compares the Results; the
tolerance is the float32 one for "same" (GPU kernels sum in another order)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import interp
from interp.analyses.neurons.atlas import AtlasConfig
from interp.analyses.neurons.read import active_on_text
from interp.datasets.prompts import Pair
from interp.models import load_model

pytestmark = pytest.mark.cuda

PAIRS = [Pair("abcdefgh", "abxdefgh", "a", "b"), Pair("hello wo", "jello wo", "r", "x")]


@pytest.fixture(scope="module")
def pair():
    return load_model("tiny-llama", device="cpu", dtype="float32"), load_model("tiny-llama", device="cuda",
                                                                               dtype="float32")


def _close(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-4, atol=1e-4)


def test_atlas_on_the_gpu(pair, tmp_path):
    cpu, gpu = pair
    (tmp_path / "c.txt").write_text("Neurons fire on some tokens and not on others. " * 40)
    config = AtlasConfig(corpus=str(tmp_path / "c.txt"), n_tokens=1024, seq_len=32, batch_size=4, k=4,
                         checkpoint_every=0)
    a, b = (interp.run("neuron_atlas", m, config, save=False) for m in pair)
    _close(a.table("neurons")[["max", "min", "mean"]], b.table("neurons")[["max", "min", "mean"]])
    assert (a.tensors["hist"] - b.tensors["hist"]).abs().sum() <= 0.01 * a.tensors["hist"].sum()
    rel = active_on_text(gpu, "abc", k=3, atlas=b)
    assert len(rel) == 9


def test_decoding_on_the_gpu(pair):
    a, b = (interp.run("lm_head_decoding", m, top_k=5, save=False) for m in pair)
    _close(a.table("neurons")[["out_norm"]], b.table("neurons")[["out_norm"]])
    torch.testing.assert_close(a.tensors["out_promoters_score"], b.tensors["out_promoters_score"], atol=1e-4,
                               rtol=1e-4)


@pytest.mark.parametrize("method", ["activation", "attribution", "relp"])
def test_patching_on_the_gpu(pair, method):
    from interp.analyses.patching import engine

    config = engine.PatchingConfig(method=method, components=("resid", "heads", "neurons"), checkpoint_every=0)
    a, b = (engine.run(m, config, pairs=PAIRS) for m in pair)
    _close(a.table("scores"), b.table("scores"))


def test_tracing_top_neurons_and_clamping_on_the_gpu(pair):
    from interp.analyses.patching import causal_tracing
    from interp.analyses.patching.causal_tracing import TraceConfig
    from tests.unit.scale.test_sweep import _known

    cpu, gpu = pair
    config = TraceConfig(samples=2, checkpoint_every=0)
    a, b = (causal_tracing._trace_sweep(m, config, _known(cpu)) for m in pair)
    for k in a:
        for kind in a[k]["effects"]:
            torch.testing.assert_close(a[k]["effects"][kind], b[k]["effects"][kind], atol=1e-4, rtol=1e-4)
    t = [interp.run("top_neurons", m, prompt="hello there", save=False) for m in pair]
    _close(t[0].table("neurons"), t[1].table("neurons"))


def test_bf16_on_the_gpu_loads_direct():
    model = load_model("tiny-llama", device="cuda", dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and model.device.type == "cuda"
    interp.run("lm_head_decoding", model, top_k=3, save=False)
