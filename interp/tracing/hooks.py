"""Hooks, only ever inside context managers that remove them in ``finally``.

``hooks`` is the one primitive: it attaches forward functions to named hook points
of the bridge and always detaches them, even when the body raises. A leaked hook is
a silent wrong answer, so nothing in interp attaches hooks any other way.

Built on it:

- ``record(model, sites)``: capture the named sites (only those) into a dict;
- ``clamp(model, neurons, value, positions=...)``: hold neurons at a value;
- ``ablate(model, neurons, mode="zero"|"mean", means=...)``: zero- or mean-ablate;
- ``patch(model, sites, source)``: overwrite sites with activations from another run.

``positions`` is ``None`` (every position), an int, or a list of ints; negative
indices count from the end.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from interp.errors import InterpError
from interp.tracing.names import NeuronId

HookFn = Callable[[Tensor], Tensor | None]
Positions = int | list[int] | None


@contextmanager
def hooks(model, fwd: Iterable[tuple[str, HookFn]]) -> Iterator[None]:
    """Attach ``fn(activation) -> activation | None`` at each named hook point.

    Holds the model's lock for the whole region, so no other thread runs the model
    while these hooks are attached."""
    attached = []
    with model.lock:
        try:
            for name, fn in fwd:
                point = model.hook_point(name)
                handle = point.add_hook(lambda act, hook, fn=fn: fn(act))
                attached.append((point, handle))
            yield
        finally:
            for point, handle in attached:
                handle.hook.remove()
                if handle in point.fwd_hooks:
                    point.fwd_hooks.remove(handle)


@contextmanager
def record(model, sites: Iterable[str], detach: bool = True) -> Iterator[dict[str, Tensor]]:
    """Capture the activations at ``sites`` (hook names) during the body's forward passes.

    The dict is filled as the model runs; a later pass overwrites an earlier one.
    With ``detach=False`` the tensors stay in the autograd graph (for gradients).
    """
    store: dict[str, Tensor] = {}

    def keep(name: str) -> HookFn:
        def fn(act: Tensor) -> Tensor | None:
            if detach:
                store[name] = act.detach()
                return None
            # Returned, so the model computes from this very tensor: some hook points
            # (hook_z) hand hooks a reshaped view, and only a returned view joins the graph.
            store[name] = act
            return act

        return fn

    with hooks(model, [(name, keep(name)) for name in dict.fromkeys(sites)]):
        yield store


def _by_layer(model, neurons: Iterable) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for n in neurons:
        nid = model.check_neuron(n)
        groups[nid.layer].append(nid.index)
    if not groups:
        raise InterpError("no neurons given")
    return groups


def _pos_index(positions: Positions):
    if positions is None:
        return slice(None)
    return [positions] if isinstance(positions, int) else list(positions)


def _check_value(value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise InterpError(f"clamp value must be a finite number, got {value}")
    return value


def _set_neurons(layer_values: dict[int, tuple[list[int], Tensor]], positions: Positions):
    """Hook functions that write ``values`` into ``act[:, positions, indices]``."""
    pos = _pos_index(positions)

    def make(indices: list[int], values: Tensor) -> HookFn:
        idx = torch.tensor(indices)

        def fn(act: Tensor) -> Tensor:
            act = act.clone()
            sub = act[:, pos]  # [batch, pos', d_mlp] (a copy when pos is a list)
            sub[..., idx.to(act.device)] = values.to(act.device, act.dtype)
            act[:, pos] = sub
            return act

        return fn

    return [(NeuronId(layer, 0).hook, make(ix, v)) for layer, (ix, v) in layer_values.items()]


@contextmanager
def clamp(model, neurons: Iterable, value: float | list[float], positions: Positions = None):
    """Hold ``neurons`` at ``value`` (one number, or one per neuron) at ``positions``."""
    neurons = [model.check_neuron(n) for n in neurons]
    values = [value] * len(neurons) if not isinstance(value, (list, tuple)) else list(value)
    if len(values) != len(neurons):
        raise InterpError(f"got {len(values)} clamp values for {len(neurons)} neurons")
    values = [_check_value(v) for v in values]
    per_layer: dict[int, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for n, v in zip(neurons, values):
        per_layer[n.layer][0].append(n.index)
        per_layer[n.layer][1].append(v)
    layer_values = {l: (ix, torch.tensor(vs)) for l, (ix, vs) in per_layer.items()}
    with hooks(model, _set_neurons(layer_values, positions)):
        yield


@contextmanager
def ablate(model, neurons: Iterable, mode: str = "zero", means: Tensor | None = None,
           positions: Positions = None):
    """Zero-ablate ``neurons``, or mean-ablate them with ``means[layer, index]``
    (``[n_layers, d_mlp]``, e.g. the atlas's per-neuron means over a corpus)."""
    if mode not in ("zero", "mean"):
        raise InterpError(f"unknown ablation mode {mode!r}: choose 'zero' or 'mean'")
    if mode == "mean" and means is None:
        raise InterpError("mean ablation needs means: a [n_layers, d_mlp] tensor of neuron means")
    groups = _by_layer(model, neurons)
    layer_values = {
        l: (ix, torch.zeros(len(ix)) if mode == "zero" else means[l, ix].float())
        for l, ix in groups.items()
    }
    with hooks(model, _set_neurons(layer_values, positions)):
        yield


@contextmanager
def patch(model, sites: Iterable[str], source: dict[str, Tensor], positions: Positions = None):
    """Overwrite each site with ``source[site]`` (same shape) at ``positions``."""
    pos = _pos_index(positions)

    def make(name: str) -> HookFn:
        if name not in source:
            raise InterpError(f"no recorded activation for {name!r} to patch from")
        src = source[name]

        def fn(act: Tensor) -> Tensor:
            if src.shape != act.shape:
                raise InterpError(f"cannot patch {name}: source shape {tuple(src.shape)} "
                                  f"differs from this run's {tuple(act.shape)}")
            act = act.clone()
            act[:, pos] = src[:, pos].to(act.device, act.dtype)
            return act

        return fn

    with hooks(model, [(name, make(name)) for name in sites]):
        yield
