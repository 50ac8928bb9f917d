"""The one cache helper: a keyed, versioned entry, written atomically, read or rebuilt.

Every cache in interp goes through ``Entry``: stored Results, the dequantized model,
neuron ranges, sampled corpora, atlas and bigram checkpoints.

- **key**: an entry lives at ``root/kind/<name>-<digest>``, where the digest hashes the
  key (a JSON-able dict) together with ``version``; bump the version of the code that
  writes it and old entries simply stop matching;
- **atomic write**: ``entry.write()`` yields an empty temporary sibling directory; on
  success it replaces the entry in one ``rename`` (a crash or Ctrl-C leaves the old entry,
  or none, never half of one);
- **read or rebuild**: ``entry.read(fn)`` returns ``fn(path)``, or ``None`` when the entry
  is missing; an entry that fails to read is deleted (with a warning) so it is rebuilt.

``save_tensors``/``load_tensors`` flatten nested state (an optimizer's ``state_dict()``)
into one safetensors file plus its JSON skeleton.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

T = TypeVar("T")


def digest(key: Any, version: int = 1, n: int = 12) -> str:
    text = json.dumps({"key": key, "version": version}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it becomes ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".old-{target.name}-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it: an interrupted write leaves the old file
    (or none), never half of the new one."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


_LAST_CHECKPOINT: list[Path] = []


def last_checkpoint() -> Path | None:
    """The checkpoint written last in this process, if it is still on disk (what an interrupt leaves)."""
    return _LAST_CHECKPOINT[-1] if _LAST_CHECKPOINT and _LAST_CHECKPOINT[-1].exists() else None


class Entry:
    """One cache entry (see the module docstring). ``checkpoint=True`` marks a resumable job's state:
    the CLI names the last one written when a run is interrupted."""

    def __init__(self, root: Path, kind: str, name: str, key: Any = None, version: int = 1,
                 checkpoint: bool = False):
        suffix = f"-{digest(key, version)}" if key is not None else ""
        self.path = Path(root) / kind / f"{name}{suffix}"
        self.checkpoint = checkpoint

    def exists(self) -> bool:
        return self.path.is_dir()

    def read(self, fn: Callable[[Path], T]) -> T | None:
        if not self.exists():
            return None
        try:
            return fn(self.path)
        except Exception as exc:  # a corrupt or partial entry: drop it, the caller rebuilds
            warnings.warn(f"cache {self.path} is unreadable ({type(exc).__name__}: {exc}); rebuilding it",
                          stacklevel=2)
            self.clear()
            return None

    @contextmanager
    def write(self) -> Iterator[Path]:
        from interp.errors import InterpError

        try:  # a cache folder that cannot be written is one line, said before the work
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.rmdir(tempfile.mkdtemp(prefix=".write-test-", dir=self.path.parent))
        except OSError as exc:
            raise InterpError(f"cannot write interp's cache at {self.path.parent} ({exc.strerror or exc}): point "
                              "INTERP_HOME at a writable folder") from None
        with atomic_dir(self.path) as tmp:
            yield tmp
        if self.checkpoint:
            _LAST_CHECKPOINT.append(self.path)

    def clear(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def save_tensors(path: Path, state: Any) -> None:
    """Nested dicts/lists of tensors and JSON values (``optimizer.state_dict()``) as
    ``path`` (safetensors) plus ``path.json`` (the skeleton)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(value, key: str):
        if isinstance(value, torch.Tensor):
            tensors[key] = value.detach().cpu().contiguous()
            return {"__tensor__": key}
        if isinstance(value, dict):
            return {"__dict__": [[walk(k, f"{key}.k{i}"), walk(v, f"{key}.{i}")] for i, (k, v) in
                                 enumerate(value.items())]}
        if isinstance(value, (list, tuple)):
            return {"__list__": [walk(v, f"{key}.{i}") for i, v in enumerate(value)]}
        return value

    skeleton = walk(state, "s")
    save_file(tensors, path)
    Path(f"{path}.json").write_text(json.dumps(skeleton))


def load_tensors(path: Path) -> Any:
    tensors = load_file(path)

    def build(node):
        if isinstance(node, dict) and "__tensor__" in node:
            return tensors[node["__tensor__"]]
        if isinstance(node, dict) and "__dict__" in node:
            return {build(k): build(v) for k, v in node["__dict__"]}
        if isinstance(node, dict) and "__list__" in node:
            return [build(v) for v in node["__list__"]]
        return node

    return build(json.loads(Path(f"{path}.json").read_text()))


def file_fingerprint(path: Path, blocks: int = 64, block: int = 1 << 16) -> str:
    """A cheap fingerprint of a large file: its size and ``blocks`` evenly spaced ``block``-byte reads
    (4 MiB of a 540 MB cache, a few milliseconds). It catches truncation and damage where a sampled
    block lands; a full hash of every byte would add seconds to every model load."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.blake2b(digest_size=12)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        for i in range(blocks):
            f.seek(max(0, (size - block) * i // max(1, blocks - 1)))
            h.update(f.read(block))
    return h.hexdigest()


def file_hash(path: Path) -> str:
    """The sha256 of every byte of ``path`` (for the files of a stored Result)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:  # chunked: hashlib.file_digest needs Python 3.11, the project declares 3.10
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ensure_writable(directory: Path) -> Path:
    """``directory`` (created if missing) if interp can write there; else a one-line ``InterpError``
    said before any work starts."""
    from interp.errors import InterpError

    directory = Path(directory).absolute()
    existing = next(p for p in [directory, *directory.parents] if p.exists())  # creates nothing: a bad input
    if not existing.is_dir():                                                   # must leave no empty folder
        raise InterpError(f"cannot store Results under {directory}: {existing} is a file, not a folder; "
                          "set INTERP_RUNS to a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise InterpError(f"cannot write Results to {directory} ({exc.strerror or exc}): make it writable or "
                          "set INTERP_RUNS to a writable folder") from None
    return directory
