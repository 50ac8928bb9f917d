"""The embedded SmolLM2-135M-Instruct: hooks, logits and the cache."""

from __future__ import annotations

import shutil

import pytest
import torch

from interp.models import load_model
from interp.models.embedded import embedded_cache_dir
from tests.conftest import unbridged
from tests.unit.models.test_zoo import check_unbridged_parity
from tests.unit.tracing.test_neuron_formula import check_neuron_formula

pytestmark = pytest.mark.embedded


def test_architecture(smol):
    info = smol.info()
    assert (info["n_layers"], info["d_model"], info["d_mlp"], info["is_glu"]) == (30, 576, 1536, True)
    assert info["d_vocab"] == 49152 and info["final_norm"] == "rms"
    # tied embeddings: the unembedding is the embedding matrix
    assert torch.equal(smol.weights.W_U, smol.weights.W_E.T)


def test_hook_post_equals_formula(smol):
    check_neuron_formula(smol, "The capital of France is Paris, and", tol=1e-4)


def test_bridge_logits_match_an_unbridged_copy(smol):
    """Against a copy read from the model's own cache that was never bridged (the bridge rewires its
    own HF model in place); a perturbed copy must fail."""
    check_unbridged_parity(smol, unbridged("smollm2-135m"), "The capital of France is", tol=1e-4)


def test_answers_paris(smol):
    with torch.no_grad():
        logits = smol(smol.to_tokens("The capital of France is"))[0, -1]
    probs = logits.softmax(-1)
    assert int(probs.argmax()) == smol.token_id(" Paris")
    assert float(probs.max()) > 0.5  # measured 0.77 (no BOS, as SmolLM2's tokenizer does)


def test_corrupt_cache_is_rebuilt(smol, tmp_path, monkeypatch):
    real_cache = embedded_cache_dir()  # filled by the smol fixture
    monkeypatch.setenv("INTERP_HOME", str(tmp_path))
    cache = embedded_cache_dir()
    shutil.copytree(real_cache, cache)
    (cache / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="unreadable.*rebuilding"):
        rebuilt = load_model("smollm2-135m")
    assert rebuilt.weights_hash == smol.weights_hash
    assert (cache / "model.safetensors").stat().st_size > 100_000_000


def test_a_gguf_path_is_a_model_spec(smol):
    """The embedded GGUF loaded by its path gives the same logits as the embedded (cached) spec."""
    import torch

    from interp.models import load_model
    from interp.models.embedded import gguf_path

    direct = load_model(str(gguf_path()))
    tokens = smol.to_tokens("The capital of France is")
    with torch.no_grad():
        assert torch.equal(direct(tokens), smol(tokens))
    assert direct.source.startswith("gguf:") and direct.weights_hash == smol.weights_hash
