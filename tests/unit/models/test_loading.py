from __future__ import annotations

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from interp.errors import InterpError
from interp.models import load_model


def test_unknown_spec_lists_the_choices():
    with pytest.raises(InterpError, match="smollm2-135m, gemma3-270m, tiny-gpt2, tiny-llama"):
        load_model("no-such-model-xyz")


def test_missing_local_directory():
    with pytest.raises(InterpError, match="does not exist"):
        load_model("./no/such/dir")


def test_unavailable_device():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(InterpError, match="CUDA is not available"):
        load_model("tiny-llama", device="cuda")


def test_local_directory_round_trip(tmp_path, tiny_llama):
    """A saved model directory works as a spec and gives the same logits."""
    tiny_llama.save_pretrained(tmp_path)
    again = load_model(str(tmp_path))
    tokens = tiny_llama.to_tokens("abc")
    with torch.no_grad():
        torch.testing.assert_close(again(tokens), tiny_llama(tokens))
    assert again.weights_hash == load_model(str(tmp_path)).weights_hash  # read from the files: stable
    assert again.prepends_bos == tiny_llama.prepends_bos
    assert again.to_tokens("abc").tolist() == tokens.tolist()


def test_directory_hash_comes_from_the_files(tmp_path, tiny_llama, monkeypatch):
    """A local model's hash is its files' (no pass over the tensors), changes with the weights and
    with the dtype, and the weights load in the dtype asked for."""
    import interp.models.model as model_module

    tiny_llama.save_pretrained(tmp_path / "a")
    other = load_model("tiny-llama")
    with torch.no_grad():
        next(iter(other.hf_model.parameters())).add_(1.0)
    other.save_pretrained(tmp_path / "b")
    monkeypatch.setattr(model_module, "hash_weights", lambda params: pytest.fail("hashed the tensors"))
    a, b = load_model(str(tmp_path / "a"), dtype="float32"), load_model(str(tmp_path / "b"), dtype="float32")
    assert a.weights_hash != b.weights_hash
    half = load_model(str(tmp_path / "a"), dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and half.weights_hash not in (a.weights_hash, b.weights_hash)


def test_default_attention_matches_eager(tiny_llama):
    """interp no longer forces eager attention: the bridge computes hook_pattern itself, so the
    logits and patterns are the same under SDPA (negative control: a perturbed query weight)."""
    from interp.models.model import Model
    from interp.models.tiny import build_tiny
    from interp.names import hook_name
    from interp.tracing import record

    tokens = tiny_llama.to_tokens(["abcdef", "xyzzy!"])
    site = hook_name("attn_pattern", 1)
    runs = {}
    for impl in ("eager", "sdpa", "perturbed"):
        hf, tok = build_tiny("tiny-llama")
        hf.set_attn_implementation("eager" if impl == "eager" else "sdpa")
        if impl == "perturbed":
            with torch.no_grad():
                hf.model.layers[1].self_attn.q_proj.weight.mul_(1.5)
        model = Model.wrap("tiny-llama", "interp/tiny-llama", hf, tok)
        with torch.no_grad(), record(model, [site]) as acts:
            runs[impl] = (model(tokens), acts[site])
    torch.testing.assert_close(runs["sdpa"][0], runs["eager"][0])
    torch.testing.assert_close(runs["sdpa"][1], runs["eager"][1])
    assert not torch.allclose(runs["perturbed"][1], runs["eager"][1], atol=1e-4)


def test_tiny_models_are_deterministic():
    a, b = load_model("tiny-gpt2"), load_model("tiny-gpt2")
    assert a.weights_hash == b.weights_hash


def test_architecture_facts(tiny_gpt2, tiny_llama):
    assert not tiny_gpt2.is_glu and tiny_llama.is_glu
    assert tiny_gpt2.weights.final_norm.kind == "layer" and tiny_llama.weights.final_norm.kind == "rms"
    assert tiny_llama.info()["n_neurons"] == tiny_llama.n_layers * tiny_llama.d_mlp


def test_weight_layouts(tiny_gpt2, tiny_llama):
    for m in (tiny_gpt2, tiny_llama):
        w = m.weights
        assert w.W_in[0].shape == (m.d_mlp, m.d_model)
        assert w.W_out[1].shape == (m.d_model, m.d_mlp)
        assert w.W_U.shape == (m.d_model, m.d_vocab)
        assert w.W_E.shape == (m.d_vocab, m.d_model)
    assert tiny_llama.weights.W_gate[0].shape == (tiny_llama.d_mlp, tiny_llama.d_model)
    with pytest.raises(InterpError, match="does not exist"):
        tiny_gpt2.weights.W_gate[0]
    # GPT-2's Conv1D stores [in, out]; the view is transposed to [out, in]
    c_fc = tiny_gpt2.hf_model.transformer.h[0].mlp.c_fc.original_component  # bridged in place
    assert isinstance(c_fc, Conv1D)
    assert torch.equal(tiny_gpt2.weights.W_in[0], c_fc.weight.T)
    with pytest.raises(InterpError, match="layer 5 is out of range"):
        tiny_gpt2.weights.W_out[5]


@pytest.mark.parametrize("error, message", [
    (OSError("[Errno -2] Name or service not known"), "needs the network"),
    (type("RepositoryNotFoundError", (Exception,), {})("404 Client Error"), "neither a local directory nor a model"),
    (type("GatedRepoError", (Exception,), {})("403 gated"), "is gated on the hub"),
])
def test_hub_failures_are_named_at_once(monkeypatch, error, message):
    """With the network allowed, one metadata request names the problem before any download retries."""
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def fail(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", fail)
    with pytest.raises(InterpError, match=message) as err:
        load_model("some-org/not-downloaded")
    assert "\n" not in str(err.value)


def test_offline_hub_id_says_how_to_get_it():
    with pytest.raises(InterpError, match="HF_HUB_OFFLINE is set: download it where there is network"):
        load_model("some-org/not-downloaded")
