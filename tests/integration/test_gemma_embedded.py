"""The second embedded model, Gemma 3 270M (base): its architecture facts, parity with an un-bridged
copy, the invariants the zoo checks on tiny models (``1 + w`` norms, post-feedforward norms), and what
it answers (measured: " Paris" p=0.50 on the Eiffel Tower prompt)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import unbridged
from tests.unit.models.test_zoo import check_dla_sums, check_folded_decoding, check_formula, check_unbridged_parity

pytestmark = pytest.mark.embedded

EIFFEL = "The Eiffel Tower is in the city of"


def test_architecture(gemma):
    info = gemma.info()
    assert (info["n_layers"], info["d_model"], info["d_mlp"], info["d_vocab"]) == (18, 640, 2048, 262144)
    assert info["is_glu"] and info["act_fn"] == "gelu_pytorch_tanh" and info["final_norm"] == "rms"
    assert gemma.prepends_bos and gemma.to_tokens("a")[0, 0] == gemma.tokenizer.bos_token_id
    assert gemma.source.startswith("gguf:gemma-3-270m-q4_k_m.gguf:sha256=a5fd3b62230aa5ec")
    w = gemma.weights  # Gemma's norms scale by 1 + w, and each MLP output is normed before it is added
    assert getattr(gemma.bridge.ln_final, "uses_weight_offset", False)
    raw = gemma.bridge.ln_final.original_component.weight
    torch.testing.assert_close(w.final_norm.weight, 1 + raw)
    assert all(w.mlp_post_norm[layer] is not None for layer in range(gemma.n_layers))


def test_bridge_logits_match_an_unbridged_copy(gemma):
    check_unbridged_parity(gemma, unbridged("gemma3-270m"), EIFFEL, tol=1e-3)


def test_invariants_hold_on_the_real_weights(gemma):
    check_formula(gemma, EIFFEL, tol=2e-3)
    check_dla_sums(gemma, EIFFEL, target=gemma.answer_token(EIFFEL, " Paris"), tol=2e-2)
    check_folded_decoding(gemma, 9, 100)


def test_answers_paris(gemma):
    with torch.no_grad():
        probs = gemma(gemma.to_tokens(EIFFEL))[0, -1].softmax(-1)
    assert int(probs.argmax()) == gemma.answer_token(EIFFEL, " Paris")
    assert float(probs.max()) > 0.3  # measured 0.50


def test_the_answer_is_the_continuation(gemma):
    """SentencePiece: the continuation after the prompt is one token, whatever the answer alone gives."""
    ids = gemma.continuation(EIFFEL, " Paris")
    assert len(ids) == 1 and gemma.token_str(ids[0]) == " Paris"
