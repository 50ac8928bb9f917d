"""The registry of analyses, and the two ways to run one.

An analysis is one module under ``interp/analyses/<technique>/`` that defines a
frozen ``Config`` and registers ``run(model, config) -> Result`` with
``@register(name, Config, mutates_weights=...)``. Modules are discovered from the package
(``discover``),
so adding an analysis means adding its module; ``interp.viz`` may register its
figures by the same name, and the CLI builds its options from the Config's fields.

- ``run(name, model, **options)`` runs and stores a Result;
- ``cached_run`` first looks for a stored Result with the same identity (config
  fields, analysis ``VERSION``) and weights hash, for analyses that are pure
  functions of the weights and their config (decoding, the atlas);
- ``estimate(name, model, ...)``: the preflight of an analysis that registered an
  ``@estimator`` (``interp.scale.preflight``): passes, memory and time, without running it.
  ``run`` checks it first.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from tqdm.auto import tqdm

from interp.errors import InterpError, non_finite
from interp.paths import runs_root
from interp.result import CONFIGS, Config, Result, note_used
from interp.scale.preflight import Estimate, check, duration
from interp.storage import ensure_writable, find_runs, load_result, save_result, verify_run


@dataclass(frozen=True)
class Analysis:
    name: str
    config: type[Config]
    run: Callable[..., Result]
    doc: str = ""
    module: str = ""
    mutates_weights: bool = False  # it changes weights while it runs: the facade gives it a private model


REGISTRY: dict[str, Analysis] = {}
ESTIMATORS: dict[str, Callable[..., Estimate]] = {}


def register(name: str, config: type[Config], mutates_weights: bool = False):
    """Register ``run(model, config) -> Result`` as analysis ``name`` with its Config class.
    ``mutates_weights``: the analysis changes the model's weights while it runs (masks, training, edits),
    so the facade runs it on a private copy, never on the shared model. A name registers once."""
    def wrap(fn: Callable[..., Result]):
        if name in REGISTRY:
            raise InterpError(f"analysis {name!r} is registered twice ({REGISTRY[name].module} and {fn.__module__}): "
                              "give the new one another name")
        REGISTRY[name] = Analysis(name, config, fn, (fn.__doc__ or "").strip(), fn.__module__, mutates_weights)
        CONFIGS[name] = config
        return fn

    return wrap


def estimator(name: str):
    """Register ``fn(model, config, calibrate: bool) -> Estimate`` as analysis ``name``'s preflight."""
    def wrap(fn: Callable[..., Estimate]):
        ESTIMATORS[name] = fn
        return fn

    return wrap


_DISCOVERED: list[bool] = []


def discover() -> dict[str, Analysis]:
    """Import every module under ``interp.analyses`` once, so each registers itself (its analysis, its
    preflight estimator, its card sections), whichever module was imported first."""
    if not _DISCOVERED:
        import interp.analyses as package

        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            importlib.import_module(info.name)
        _DISCOVERED.append(True)
    return REGISTRY


def get_analysis(name: str) -> Analysis:
    discover()
    if name not in REGISTRY:
        raise InterpError(f"unknown analysis {name!r}: choose one of {sorted(REGISTRY)}")
    return REGISTRY[name]


def make_config(name: str, config: Config | None = None, **options) -> Config:
    analysis = get_analysis(name)
    if config is not None and options:
        raise InterpError("give either a config or options, not both")
    return config or analysis.config.from_dict(options)


def estimate(name: str, model, config: Config | None = None, calibrate: bool = True, **options) -> Estimate:
    """The preflight of analysis ``name``: forward passes, peak memory and (with ``calibrate``)
    time from one measured unit of its work on the model's device. Runs nothing else."""
    get_analysis(name)  # discovers every module: estimators live beside their analyses
    if name not in ESTIMATORS:
        raise InterpError(f"{name} has no preflight estimate; these do: {sorted(ESTIMATORS)}")
    return ESTIMATORS[name](model, make_config(name, config, **options), calibrate)


def _preflight(name: str, model, config: Config) -> Estimate | None:
    """Refuse a job that does not fit; time and print the estimate of a long one."""
    if name not in ESTIMATORS:
        return None
    est = ESTIMATORS[name](model, config, False)
    check(est)
    if est.units < est.calibrate_from:
        return None
    est = ESTIMATORS[name](model, config, True)
    for line in est.lines():
        tqdm.write(line, file=sys.stderr)
    check(est)  # a measured CUDA peak can exceed the shapes' estimate
    return est


TOOK_FROM_S = 5.0  # runs at least this long print a "took" line (and the preflight estimate, where there was one)


def run(name: str, model, config: Config | None = None, save: bool = True, **options) -> Result:
    """Run analysis ``name`` on ``model`` with a config (or options for its fields)."""
    analysis = get_analysis(name)
    config = make_config(name, config, **options)
    note_used(name, config.VERSION)
    if save:
        ensure_writable(runs_root() / name)  # before the work, not after it
    est = _preflight(name, model, config)
    started = time.perf_counter()
    result = analysis.run(model, config)
    took = time.perf_counter() - started
    if est is not None or took >= TOOK_FROM_S:  # a job worth waiting for says how long it took
        tqdm.write(f"{name} took {duration(took)}" + (f" (preflight estimate {duration(est.seconds)})"
                                                       if est is not None else ""), file=sys.stderr)
    bad = non_finite_outputs(result)
    if bad:
        raise InterpError(f"{name} produced non-finite results ({', '.join(bad[:5])}): nothing was stored. The "
                          "inputs push the model out of range (a huge clamp value or noise?) or its weights hold "
                          "NaN; check them with `interp info`")
    if save:
        save_result(result)
    return result


def non_finite_outputs(result: Result) -> list[str]:
    """Where a Result's outputs are not finite: NaN or inf in its metrics, an infinity in its tensors or tables
    (those may mark "not applicable" with NaN, e.g. the atlas's context padding; never with an infinity). The
    one output check every analysis passes before its Result is stored or announced."""
    import numpy as np
    import torch

    bad = non_finite(result.metrics)
    bad += [f"tensors.{k}" for k, v in result.tensors.items() if v.is_floating_point() and bool(torch.isinf(v).any())]
    for name, df in dict.items(result.tables):
        if hasattr(df, "select_dtypes"):  # column by column: only float columns can hold an infinity
            columns = df.select_dtypes("floating")
            if any(bool(np.isinf(columns[c].to_numpy(dtype=float, na_value=np.nan)).any()) for c in columns):
                bad.append(f"tables.{name}")
    return bad


def cached_run(name: str, model, config: Config | None = None, **options) -> Result:
    """Like ``run``, but reuse a stored Result with the same identity (config and the
    analysis's ``VERSION``) and weights hash."""
    config = make_config(name, config, **options)
    for hit in find_runs(name, config, model.weights_hash):
        problems = verify_run(hit)
        if not problems:
            return load_result(hit)
        warnings.warn(f"stored run {hit} is damaged ({'; '.join(problems)}); not reusing it", stacklevel=2)
    return run(name, model, config)
