"""Shared fixtures. Tiny random models are cheap and built per session; the embedded
model loads once per session (about 20 s the first time on a machine, then ~2 s)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, os.cpu_count() or 1))


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="device the test models load on (cpu, cuda, ...)")
    parser.addoption("--dtype", default="float32", help="dtype the test models load in (float32, bfloat16)")


def pytest_configure(config):
    # every load_model() without an explicit device/dtype follows the options
    os.environ["INTERP_DEVICE"] = config.getoption("--device")
    os.environ["INTERP_DTYPE"] = config.getoption("--dtype")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--device").startswith("cuda"):
        return
    skip = pytest.mark.skip(reason="needs --device cuda (make gpu-check)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _runs_dir(tmp_path, monkeypatch):
    """Every test writes Results into its own directory."""
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path / "runs"))


@pytest.fixture
def one_thread():
    """torch at one thread: a Ray actor reserves as many cores as the driver runs threads, so two fit on 2 cores."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_gpt2():
    from interp.models import load_model

    return load_model("tiny-gpt2")


@pytest.fixture(scope="session")
def tiny_llama():
    from interp.models import load_model

    return load_model("tiny-llama")


@pytest.fixture(scope="session", params=["tiny-gpt2", "tiny-llama"])
def tiny(request):
    from interp.models import load_model

    return load_model(request.param)


@pytest.fixture(scope="session")
def smol():
    from interp.models import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def gemma():
    """The second embedded model, Gemma 3 270M (base): about 100 s the first time on a machine (the
    GGUF is assembled and dequantized into $INTERP_HOME), about 6 s after that."""
    from interp.models import load_model

    return load_model("gemma3-270m")


def unbridged(spec: str):
    """An HF copy of an embedded model that was never bridged, read from its own cache."""
    from transformers import AutoModelForCausalLM

    from interp.models.embedded import embedded_cache_dir

    device = os.environ.get("INTERP_DEVICE", "cpu")  # built on the test device, like the model it checks
    return AutoModelForCausalLM.from_pretrained(embedded_cache_dir(spec), dtype="float32",
                                                use_safetensors=True).eval().to(device)
