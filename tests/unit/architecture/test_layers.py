"""The layout is the data flow: the import-linter contract holds, and bites on a planted cycle;
pages import only the facade and viz; only ``interp.tracing`` touches hook points."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-logo", "--no-cache", "--config", "pyproject.toml"], cwd=cwd,
                          capture_output=True, text=True, env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_the_layers_contract_holds():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 kept, 0 broken" in out.stdout


def test_the_contract_fails_on_a_planted_cycle(tmp_path):
    shutil.copytree(ROOT / "interp", tmp_path / "interp", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "interp" / "storage" / "store.py", "a") as f:
        f.write("\nfrom interp.analyses.base import REGISTRY  # planted: storage must not import analyses\n")
    out = _lint(tmp_path)
    assert out.returncode != 0
    assert "interp.storage is not allowed to import interp.analyses" in out.stdout


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_pages_import_only_the_facade_and_viz():
    allowed = ("interp.workbench", "interp.viz")
    offenders = {str(p.relative_to(ROOT)): name for p in (ROOT / "app").rglob("*.py") for name in _imports(p)
                 if (name == "interp" or name.startswith("interp.")) and not name.startswith(allowed)}
    assert offenders == {}


HOOK_CALLS = {"add_hook", "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
              "register_parametrization"}


def test_only_tracing_registers_hooks():
    offenders = []
    for path in (ROOT / "interp").rglob("*.py"):
        if "tracing" in path.relative_to(ROOT / "interp").parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            called = node.func.attr if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None
            if called in HOOK_CALLS:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {called}")
            if isinstance(node, ast.ImportFrom) and node.module == "interp.tracing.hooks" and any(
                    a.name == "hooks" for a in node.names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports the raw hooks primitive")
    assert offenders == []


def test_every_hook_name_is_spelled_in_names():
    """No module but interp/names.py writes a hook name by hand."""
    offenders = []
    for path in (ROOT / "interp").rglob("*.py"):
        if path.name == "names.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value != "hook_name" and (
                    ".hook_" in node.value or node.value.startswith("hook_")):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert offenders == []
