from __future__ import annotations

import pytest
import torch

from interp.errors import InterpError


def test_empty_prompt(tiny_llama):
    with pytest.raises(InterpError, match="empty"):
        tiny_llama.to_tokens("   ")


def test_prompt_longer_than_context(tiny_llama):
    with pytest.raises(InterpError, match=r"longer than tiny-llama's context of 128"):
        tiny_llama.to_tokens("x" * 200)


def test_batch_is_right_padded_and_exact(tiny_llama):
    """Right padding leaves every real token's logits as in an unpadded run."""
    texts = ["ab", "abcdef"]
    batch = tiny_llama.batch(texts)
    assert batch.tokens.shape == (2, 6) and batch.lengths.tolist() == [2, 6]
    with torch.no_grad():
        padded = tiny_llama(batch.tokens)
        alone = tiny_llama(tiny_llama.to_tokens("ab"))
    torch.testing.assert_close(padded[0, :2], alone[0], atol=1e-5, rtol=1e-5)


def test_prepend_bos(tiny_llama):
    assert not tiny_llama.prepends_bos
    toks = tiny_llama.to_tokens("a", prepend_bos=True)[0].tolist()
    assert toks[0] == tiny_llama.tokenizer.bos_token_id and len(toks) == 2


def test_token_id_policies(tiny_llama):
    assert tiny_llama.token_str(tiny_llama.token_id("a")) == "a"
    with pytest.raises(InterpError, match=r"not a single token.*\['a', 'b'\]"):
        tiny_llama.token_id("ab")
    assert tiny_llama.token_id("ab", policy="first") == tiny_llama.token_id("a")
