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
