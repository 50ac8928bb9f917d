"""The one intervention primitive: batched writes into activations, one hook per site.

A ``Write`` addresses part of the activation at one hook point by

- ``rows``: batch rows; ``positions``: token positions; ``units``: the axis after the
  position (neurons at ``mlp_post``, heads at ``attn_z``, residual dimensions elsewhere).
  Each is ``None`` (all of that axis), an int, or a list / 1-D tensor of indices (negative
  positions count from the end);
- how the given indices combine: ``outer=False`` (default) pairs them element-wise, as
  torch's advanced indexing does (row ``rows[i]`` at position ``positions[i]``: one
  patch per row); ``outer=True`` takes every combination (these neurons at these positions);
- what is written there, one of:
  - ``value``: a number, or a tensor that broadcasts to the addressed part (clamp, zero);
  - ``source``: another run's activations at this site, read at the same addresses, or
    at ``source_rows`` instead of ``rows`` (patching, restoring a clean state);
  - ``scale``: the activation multiplied by a factor (ablation by scaling);
  - ``add``: a tensor added to the addressed part (noise);
- ``where`` (optional): a boolean tensor that broadcasts to the addressed part; the write applies
  only where it is True (mean-ablate every neuron outside a circuit, row by row).

``intervene(model, writes)`` compiles the writes into one hook per site (each copies
the activation once and applies its writes in order) and removes them on exit. The
named interventions are specialisations: ``clamp``, ``ablate`` (zero, mean, resample),
``scale`` and ``patch``. Every activation write in interp goes through here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.errors import InterpError
from interp.names import NeuronId
from interp.tracing.hooks import hooks

Index = int | Sequence[int] | Tensor | None


@dataclass(frozen=True)
class Write:
    site: str
    rows: Index = None
    positions: Index = None
    units: Index = None
    value: float | Tensor | None = None
    source: Tensor | None = None
    source_rows: Index = None
    scale: float | None = None
    add: Tensor | None = None
    outer: bool = False
    where: Tensor | None = None

    def __post_init__(self):
        given = [x is not None for x in (self.value, self.source, self.scale, self.add)]
        if sum(given) != 1:
            raise InterpError(f"a write at {self.site} needs exactly one of value, source, scale or add")


def _as_index(index: Index, size: int, device) -> Tensor | None:
    if index is None:
        return None
    t = torch.as_tensor(index, device=device).long().reshape(-1)
    return torch.where(t < 0, t + size, t)


def _address(act: Tensor, rows: Index, positions: Index, units: Index, outer: bool) -> tuple:
    """The index tuple of a write into ``act`` ([batch, pos, unit, ...])."""
    idx = [_as_index(i, act.shape[a], act.device) for a, i in enumerate((rows, positions, units))]
    if outer:
        full = [i if i is not None else torch.arange(act.shape[a], device=act.device) for a, i in enumerate(idx)]
        return (full[0][:, None, None], full[1][None, :, None], full[2][None, None, :])
    return tuple(slice(None) if i is None else i for i in idx)


def _new(act: Tensor, at: tuple, w: Write) -> Tensor | float:
    """What the write puts at ``act[at]``."""
    if w.value is not None:
        return w.value.to(act.device, act.dtype) if isinstance(w.value, Tensor) else w.value
    if w.scale is not None:
        return act[at] * w.scale
    if w.add is not None:
        return act[at] + w.add.to(act.device, act.dtype)
    src_rows = w.rows if w.source_rows is None else w.source_rows
    src = w.source.to(act.device, act.dtype)
    if w.source_rows is None and w.rows is None and src.shape != act.shape:
        raise InterpError(f"cannot patch {w.site}: source shape {tuple(src.shape)} differs from this "
                          f"run's {tuple(act.shape)}")
    return src[_address(src, src_rows, w.positions, w.units, w.outer)]


def _apply(act: Tensor, w: Write) -> None:
    at = _address(act, w.rows, w.positions, w.units, w.outer)
    new = _new(act, at, w)
    if w.where is None:
        act[at] = new
    else:
        old = act[at]
        act[at] = torch.where(w.where.to(act.device), torch.as_tensor(new, dtype=act.dtype, device=act.device),
                              old)


def compile_writes(writes: Iterable[Write]) -> list[tuple[str, Callable]]:
    """One hook function per site, applying that site's writes in order to one copy."""
    by_site: dict[str, list[Write]] = defaultdict(list)
    for w in writes:
        by_site[w.site].append(w)

    def make(ws: list[Write]):
        def fn(act: Tensor) -> Tensor:
            act = act.clone()
            for w in ws:
                _apply(act, w)
            return act

        return fn

    return [(site, make(ws)) for site, ws in by_site.items()]


@contextmanager
def intervene(model, writes: Iterable[Write]) -> Iterator[None]:
    """Apply ``writes`` during the body's forward passes (hooks removed on exit, always)."""
    with hooks(model, compile_writes(list(writes))):
        yield


# --- the named interventions --------------------------------------------------------------------


MAX_CLAMP = 1e6  # beyond it the next norm divides the neuron's write away (or its square overflows float32)


def _finite(value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise InterpError(f"clamp value must be a finite number, got {value}")
    if abs(value) > MAX_CLAMP:
        raise InterpError(f"clamp value {value:g} is beyond ±{MAX_CLAMP:g}: the next norm divides such a write away "
                          "(or overflows), so every value that large gives the same meaningless answer; use values "
                          "within a few times the neuron's peak activation")
    return value


def neuron_writes(model, neurons: Iterable, values, positions: Index = None) -> list[Write]:
    """Writes that set each neuron to its value (one number or one per neuron) at ``positions``."""
    neurons = [model.check_neuron(n) for n in neurons]
    if not neurons:
        raise InterpError("no neurons given")
    if isinstance(values, Tensor) and values.dim() == 0:
        values = float(values)
    values = [values] * len(neurons) if isinstance(values, (int, float)) else list(values)
    if len(values) != len(neurons):
        raise InterpError(f"got {len(values)} clamp values for {len(neurons)} neurons")
    per_layer: dict[int, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for n, v in zip(neurons, values):
        per_layer[n.layer][0].append(n.index)
        per_layer[n.layer][1].append(float(v))
    return [Write(NeuronId(layer, 0).hook, positions=positions, units=ix, value=torch.tensor(vs, device="cpu"),
                  outer=True) for layer, (ix, vs) in per_layer.items()]


@contextmanager
def clamp(model, neurons: Iterable, value: float | list[float], positions: Index = None):
    """Hold ``neurons`` at ``value`` (one number, or one per neuron) at ``positions``."""
    neurons = list(neurons)
    values = [_finite(v) for v in (value if isinstance(value, (list, tuple)) else [value] * len(neurons))]
    with intervene(model, neuron_writes(model, neurons, values, positions)):
        yield


@contextmanager
def ablate(model, neurons: Iterable, mode: str = "zero", means: Tensor | None = None, positions: Index = None,
           source: dict[str, Tensor] | None = None):
    """Zero-ablate ``neurons``, mean-ablate them with ``means[layer, index]`` (``[n_layers, d_mlp]``,
    e.g. the atlas's per-neuron means), or resample-ablate them from ``source`` (activations of
    another input at each neuron's ``mlp_post`` site, same shape as this run's)."""
    if mode not in ("zero", "mean", "resample"):
        raise InterpError(f"unknown ablation mode {mode!r}: choose 'zero', 'mean' or 'resample'")
    if mode == "mean" and means is None:
        raise InterpError("mean ablation needs means: a [n_layers, d_mlp] tensor of neuron means")
    if mode == "resample" and source is None:
        raise InterpError("resample ablation needs source activations from another input")
    neurons = [model.check_neuron(n) for n in neurons]
    if not neurons:
        raise InterpError("no neurons given")
    if mode == "resample":
        by_layer: dict[int, list[int]] = defaultdict(list)
        for n in neurons:
            by_layer[n.layer].append(n.index)
        writes = [Write(NeuronId(l, 0).hook, positions=positions, units=ix, source=_source(source, NeuronId(l, 0).hook),
                        outer=True) for l, ix in by_layer.items()]
    else:
        values = [0.0] * len(neurons) if mode == "zero" else [float(means[n.layer, n.index]) for n in neurons]
        writes = neuron_writes(model, neurons, values, positions)
    with intervene(model, writes):
        yield


def _source(source: dict[str, Tensor], site: str) -> Tensor:
    if site not in source:
        raise InterpError(f"no recorded activation for {site!r} to patch from")
    return source[site]


@contextmanager
def scale(model, sites: Iterable[str], factor: float, units: Index = None, positions: Index = None):
    """Multiply the activation at each site (optionally only ``units`` at ``positions``) by ``factor``."""
    with intervene(model, [Write(s, positions=positions, units=units, scale=float(factor), outer=units is not None
                                 and positions is not None) for s in sites]):
        yield


@contextmanager
def patch(model, sites: Iterable[str], source: dict[str, Tensor], positions: Index = None):
    """Overwrite each site with ``source[site]`` (same shape) at ``positions``."""
    writes = [Write(s, positions=positions, source=_source(source, s)) for s in sites]
    with intervene(model, writes):
        yield
