"""Running the CLI in-process, and reading its JSON strictly."""

from __future__ import annotations

import json
import sys

from interp import cli


def run_cli(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """``interp *args`` through ``cli.main``: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["interp", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def strict(text: str):
    """``json.loads`` that refuses NaN and Infinity, as strict parsers do."""
    def refuse(name):
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)
