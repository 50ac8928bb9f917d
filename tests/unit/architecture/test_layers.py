"""The layout is the data flow: the import-linter contracts hold (layers, independent technique folders, no
cycles) and each bites on a planted defect; pages import only the facade and viz; the facade imports only the
registry and the techniques' read modules; no module is longer than 400 lines; only ``interp.tracing``
touches hook points."""

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
    for name in ("interp layers: imports point down the data flow", "technique folders are independent",
                 "no cycles"):
        assert f"{name} KEPT" in out.stdout
    assert "3 kept, 0 broken" in out.stdout


def _planted(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess:
    shutil.copytree(ROOT / "interp", tmp_path / "interp", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "interp" / module, "a") as f:
        f.write(f"\n{line}  # planted\n")
    return _lint(tmp_path)


def test_the_layers_contract_fails_on_an_upward_import(tmp_path):
    out = _planted(tmp_path, "storage/store.py", "from interp.analyses.base import REGISTRY")
    assert out.returncode != 0
    assert "interp.storage is not allowed to import interp.analyses" in out.stdout


def test_the_independence_contract_fails_on_a_cross_technique_import(tmp_path):
    out = _planted(tmp_path, "analyses/patching/causal_tracing.py",
                   "from interp.analyses.facts.factual_recall import FactualConfig")
    assert out.returncode != 0 and "technique folders are independent BROKEN" in out.stdout
    assert "interp.analyses.patching is not allowed to import interp.analyses.facts" in out.stdout


def test_the_cycles_contract_fails_on_a_lazy_cycle(tmp_path):
    out = _planted(tmp_path, "analyses/subnetworks/read.py",
                   "def _f():\n    from interp.analyses.subnetworks import surprisal  # noqa")
    assert out.returncode != 0 and "no cycles BROKEN" in out.stdout


def test_the_facade_imports_only_the_registry_and_read_modules():
    analyses = [n for n in _imports(ROOT / "interp" / "workbench.py") if n.startswith("interp.analyses")]
    assert analyses and all(n == "interp.analyses.base" or n.endswith(".read") or n.count(".") == 2
                            for n in analyses), analyses
    # `from interp.analyses.neurons import read` names the package; check what it takes from there
    tree = ast.parse((ROOT / "interp" / "workbench.py").read_text())
    taken = {a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
             and node.module.count(".") == 2 and node.module.startswith("interp.analyses.")
             and node.module != "interp.analyses.base" for a in node.names}
    assert taken <= {"read"}, taken


def test_no_module_is_longer_than_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "interp").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


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
