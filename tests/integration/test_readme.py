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
    for _ in range(2):  # a tour run twice stores two runs; its SQL still returns this run's rows once
        exec(compile(code, "README tour", "exec"), namespace)  # noqa: S102 - our own README
    top = namespace["result"].top("neurons", by="dla", k=1)
    assert namespace["result"].metrics["target"] == " Paris" and len(top) == 1
    sql_line = next(line for line in code.splitlines() if line.startswith("interp.sql("))
    rows = eval(sql_line.split("  #")[0], namespace)  # noqa: S307 - our own README
    assert len(rows) == len(namespace["result"].table("top")) and not rows.drop(columns="filename").duplicated().any()
