"""Hooks, only ever inside context managers that remove them in ``finally``.

``hooks`` is the low-level primitive, and it is private to ``interp.tracing``: it attaches
forward functions to named hook points of the bridge and always detaches them, even
when the body raises. A leaked hook is a silent wrong answer, so nothing in interp
attaches hooks any other way, and no module outside ``tracing/`` calls it (a test
checks). Built on it here:

- ``record(model, sites)``: capture the named sites (only those) into a dict;
- ``track_grad(model)``: gradients start at the residual stream entering layer 0, so
  recorded activations can be differentiated although every weight is frozen;

and in ``interventions``: every write into activations (clamp, ablate, scale, patch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from torch import Tensor

from interp.names import hook_name

HookFn = Callable[[Tensor], Tensor | None]


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


@contextmanager
def track_grad(model) -> Iterator[None]:
    """Make the residual stream entering layer 0 a leaf that requires grad, for the body."""
    with hooks(model, [(hook_name("resid_pre", 0), lambda x: x.detach().requires_grad_(True))]):
        yield
