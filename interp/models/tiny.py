"""Tiny random models for tests, the architecture zoo: built from configs, no file, no network.

Each ``tiny-<arch>`` spec is a two-layer model of one architecture family, at d_model 64,
with what makes the family different kept: GPT-2 (LayerNorm, GELU with biases, learned
positions, Conv1D), Llama (RMSNorm, SwiGLU, rotary, GQA, tied embeddings), Gemma 2 (``1+w``
norms, post-attention and post-feedforward norms, attention and final-logit softcapping),
Gemma 3 (as Gemma 2 without softcaps, q/k norms, sliding and global layers), Qwen 2 (qkv
bias), Qwen 3 (q/k norm), GPT-NeoX (parallel residual, fused QKV, partial rotary), OLMo 2
(norms after attention and MLP, q/k norm), Phi-3 (fused ``gate_up_proj`` and ``qkv_proj``),
OPT (ReLU, no ``mlp`` module) and Mistral (sliding window).

All use a byte-level tokenizer built in code (259 tokens: three specials plus the 256 byte
symbols), so any text tokenizes without a vocab file. Weights are drawn from the
architecture's initialiser under a fixed seed; norm weights (initialised to exactly 1, or 0
for Gemma's ``1+w``) are perturbed so folding a norm into a weight is never trivially true.
"""

from __future__ import annotations

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedModel, PreTrainedTokenizerFast

SPECIALS = ["<|bos|>", "<|eos|>", "<|pad|>"]
N_CTX = 128
_IDS = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2}
_SMALL = {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 4,
          "max_position_embeddings": N_CTX}

# spec -> (config class, model class, config kwargs)
ZOO: dict[str, tuple[str, str, dict]] = {
    "tiny-gpt2": ("GPT2Config", "GPT2LMHeadModel", {
        "n_positions": N_CTX, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_inner": 256,
        "activation_function": "gelu_new", "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}),
    "tiny-llama": ("LlamaConfig", "LlamaForCausalLM", {
        **_SMALL, "num_key_value_heads": 2, "tie_word_embeddings": True, "hidden_act": "silu"}),
    "tiny-gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {
        **_SMALL, "num_key_value_heads": 2, "head_dim": 16, "query_pre_attn_scalar": 16,
        "hidden_activation": "gelu_pytorch_tanh", "sliding_window": 8, "final_logit_softcapping": 30.0,
        "attn_logit_softcapping": 50.0, "tie_word_embeddings": True}),
    "tiny-gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", {
        **_SMALL, "num_key_value_heads": 1, "head_dim": 16, "query_pre_attn_scalar": 16,
        "hidden_activation": "gelu_pytorch_tanh", "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention"], "tie_word_embeddings": True}),
    "tiny-qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {
        **_SMALL, "num_key_value_heads": 2, "hidden_act": "silu", "tie_word_embeddings": False}),
    "tiny-qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {
        **_SMALL, "num_key_value_heads": 2, "head_dim": 16, "hidden_act": "silu", "tie_word_embeddings": True}),
    "tiny-neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", {
        **_SMALL, "hidden_act": "gelu", "rotary_pct": 0.5, "use_parallel_residual": True,
        "tie_word_embeddings": False}),
    "tiny-olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {
        **_SMALL, "num_key_value_heads": 4, "hidden_act": "silu", "tie_word_embeddings": False}),
    "tiny-phi3": ("Phi3Config", "Phi3ForCausalLM", {
        **_SMALL, "num_key_value_heads": 4, "hidden_act": "silu", "tie_word_embeddings": False,
        "original_max_position_embeddings": N_CTX}),
    "tiny-opt": ("OPTConfig", "OPTForCausalLM", {
        "hidden_size": 64, "ffn_dim": 192, "num_hidden_layers": 2, "num_attention_heads": 4,
        "max_position_embeddings": N_CTX, "word_embed_proj_dim": 64, "activation_function": "relu",
        "do_layer_norm_before": True, "dropout": 0.0, "attention_dropout": 0.0}),
    "tiny-mistral": ("MistralConfig", "MistralForCausalLM", {
        **_SMALL, "num_key_value_heads": 2, "hidden_act": "silu", "sliding_window": 8,
        "tie_word_embeddings": False}),
}
TINY = tuple(ZOO)


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
    if kind not in ZOO:
        raise KeyError(kind)
    config_cls, _, kwargs = ZOO[kind]
    config = getattr(transformers, config_cls)(vocab_size=vocab_size, **_IDS, **kwargs)
    config.architectures = [ZOO[kind][1]]
    return config


def build_tiny(kind: str, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Build a tiny model of ``kind`` with weights drawn under ``seed``. The same ``kind`` and
    ``seed`` give the same weights, so a second, never-bridged copy is an independent reference."""
    tokenizer = byte_tokenizer()
    config = tiny_config(kind, vocab_size=len(tokenizer))
    cls = getattr(transformers, ZOO[kind][1])
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = cls(config)
        for name, p in model.named_parameters():
            if "norm" in name:  # (GPT-2's are named ln_*: they stay as initialised, as before the zoo)
                p.data.add_(0.1 * torch.randn_like(p))
    return model.eval(), tokenizer
