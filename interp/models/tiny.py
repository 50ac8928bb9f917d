"""Tiny random models for tests: built from configs, no file, no network.

``tiny-gpt2`` is a GPT-2-style model (LayerNorm, GELU MLP with biases, learned
positions); ``tiny-llama`` is Llama-style (RMSNorm, SwiGLU MLP, rotary, GQA, tied
embeddings). Both use a byte-level tokenizer built in code (259 tokens: three
specials plus the 256 byte symbols), so any text tokenizes without a vocab file.
Weights are drawn from the architecture's initialiser under a fixed seed.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

SPECIALS = ["<|bos|>", "<|eos|>", "<|pad|>"]
N_CTX = 128


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer with no merges: one token per UTF-8 byte."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    vocab.update({ch: i + len(SPECIALS) for i, ch in enumerate(alphabet)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIALS[0],
        eos_token=SPECIALS[1],
        pad_token=SPECIALS[2],
        model_max_length=N_CTX,
    )


def tiny_config(kind: str, vocab_size: int):
    if kind == "tiny-gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_positions=N_CTX,
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_inner=256,
            activation_function="gelu_new",
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=2,
        )
    if kind == "tiny-llama":
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=192,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=N_CTX,
            tie_word_embeddings=True,
            hidden_act="silu",
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=2,
        )
    raise KeyError(kind)


def build_tiny(kind: str, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Build a tiny model of ``kind`` with weights drawn under ``seed``."""
    tokenizer = byte_tokenizer()
    config = tiny_config(kind, vocab_size=len(tokenizer))
    cls = GPT2LMHeadModel if kind == "tiny-gpt2" else LlamaForCausalLM
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = cls(config)
        if kind == "tiny-llama":
            # Llama initialises norm weights to exactly 1; perturb them so tests
            # that fold the norm weight into W_U are not trivially true.
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.data.add_(0.1 * torch.randn_like(p))
    return model.eval(), tokenizer
