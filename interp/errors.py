"""User-facing errors.

``InterpError`` carries a message written for the researcher: what was wrong and
how to fix it. The CLI prints it as one line, with no traceback; the dashboard
shows it with ``st.error``. Anything else that escapes is a bug in interp.
"""

from __future__ import annotations


class InterpError(ValueError):
    """A bad input, named in the user's terms ("layer 31 is out of range: ...")."""


def check_range(what: str, value: int, size: int, owner: str) -> int:
    """Raise ``InterpError`` unless ``0 <= value < size``; return ``value``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InterpError(f"{what} must be an integer, got {value!r}")
    if not 0 <= value < size:
        raise InterpError(f"{what} {value} is out of range: {owner} has {what}s 0-{size - 1}")
    return value


def scrub(value, path: tuple = ()):
    """``value`` (numbers, numpy/torch scalars, nested in dicts and lists) with every NaN or infinity
    replaced by ``None``, and ``[(path, repr)]`` of each one replaced: the one walk behind strict
    JSON, stored Results and the finite checks."""
    import math

    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a numpy or torch scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None, [(path, repr(value))]
    if isinstance(value, dict):
        pairs = [(k, scrub(v, (*path, k))) for k, v in value.items()]
        return {k: v for k, (v, _) in pairs}, [f for _, (_, found) in pairs for f in found]
    if isinstance(value, (list, tuple)):
        parts = [scrub(v, (*path, i)) for i, v in enumerate(value)]
        return [v for v, _ in parts], [f for _, found in parts for f in found]
    return value, []


def dotted(path: tuple) -> str:
    """``("b", 1)`` -> ``"b[1]"``: a scrubbed place as a person reads it."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out or "value"


def non_finite(value) -> list[str]:
    """Where ``value`` (numbers nested in dicts/lists, or a tensor) holds NaN or an infinity."""
    if hasattr(value, "isfinite") and getattr(value, "ndim", 0) > 0:  # a tensor
        return [] if bool(value.isfinite().all()) else ["tensor"]
    if isinstance(value, (list, tuple)) and any(hasattr(v, "isfinite") for v in value):
        return [f"[{i}]" for i, v in enumerate(value) if non_finite(v)]
    return [dotted(p) for p, _ in scrub(value)[1]]


def require_finite(what: str, value, fix: str) -> None:
    """Raise ``InterpError`` naming ``what`` if ``value`` holds NaN or an infinity."""
    if non_finite(value):
        raise InterpError(f"{what} is not finite (NaN or inf): {fix}")
