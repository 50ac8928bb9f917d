"""``Model``: a TransformerBridge plus tokenizer, architecture facts and weight views.

The bridge (TransformerLens 4 ``TransformerBridge.boot_transformers``) runs the HF
model unchanged and exposes hook points; interp never folds or centres weights, so
logits equal the HF model's. Tokenization follows the model's own tokenizer
(SmolLM2 adds no BOS); pass ``prepend_bos=True`` to add one.

Batches of prompts are right-padded. With causal attention the real tokens never
see the padding after them, so no attention mask is needed and positions stay
correct; ``TokenBatch.lengths`` says where each prompt ends.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import torch
from jaxtyping import Int
from torch import Tensor

from interp.errors import InterpError, check_range
from interp.models.weights import NeuronWeights
from interp.names import NeuronId
from interp.types import Logits, Tokens


@dataclass
class TokenBatch:
    """Right-padded tokens with each row's true length."""

    tokens: Tokens
    lengths: Int[Tensor, " batch"]

    @property
    def last(self) -> Int[Tensor, " batch"]:
        """Index of each row's last real token."""
        return self.lengths - 1


@dataclass(frozen=True)
class BlockParam:
    """One HF-named block parameter: its layer, part (``attn``/``mlp``), matrix (``q_proj``, ``fc1``, ...)."""

    name: str
    layer: int
    part: str
    matrix: str
    is_matrix: bool  # a weight matrix (maskable), not a bias


@dataclass
class Model:
    spec: str
    name: str
    bridge: object
    hf_model: torch.nn.Module
    tokenizer: object
    source: str
    known_hash: str | None = None
    hf_params: dict = field(default_factory=dict, repr=False)
    weights: NeuronWeights = field(init=False)
    # Hooks belong to the model instance: a model shared between threads (the dashboard's
    # sessions) must run one hooked region or forward at a time, or one caller's clamp
    # or recording fires inside another's forward. Forwards, generation and hooked
    # regions all hold this (reentrant) lock.
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @classmethod
    def wrap(cls, spec, name, hf_model, tokenizer, source="", known_hash=None) -> "Model":
        from transformer_lens.model_bridge import TransformerBridge

        logging.getLogger("transformer_lens").setLevel(logging.ERROR)
        # The bridge reloads any tokenizer whose init_kwargs lack add_bos_token=True
        # by its name_or_path (a hub call for SmolLM2, a crash for in-code ones).
        # interp tokenizes itself with an explicit BOS policy, so tell it not to.
        tokenizer._interp_init_kwargs = dict(tokenizer.init_kwargs)
        tokenizer.init_kwargs = {**tokenizer.init_kwargs, "name_or_path": name, "add_bos_token": True}
        # Booting rewires the HF module tree in place (its state_dict then has bridge
        # names); keep the live HF-named tensors for hashing and saving.
        hf_params = hf_model.state_dict(keep_vars=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                bridge = TransformerBridge.boot_transformers(name, hf_model=hf_model, tokenizer=tokenizer)
            except Exception as exc:  # noqa: BLE001 - named in the user's terms
                arch = ", ".join(getattr(hf_model.config, "architectures", None) or [type(hf_model).__name__])
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(" Available architectures")[0]
                raise InterpError(f"TransformerLens cannot bridge {spec!r} (architecture {arch}): {first}; "
                                  "see transformer_lens.model_bridge.supported_architectures for the ones "
                                  "it can") from None
        bridge.eval()
        return cls(spec, name, bridge, hf_model, tokenizer, source, known_hash, hf_params)

    def __post_init__(self):
        without = []
        for layer, block in enumerate(self.bridge.blocks):
            try:
                _ = block.mlp
            except AttributeError:
                without.append(layer)
        if without:
            kind = type(self.bridge.blocks[without[0]]).__name__
            raise InterpError(f"{self.spec!r} has no MLP in layer(s) {without[:8]} ({kind}): interp traces MLP "
                              "neurons, so every layer needs one; state-space and other MLP-free blocks are not "
                              "supported")
        self.weights = NeuronWeights(self.bridge, self.hf_model.config, self.is_glu)

    # --- architecture facts ----------------------------------------------------------
    @property
    def cfg(self):
        return self.bridge.cfg

    @property
    def n_layers(self) -> int:
        return int(self.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.cfg.d_model)

    @cached_property
    def d_mlp(self) -> int:
        """Neurons per layer, read from ``W_out`` (the bridge's config says 4 * d_model for OPT, whose
        ``ffn_dim`` can differ)."""
        return int(self.weights.W_out[0].shape[1])

    @property
    def d_vocab(self) -> int:
        return int(self.cfg.d_vocab)

    @property
    def n_heads(self) -> int:
        return int(self.cfg.n_heads)

    @property
    def n_ctx(self) -> int:
        return int(self.cfg.n_ctx)

    @property
    def is_glu(self) -> bool:
        return bool(getattr(self.cfg, "gated_mlp", False))

    @property
    def device(self) -> torch.device:
        return next(self.hf_model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf_model.parameters()).dtype

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.d_mlp

    @cached_property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.hf_model.parameters())

    def info(self) -> dict:
        """Architecture facts as plain JSON types."""
        return {
            "spec": self.spec,
            "name": self.name,
            "source": self.source,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "d_mlp": self.d_mlp,
            "d_vocab": self.d_vocab,
            "n_heads": self.n_heads,
            "n_ctx": self.n_ctx,
            "is_glu": self.is_glu,
            "act_fn": self.weights.act_name,
            "final_norm": self.weights.final_norm.kind,
            "norm_offset": bool(getattr(self.bridge.ln_final, "uses_weight_offset", False)),  # Gemma's 1 + w
            "post_norms": self.weights.mlp_post_norm[0] is not None,  # MLP output normed before it is added
            "logit_softcap": self.weights.logit_softcap,
            "prepends_bos": self.prepends_bos,
            "n_neurons": self.n_neurons,
            "n_params": self.n_params,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    @cached_property
    def block_params(self) -> list["BlockParam"]:
        """Every parameter of the transformer blocks, by layer and part (``attn`` or ``mlp``), found
        through the bridge's own components rather than HF names: GPT-NeoX's ``attention.``, fused QKV
        and ``gate_up_proj``, OPT's ``fc1``/``fc2`` (no ``mlp`` module) all land where they belong.
        Norm parameters are left out."""
        names = {id(p): n for n, p in self.hf_params.items()}
        out = []
        for layer, block in enumerate(self.bridge.blocks):
            taken = set()
            for part in ("attn", "mlp"):
                hf = getattr(block._modules.get(part), "original_component", None)
                for sub, p in (hf.named_parameters() if hf is not None else []):
                    name = names.get(id(p))
                    if name is None or id(p) in taken or "norm" in sub.lower():
                        continue
                    taken.add(id(p))
                    matrix = sub.rsplit(".", 1)[0].rsplit(".", 1)[-1] if "." in sub else sub
                    out.append(BlockParam(name, layer, part, matrix, p.dim() >= 2 and sub.endswith("weight")))
        return out

    # --- checks in the user's terms ----------------------------------------------------
    def mlp_param_names(self, layer: int) -> dict[str, str]:
        """The HF parameter names of one layer's gate, up and down weights (``{"gate": .., "up": .., "down": ..}``)."""
        w = self.weights
        views = {"up": w.W_in[layer], "down": w.W_out[layer]}
        if self.is_glu:
            views["gate"] = w.W_gate[layer]
        out = {}
        for part, view in views.items():
            for name, p in self.hf_params.items():
                if p.data_ptr() == view.data_ptr() and p.numel() == view.numel():
                    out[part] = name
                    break
        return out

    def check_layer(self, layer: int) -> int:
        return check_range("layer", layer, self.n_layers, self.spec)

    def check_layers(self, layers) -> list[int]:
        """The chosen layers, each checked; empty means every layer."""
        return [self.check_layer(layer) for layer in layers] or list(range(self.n_layers))

    def check_neuron(self, neuron: NeuronId | tuple[int, int] | str) -> NeuronId:
        neuron = NeuronId.parse(neuron) if isinstance(neuron, str) else NeuronId(*neuron)
        self.check_layer(neuron.layer)
        check_range("neuron", neuron.index, self.d_mlp, f"{self.spec} (each layer)")
        return neuron

    # --- tokens ---------------------------------------------------------------------
    @cached_property
    def prepends_bos(self) -> bool:
        """Whether the model's own tokenizer adds BOS (SmolLM2's does not)."""
        ids = self.tokenizer("a")["input_ids"]
        return bool(ids) and ids[0] == self.tokenizer.bos_token_id

    def encode(self, text: str, prepend_bos: bool | None = None) -> list[int]:
        if not isinstance(text, str) or not text.strip():
            raise InterpError("the prompt is empty: give some text to run the model on")
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if (self.prepends_bos if prepend_bos is None else prepend_bos):
            ids = [self.tokenizer.bos_token_id, *ids]
        if len(ids) > self.n_ctx:
            raise InterpError(
                f"the prompt is {len(ids)} tokens long, longer than {self.spec}'s context of "
                f"{self.n_ctx}; shorten it (or split it into windows)"
            )
        return ids

    def to_tokens(self, text: str | list[str], prepend_bos: bool | None = None) -> Tokens:
        """Tokens of one prompt (``[1, pos]``) or several (right-padded ``[batch, pos]``)."""
        if isinstance(text, str):
            return torch.tensor([self.encode(text, prepend_bos)], device=self.device)
        return self.batch(text, prepend_bos).tokens

    def batch(self, texts: list[str], prepend_bos: bool | None = None) -> TokenBatch:
        if not texts:
            raise InterpError("no prompts given")
        rows = [self.encode(t, prepend_bos) for t in texts]
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        tokens = torch.full((len(rows), width), int(pad or 0), dtype=torch.long, device=self.device)
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = torch.tensor(row, device=self.device)
        lengths = torch.tensor([len(r) for r in rows], device=self.device)
        return TokenBatch(tokens, lengths)

    def to_str_tokens(self, text: str | Tokens | list[int], prepend_bos: bool | None = None) -> list[str]:
        ids = (self.encode(text, prepend_bos) if isinstance(text, str)
               else torch.as_tensor(text, device="cpu").flatten().tolist())
        return [self.tokenizer.decode([i]) for i in ids]

    def token_id(self, token: str, policy: str = "single") -> int:
        """The id of ``token`` (text, usually with its leading space, e.g. ``" Paris"``).

        ``policy="single"`` refuses text that is several tokens and shows how it
        tokenizes; ``policy="first"`` takes the first token (documented wherever used).
        """
        if not token:
            raise InterpError("the token is empty")
        ids = self.tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 or (policy == "first" and ids):
            return int(ids[0])
        pieces = [self.tokenizer.decode([i]) for i in ids]
        raise InterpError(
            f"{token!r} is not a single token for {self.spec}: it tokenizes as {pieces}. "
            "Use one of those pieces (mind the leading space), or the first-token policy"
        )

    def continuation(self, prompt: str, answer: str) -> list[int]:
        """The answer's tokens as the model reads them after ``prompt``: the tokens of
        ``prompt + answer`` past the prompt's own. Tokenizing the answer alone is wrong for
        SentencePiece tokenizers that add a prefix space (Llama 2, Mistral, Gemma): its "first
        token" can be a bare space for every answer. Where the answer merges with the prompt's
        last token, the tokens past the longest common prefix are taken."""
        if not answer:
            raise InterpError(f"the answer after {prompt!r} is empty")
        p, full = self.encode(prompt), self.encode(prompt + answer)
        common = next((i for i, (a, b) in enumerate(zip(p, full)) if a != b), min(len(p), len(full)))
        ids = full[common:]
        if not ids:
            raise InterpError(f"the answer {answer!r} adds no token after {prompt!r}")
        return ids

    def answer_token(self, prompt: str, answer: str, policy: str = "single") -> int:
        """The first token of ``answer`` as a continuation of ``prompt``; ``policy="single"`` refuses an
        answer that is several tokens there (``"first"`` scores its first token)."""
        ids = self.continuation(prompt, answer)
        if len(ids) > 1 and policy != "first":
            pieces = [self.tokenizer.decode([i]) for i in ids]
            raise InterpError(f"{answer!r} is not a single token for {self.spec} after {prompt!r}: it continues as "
                              f"{pieces}. Use one of those pieces (mind the leading space), or the first-token policy")
        return int(ids[0])

    @cached_property
    def vocab(self) -> list[str]:
        """Every token id decoded to text (``vocab[t]``), computed once."""
        return [self.tokenizer.decode([i]) for i in range(self.d_vocab)]

    def token_str(self, token_id: int) -> str:
        return self.tokenizer.decode([int(token_id)])

    # --- running ----------------------------------------------------------------------
    def __call__(self, tokens: Tokens) -> Logits:
        with self.lock:
            return self.bridge(tokens.to(self.device))

    def run_for_hooks(self, tokens: Tokens) -> None:
        """A forward pass run for what its hooks read; a hook may end it early by raising the bridge's
        ``StopAtLayerException`` (the streamed atlas does, after its last layer)."""
        with self.lock:
            self.bridge(tokens.to(self.device))

    def hook_point(self, name: str):
        try:
            return self.hook_dict[name]
        except KeyError:
            raise InterpError(f"{self.spec} has no hook point {name!r}") from None

    @cached_property
    def hook_dict(self) -> dict:
        return dict(self.bridge.hook_dict)

    @cached_property
    def weights_hash(self) -> str:
        """A short hash of every parameter's bytes (provenance for Results). The
        embedded model's is computed once, when its cache is built."""
        return self.known_hash or hash_weights(self.hf_params)

    def state_dict(self) -> dict[str, Tensor]:
        """The HF-named weights (tied copies dropped), detached, on the CPU."""
        seen, out = set(), {}
        for name, p in self.hf_params.items():
            if id(p) in seen:
                continue
            seen.add(id(p))
            out[name] = p.detach().cpu().contiguous()
        return out

    def save_pretrained(self, directory) -> None:
        """Write config, safetensors weights and tokenizer: the directory is a model spec."""
        from pathlib import Path

        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.state_dict(), directory / "model.safetensors", metadata={"format": "pt"})
        self.hf_model.config.to_json_file(directory / "config.json")
        marked = self.tokenizer.init_kwargs
        self.tokenizer.init_kwargs = getattr(self.tokenizer, "_interp_init_kwargs", marked)
        try:
            self.tokenizer.save_pretrained(directory)
        finally:
            self.tokenizer.init_kwargs = marked


def hash_weights(params: dict[str, Tensor]) -> str:
    """A short blake2b of every named tensor's bytes."""
    h = hashlib.blake2b(digest_size=8)
    for name, p in sorted(params.items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
