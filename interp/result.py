"""The one result type every analysis returns, its frozen config base, and provenance (a leaf).

``Result`` holds the typed config (enough to re-run), provenance (model spec, weights
hash, seed, analysis and package versions, UTC time), named pandas tables, named
tensors, headline metrics and free-text notes (where a paper's finding did or did not
reproduce). The dashboard, notebooks and CLI read only this type; ``interp.storage``
saves and loads it.

``Config`` subclasses are frozen dataclasses. Each declares ``VERSION``: bump it when
the analysis's code changes what it computes, and every cached Result and checkpoint
of the old version stops matching (``Config.identity`` includes it). Each field may
carry ``help`` (``option(default, "help")``), from which the CLI builds its options.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import platform
import subprocess
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch

from interp.errors import InterpError

# analysis name -> its Config class (filled by ``interp.analyses.base.register``)
CONFIGS: dict[str, type[Config]] = {}


def option(default: Any, help: str = "", flags: tuple[str, ...] = (), split: bool = True,  # noqa: A002
           min: int | float | None = None, max: int | float | None = None, above: int | float | None = None,  # noqa: A002
           choices: tuple | None = None, nonempty: bool = False) -> Any:
    """A config field: its default, its CLI help and extra flags (e.g. ``("-k",)``), whether the CLI
    splits a tuple of strings at commas (``split=False`` for free text: prompts), and what values it
    accepts: ``min``/``max`` (inclusive), ``above`` (exclusive), ``choices`` (for a tuple: each
    element), ``nonempty`` (a tuple needs at least one element). Numbers must be finite. ``Config``
    checks them all when it is built, before any work."""
    return field(default=default, metadata={"help": help, "flags": flags, "split": split, "min": min, "max": max,
                                            "above": above, "choices": choices, "nonempty": nonempty})


def _flag(name: str) -> str:
    return f"{name} (--{name.replace('_', '-')})"


def check_field(f, value) -> None:
    """Raise ``InterpError`` unless ``value`` is allowed for field ``f`` (see ``option``)."""
    meta = f.metadata
    if meta.get("nonempty") and not value:
        raise InterpError(f"{_flag(f.name)} needs at least one value"
                          + (f" of {', '.join(map(str, meta['choices']))}" if meta.get("choices") else ""))
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if isinstance(v, bool):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise InterpError(f"{_flag(f.name)} must be a finite number, got {v}")
        if isinstance(v, (int, float)):
            if meta.get("min") is not None and v < meta["min"]:
                raise InterpError(f"{_flag(f.name)} must be at least {meta['min']:g}, got {v:g}")
            if meta.get("max") is not None and v > meta["max"]:
                raise InterpError(f"{_flag(f.name)} must be at most {meta['max']:g}, got {v:g}")
            if meta.get("above") is not None and not v > meta["above"]:
                raise InterpError(f"{_flag(f.name)} must be more than {meta['above']:g}, got {v:g}")
        if meta.get("choices") and v not in meta["choices"]:
            raise InterpError(f"{_flag(f.name)}: {v!r} is not one of {', '.join(map(str, meta['choices']))}")


def _typed(name: str, hint, value):
    """``value`` as field ``name``'s declared type (a list for a tuple; an int for a float), or an InterpError
    naming the field: a config read from a file or built in code is checked like one typed on the CLI."""
    text = str(hint)
    if hint is None:
        return value
    if "tuple" in text:
        if not isinstance(value, (list, tuple)):
            raise InterpError(f"{_flag(name)} must be a list, got {value!r}")
        inner = int if "int" in text.split("[", 1)[-1] else str
        if any(isinstance(v, bool) or not isinstance(v, inner) for v in value):
            raise InterpError(f"{_flag(name)} must be a list of {inner.__name__}s, got {value!r}")
        return tuple(value)
    kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}
    for kind, accepted in kinds.items():
        if hint is kind or text == kind.__name__:
            if not isinstance(value, accepted) or (kind is not bool and isinstance(value, bool)):
                raise InterpError(f"{_flag(name)} must be a {kind.__name__}, got {value!r}")
            return float(value) if kind is float else value
    return value


@dataclass(frozen=True)
class Config:
    """Base of every analysis config: frozen, with ``to_dict``/``from_dict``."""

    seed: int = option(0, "random seed")
    # bump when the analysis's results change: cached Results and checkpoints of older versions stop matching
    VERSION: ClassVar[int] = 1
    # fields that change how a run executes but not its Result (e.g. Ray workers)
    NOT_IDENTITY: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        for f in dataclasses.fields(self):
            check_field(f, getattr(self, f.name))

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> Config:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InterpError(f"unknown option(s) for {cls.__name__}: {sorted(unknown)}; "
                              f"valid: {sorted(names)}")
        hints = typing.get_type_hints(cls)
        values = {k: _typed(k, hints.get(k), v) for k, v in data.items()}
        return cls(**values)

    def identity(self) -> dict:
        """The fields that define the Result (``NOT_IDENTITY`` ones left out), with the analysis version."""
        return {**{k: v for k, v in self.to_dict().items() if k not in self.NOT_IDENTITY}, "version": self.VERSION}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class UntypedConfig:
    """The config of a stored Result whose analysis is not registered in this process."""

    values: dict
    VERSION: ClassVar[int] = 0
    NOT_IDENTITY: ClassVar[tuple[str, ...]] = ()

    def __getattr__(self, name: str):
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict:
        return dict(self.values)

    def identity(self) -> dict:
        return dict(self.values)


def config_from(analysis: str, data: dict) -> Config | UntypedConfig:
    """Rebuild the typed config of a stored Result (untyped if its analysis is unknown here)."""
    cls = CONFIGS.get(analysis)
    try:
        return cls.from_dict(data) if cls else UntypedConfig(dict(data))
    except (InterpError, TypeError):  # written by another version of the analysis: keep it readable
        return UntypedConfig(dict(data))


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


@functools.cache
def git_commit() -> str | None:
    """The commit of the interp checkout that computed a Result (``+dirty`` with uncommitted changes to
    tracked files), or None outside a git checkout (an installed wheel)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


USED: dict[str, set[int]] = {}  # analysis -> the VERSIONs of the Results this process computed or read


def note_used(analysis: str, version: int | None) -> None:
    """Record that this process computed or read a Result of ``analysis`` at ``version`` (``USED``): a notebook
    run stamps it into the notebook, so a test can tell outputs made by an older analysis VERSION."""
    USED.setdefault(str(analysis), set()).add(int(version or 1))


def provenance(model, config: Config | None = None) -> dict:
    """Where a Result came from: the model and its weights, the seed, every version that matters."""
    return {
        "model": model.spec,
        "model_name": model.name,
        "model_source": model.source,
        "weights_hash": model.weights_hash,
        "device": str(model.device),
        "dtype": str(model.dtype).removeprefix("torch."),
        "seed": config.seed if config is not None else None,
        "analysis_version": config.VERSION if config is not None else None,
        "interp": _version("interp"),
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "transformer_lens": _version("transformer-lens"),
        "transformers": _version("transformers"),
        "python": platform.python_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def safe_id(text: str) -> str:
    """A filesystem-safe, readable slug (a hub id or a path becomes one path component)."""
    import re

    slug = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))).strip("._")
    return slug[-48:] or "model"


@dataclass
class Result:
    analysis: str
    config: Config | UntypedConfig | dict
    provenance: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    run_id: str = ""
    path: Path | None = None

    def __post_init__(self):
        if isinstance(self.config, dict):
            self.config = config_from(self.analysis, self.config)
        if not self.run_id:
            stamp = self.provenance.get("created", "")[:19].replace("-", "").replace(":", "").replace("T", "-")
            ident = self.config.identity() if hasattr(self.config, "identity") else self.config.to_dict()
            model = str(self.provenance.get("model", "model"))
            # the slug is readable (and may be cut); the digest covers the whole spec as well as the config
            digest = hashlib.sha256(json.dumps([ident, model], sort_keys=True).encode()).hexdigest()[:6]
            self.run_id = f"{stamp}-{safe_id(model)}-{digest}"

    def table(self, name: str) -> pd.DataFrame:
        if name not in self.tables:
            raise InterpError(f"{self.analysis} result has no table {name!r}; it has {sorted(self.tables)}")
        return self.tables[name]

    def top(self, table: str, by: str, k: int = 10, ascending: bool = False) -> pd.DataFrame:
        """The ``k`` rows of ``table`` with the largest (or smallest) ``by``."""
        df = self.table(table)
        return df.sort_values(by, ascending=ascending).head(k).reset_index(drop=True)

    def summary(self) -> dict:
        return {"analysis": self.analysis, "run_id": self.run_id, "path": str(self.path or ""),
                "model": self.provenance.get("model"), "metrics": self.metrics, "notes": self.notes}
