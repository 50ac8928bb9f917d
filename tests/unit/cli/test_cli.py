"""The CLI: --json prints one JSON document; bad input prints one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.cli.helpers import run_cli


def test_info_json(capsys, monkeypatch):
    code, out, _ = run_cli(capsys, monkeypatch, "info", "--model", "tiny-llama", "--json")
    data = json.loads(out)
    assert code == 0 and data["n_layers"] == 2 and data["is_glu"] is True
    assert data["hooks"]["per_layer"]["mlp_post"] == "blocks.{layer}.mlp.hook_post"


def test_top_neurons_and_runs(capsys, monkeypatch):
    code, out, _ = run_cli(capsys, monkeypatch, "top-neurons", "-m", "tiny-gpt2", "-p", "abc", "-k", "3", "--json")
    data = json.loads(out)
    assert code == 0 and len(data["top"]) == 3
    code, out, _ = run_cli(capsys, monkeypatch, "runs", "--json")
    assert [r["path"] for r in json.loads(out)] == [data["path"]]


def test_neuron_command(capsys, monkeypatch):
    code, out, _ = run_cli(capsys, monkeypatch, "neuron", "1.3", "-m", "tiny-llama", "-p", "hey", "--json")
    data = json.loads(out)
    assert code == 0 and data["tokens"] == ["h", "e", "y"] and len(data["activations"]) == 3


@pytest.mark.parametrize("args, message", [
    (["info", "--model", "no-such-model"], "unknown model spec 'no-such-model'"),
    (["neuron", "2.0", "-m", "tiny-llama", "-p", "x"], "layer 2 is out of range: tiny-llama has layers 0-1"),
    (["neuron", "0.999", "-m", "tiny-llama", "-p", "x"], "neuron 999 is out of range"),
    (["neuron", "0.1", "-m", "tiny-llama", "-p", " "], "the prompt is empty"),
    (["neuron", "0.1", "-m", "tiny-llama", "-p", "x" * 300], "longer than tiny-llama's context of 128"),
    (["top-neurons", "-m", "tiny-llama", "-t", "ab"], "not a single token"),
    (["data", "MISSING.txt", "--kind", "corpus"], "corpus path 'MISSING.txt' does not exist"),
    (["neurons-for", "-m", "tiny-llama", "-t", "xy"], "tokenizes as ['x', 'y']"),
    (["concept", "-m", "tiny-llama", "-t", "xy"], "tokenizes as ['x', 'y']"),
    (["concept", "-m", "tiny-llama", "-t", "a", "--side", "down"], "'down' is not one of"),
    (["clamp", "-m", "tiny-llama", "-n", "1.2", "-v", "nan", "-p", "hi", "-t", "a"], "must be a finite number"),
    (["clamp", "-m", "tiny-llama", "-n", "4.2", "-v", "1", "-p", "hi", "-t", "a"], "layer 4 is out of range"),
])
def test_bad_input_is_one_line(capsys, monkeypatch, args, message):
    code, out, err = run_cli(capsys, monkeypatch, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert "Traceback" not in err
    assert not list(Path(os.environ["INTERP_RUNS"]).rglob("*")), "bad input wrote to runs/"


def test_malformed_jsonl_names_the_line(capsys, monkeypatch, tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text('{"prompt": "a b", "subject": "a", "answer": " c", "relation": "r"}\n{"prompt": 1}\n')
    code, out, err = run_cli(capsys, monkeypatch, "data", str(path), "--json")
    assert code == 2 and json.loads(out)["error"].startswith(f"{path}:2:")


def test_entry_point_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "interp.cli", "neuron", "9.9", "-m", "tiny-gpt2", "-p", "x"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: layer 9 is out of range: tiny-gpt2 has layers 0-1"]


def test_decode_neurons_for_and_clamp(capsys, monkeypatch):
    code, out, _ = run_cli(capsys, monkeypatch, "decode", "-m", "tiny-llama", "-k", "5", "--json")
    assert code == 0 and json.loads(out)["metrics"]["n_neurons"] == 384
    code, out, _ = run_cli(capsys, monkeypatch, "neurons-for", "-m", "tiny-llama", "-t", "a", "-k", "4", "--json")
    assert code == 0 and len(json.loads(out)["neurons"]) == 4
    code, out, _ = run_cli(capsys, monkeypatch, "clamp", "-m", "tiny-llama", "-n", "1.2", "-v", "5", "-p", "hi",
                           "-g", "3", "--json")
    data = json.loads(out)
    assert code == 0 and len(data["generations"]) == 1 and len(data["probs"]) == 1


def test_options_are_generated_from_the_configs():
    """Every Config field is an option of its command, with the Config's default and help."""
    import dataclasses

    import typer.main

    from interp.analyses.base import get_analysis
    from interp.commands.common import app

    commands = {"top-neurons": "top_neurons", "decode": "lm_head_decoding", "clamp": "clamp", "concept": "concept",
                "atlas": "neuron_atlas", "patch": "patching", "factual": "factual_recall",
                "factual-fix": "factual_fix", "trace": "causal_tracing", "unlearn": "unlearning",
                "bigram": "bigram_subnetworks"}
    group = typer.main.get_command(app)
    for command, analysis in commands.items():
        params = {p.name: p for p in group.commands[command].params}
        for f in dataclasses.fields(get_analysis(analysis).config):
            assert f.name in params, (command, f.name)
            default = params[f.name].default
            if isinstance(f.default, tuple):
                default = tuple(default) if isinstance(default, list) else tuple(
                    int(x) for x in default.split(",") if x)
            assert default == f.default, (command, f.name, default, f.default)
            assert params[f.name].help == f.metadata["help"] or params[f.name].help.startswith(f.metadata["help"])


def test_generic_run_takes_config_fields(capsys, monkeypatch):
    code, out, _ = run_cli(capsys, monkeypatch, "run", "top_neurons", "-m", "tiny-gpt2", "--prompt", "abc",
                           "--top-k", "2", "--json")
    data = json.loads(out)
    assert code == 0 and data["analysis"] == "top_neurons"
    from interp.storage import load_result

    result = load_result(data["path"])
    assert result.config.top_k == 2 and result.config.prompt == "abc" and len(result.table("top")) == 2
    code, _, err = run_cli(capsys, monkeypatch, "run", "top_neurons", "-m", "tiny-gpt2", "--top-kk", "2")
    assert code == 2 and "unknown option --top-kk" in err and "--top-k" in err
    code, out, _ = run_cli(capsys, monkeypatch, "run", "list", "--json")
    assert code == 0 and json.loads(out)["patching"]["method"]["default"] == "relp"


def test_neurons_for_prints_its_table(capsys, monkeypatch):
    """The README's own example, read as a person would (its printer once crashed; --json did not)."""
    code, out, err = run_cli(capsys, monkeypatch, "neurons-for", "-m", "tiny-llama", "-t", "a", "-k", "3")
    assert code == 0 and "neurons most specific to 'a'" in out and len(out.strip().splitlines()) == 4, err
    assert "in its own list" in out.splitlines()[1]  # the first listed holds 'a' among its own top tokens
    code, out, err = run_cli(capsys, monkeypatch, "neurons-for", "-m", "tiny-llama", "-t", "a", "-k", "3",
                             "--by", "raw")
    assert code == 0 and "neurons promoting 'a'" in out and len(out.strip().splitlines()) == 4, err
    code, _, err = run_cli(capsys, monkeypatch, "neurons-for", "-m", "tiny-llama", "-t", "a", "--by", "loudest")
    assert code != 0 and "choose specificity or raw" in err


def test_a_warning_under_a_progress_bar_gets_its_own_line(capsys, monkeypatch):
    """The CLI shows warnings through tqdm, so one raised while a bar is drawn is not glued to it."""
    import warnings

    from tqdm.auto import tqdm

    from interp.cli import _quiet

    monkeypatch.setattr(warnings, "filters", list(warnings.filters))
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    _quiet()
    with tqdm(total=3, desc="work", file=sys.stderr) as bar:
        bar.update(1)
        warnings.warn("the cap applies", UserWarning, stacklevel=1)
        bar.update(2)
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert "warning: the cap applies" in lines
