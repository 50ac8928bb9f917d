"""Tolerances per invariant, for the dtype the suite runs in (``pytest --dtype bfloat16``).

bfloat16 keeps 8 bits of mantissa: one rounding is up to 2^-9 (0.2%) relative, and a value
computed through a two-layer model has dozens of them; float32 ones are 2^-24. Each entry is
``(atol, rtol)``; both sides are compared in float64.
"""

from __future__ import annotations

import os

import pytest
import torch

TOLERANCES = {
    # the same numbers read two ways (a stored Result against a recomputation)
    "same": {"float32": (1e-5, 1.3e-6), "bfloat16": (1e-2, 1.6e-2)},
    # a sum of parts against the whole (components' DLA against the logit, neurons against the MLP)
    "sum": {"float32": (1e-4, 1e-4), "bfloat16": (0.25, 0.05)},
    # an intervention against a hand-written edit of the same activations
    "edit": {"float32": (1e-5, 1.3e-6), "bfloat16": (2e-2, 5e-2)},
}


def dtype() -> str:
    return os.environ.get("INTERP_DTYPE", "float32")


def tol(invariant: str) -> tuple[float, float]:
    table = TOLERANCES[invariant]
    return table.get(dtype(), table["float32"])


def close(actual, expected, invariant: str = "same") -> None:
    atol, rtol = tol(invariant)
    torch.testing.assert_close(torch.as_tensor(actual).double(), torch.as_tensor(expected).double(),
                               atol=atol, rtol=rtol)


def approx(expected, invariant: str = "same"):
    atol, rtol = tol(invariant)
    return pytest.approx(expected, abs=atol, rel=rtol)


def low_precision() -> bool:
    return dtype() in ("bfloat16", "float16")
