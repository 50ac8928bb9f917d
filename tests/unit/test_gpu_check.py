"""`make gpu-check` runs every CLI command (so a GPU's first session exercises all of them), the sharded ones
with --workers 2 and a model spread with --device auto; its placeholders come from the runs it stored."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import typer.main

from interp.commands.common import app

ROOT = Path(__file__).resolve().parents[2]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_covers_every_command_workers_and_device_auto():
    check = _gpu_check()
    commands = set(typer.main.get_command(app).commands)
    covered = {args[0] for _, args in check.COMMANDS}
    assert commands <= covered, f"make gpu-check does not run {sorted(commands - covered)}"
    assert any("--workers" in args for _, args in check.COMMANDS)
    assert any(name.endswith("auto") for name, _ in check.COMMANDS)
    assert check.NO_MODEL <= commands


def test_placeholders_are_filled_from_the_stored_runs(tiny_llama, tmp_path, monkeypatch):
    import interp

    monkeypatch.setenv("INTERP_RUNS", str(tmp_path))
    from interp.analyses.patching import engine
    from tests.unit.scale.test_sweep import PAIRS

    runs = {m: engine.run(tiny_llama, engine.PatchingConfig(n=2, method=m, components=("mlp_out",)), pairs=PAIRS)
            for m in ("activation", "relp")}
    for r in runs.values():
        interp.storage.save_result(r)
    check = _gpu_check()
    assert check.resolve(["patch-compare", "{activation}", "{relp}"], tmp_path) == [
        "patch-compare", runs["activation"].run_id, runs["relp"].run_id]
    assert check.resolve(["diff", "{edit}"], tmp_path) == ["diff", "<no unlearning run stored>"]
