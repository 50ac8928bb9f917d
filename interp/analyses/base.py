"""The one result type every analysis returns, its frozen config base, and the registry.

``Result`` holds the config (a plain dict, enough to re-run), provenance (model spec,
weights hash, seed, package versions, UTC time), named pandas tables, named tensors,
headline metrics and free-text notes (where a paper's finding did or did not
reproduce). The dashboard, notebooks and CLI read only this type.

An analysis registers itself with ``@register(name, Config, figures=...)`` on its
``run(model, config) -> Result`` function; ``run(name, model, **options)`` dispatches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

import pandas as pd
import torch

from interp.errors import InterpError


@dataclass(frozen=True)
class Config:
    """Base of every analysis config: frozen, with ``to_dict``/``from_dict``."""

    seed: int = 0
    # fields that change how a run executes but not its Result (e.g. Ray workers)
    NOT_IDENTITY: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> "Config":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InterpError(f"unknown option(s) for {cls.__name__}: {sorted(unknown)}; "
                              f"valid: {sorted(names)}")
        hints = get_type_hints(cls)
        values = {k: tuple(v) if isinstance(v, list) and "tuple" in str(hints.get(k)) else v
                  for k, v in data.items()}
        return cls(**values)

    def identity(self) -> dict:
        """The fields that define the Result (``NOT_IDENTITY`` ones left out)."""
        return {k: v for k, v in self.to_dict().items() if k not in self.NOT_IDENTITY}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def provenance(model, seed: int | None = None) -> dict:
    return {
        "model": model.spec,
        "model_name": model.name,
        "model_source": model.source,
        "weights_hash": model.weights_hash,
        "device": str(model.device),
        "dtype": str(model.dtype).removeprefix("torch."),
        "seed": seed,
        "interp": _version("interp"),
        "torch": torch.__version__,
        "transformer_lens": _version("transformer-lens"),
        "transformers": _version("transformers"),
        "python": platform.python_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


@dataclass
class Result:
    analysis: str
    config: dict
    provenance: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    run_id: str = ""
    path: Path | None = None

    def __post_init__(self):
        if not self.run_id:
            stamp = self.provenance.get("created", "")[:19].replace("-", "").replace(":", "").replace("T", "-")
            digest = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:6]
            self.run_id = f"{stamp}-{self.provenance.get('model', 'model')}-{digest}"

    def table(self, name: str) -> pd.DataFrame:
        if name not in self.tables:
            raise InterpError(f"{self.analysis} result has no table {name!r}; it has {sorted(self.tables)}")
        return self.tables[name]

    def top(self, table: str, by: str, k: int = 10, ascending: bool = False) -> pd.DataFrame:
        """The ``k`` rows of ``table`` with the largest (or smallest) ``by``."""
        df = self.table(table)
        return df.sort_values(by, ascending=ascending).head(k).reset_index(drop=True)

    def save(self, directory: str | Path | None = None) -> Path:
        from interp.storage import save_result

        return save_result(self, directory)

    def summary(self) -> dict:
        return {"analysis": self.analysis, "run_id": self.run_id, "path": str(self.path or ""),
                "model": self.provenance.get("model"), "metrics": self.metrics, "notes": self.notes}


@dataclass(frozen=True)
class Analysis:
    name: str
    config: type[Config]
    run: Callable[..., Result]
    figures: Callable[[Result], dict] | None = None
    doc: str = ""


REGISTRY: dict[str, Analysis] = {}


def register(name: str, config: type[Config], figures: Callable | None = None):
    def wrap(fn: Callable[..., Result]):
        REGISTRY[name] = Analysis(name, config, fn, figures, (fn.__doc__ or "").strip())
        return fn

    return wrap


def get_analysis(name: str) -> Analysis:
    import interp.analyses  # noqa: F401  (registers the built-in analyses)

    if name not in REGISTRY:
        raise InterpError(f"unknown analysis {name!r}: choose one of {sorted(REGISTRY)}")
    return REGISTRY[name]


def run(name: str, model, config: Config | None = None, save: bool = True, **options) -> Result:
    """Run analysis ``name`` on ``model`` with a config (or options for its fields)."""
    analysis = get_analysis(name)
    config = config or analysis.config.from_dict(options)
    result = analysis.run(model, config)
    if save:
        result.save()
    return result


def cached_run(name: str, model, config: Config | None = None, **options) -> Result:
    """Like ``run``, but reuse a stored Result with the same config and weights hash
    (for analyses that are pure functions of the weights, such as decoding)."""
    from interp.storage import find_runs, load_result

    analysis = get_analysis(name)
    config = config or analysis.config.from_dict(options)
    hits = find_runs(name, config.to_dict(), model.weights_hash, ignore=analysis.config.NOT_IDENTITY)
    if hits:
        return load_result(hits[0])
    return run(name, model, config)
