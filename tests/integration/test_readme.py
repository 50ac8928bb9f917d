"""The README's Python tour runs as written, on the embedded model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.embedded


def test_readme_tour_runs():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = re.search(r"## A tour of the Python API\n\n```python\n(.*?)```", readme, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    namespace: dict = {}
    exec(compile(code, "README tour", "exec"), namespace)  # noqa: S102 - our own README
    top = namespace["result"].top("neurons", by="dla", k=1)
    assert namespace["result"].metrics["target"] == " Paris" and len(top) == 1
