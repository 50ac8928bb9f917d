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


def non_finite(value, where: str = "") -> list[str]:
    """Where ``value`` (a number, or nested dicts/lists of them) holds NaN or an infinity."""
    import math

    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, float):
        return [] if math.isfinite(value) else [where or "value"]
    if isinstance(value, dict):
        return [w for k, v in value.items() for w in non_finite(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, (list, tuple)):
        return [w for i, v in enumerate(value) for w in non_finite(v, f"{where}[{i}]")]
    if hasattr(value, "isfinite"):  # a tensor
        return [] if bool(value.isfinite().all()) else [where or "tensor"]
    return []


def require_finite(what: str, value, fix: str) -> None:
    """Raise ``InterpError`` naming ``what`` if ``value`` holds NaN or an infinity."""
    bad = non_finite(value)
    if bad:
        raise InterpError(f"{what} is not finite (NaN or inf): {fix}")
