"""Hostile but realistic bad input, through the CLI in-process: every case ends in exactly one
``error:`` line naming the offending value, exit 2, no traceback, strict JSON under ``--json``,
and no new or changed run directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.unit.cli.helpers import run_cli, strict

PAIRS_UNEQUAL = '{"clean": "abc", "corrupt": "abcd", "answer": "a", "wrong": "b"}\n'
PAIRS = ('{"clean": "abcdefgh", "corrupt": "abxdefgh", "answer": "a", "wrong": "b"}\n'
         '{"clean": "hello wo", "corrupt": "jello wo", "answer": "r", "wrong": "x"}\n')
FILES = {
    "pairs_unequal.jsonl": PAIRS_UNEQUAL,
    "pairs.jsonl": PAIRS,
    "bad_json.jsonl": '{"prompt": "a", "subject": "a", "answer": " b", "relation": "r"}\n{not json\n',
    "no_subject.jsonl": '{"prompt": "The capital of X is", "answer": " Y", "relation": "r"}\n',
    "subject_elsewhere.jsonl": '{"prompt": "The capital of X is", "subject": "Q", "answer": " Y", "relation": "r"}\n',
    "empty.jsonl": "\n\n",
    "facts.jsonl": '{"prompt": "The capital of Abc is", "subject": "Abc", "answer": " x", "relation": "c"}\n',
    "notes.txt": "just text\n",
}

# (command line, what the one error line must say), run with -m tiny-llama where a model is needed
CASES = [
    # usage errors (click's, through typer's bundled click)
    ([], "no command given"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["info", "--bogus"], "No such option: --bogus"),
    (["neuron", "29.5"], "Missing option '--prompt'"),
    (["neuron", "-5.3", "-p", "x"], "No such option: -5"),
    (["top-neurons", "-m", "tiny-llama", "-k", "abc"], "Invalid value for '--top-k'"),
    (["neurons-for", "-m", "tiny-llama"], "Missing option '--token'"),
    (["neurons-for", "-m", "tiny-llama", "-t", "a", "-k", "0"], "Invalid value for '-k'"),
    (["runs", "--bogus"], "No such option: --bogus"),
    (["patch-compare", "only-one"], "Missing argument 'run_b'"),
    # models and devices
    (["info", "-m", "no-such-model"], "unknown model spec 'no-such-model'"),
    (["info", "-m", "tiny-llama", "--device", "tpu9"], "unknown device 'tpu9'"),
    (["info", "-m", "tiny-llama", "--dtype", "float8"], "unknown dtype 'float8'"),
    (["info", "-m", "{tmp}/no_config"], "has no config.json"),
    (["info", "-m", "{tmp}/pickles"], "only pickle weights (pytorch_model.bin)"),
    (["info", "-m", "{tmp}/missing.gguf"], "GGUF file"),
    (["info", "-m", "{tmp}/not_gguf.gguf"], "so it is not a GGUF file"),
    (["info", "-m", "{tmp}/truncated.gguf"], "is truncated or damaged (8 bytes)"),
    (["info", "-m", "some-org/not-downloaded-model"], "not in the local Hugging Face cache and HF_HUB_OFFLINE"),
    (["info", "-m", "{tmp}/no_weights"], "has no safetensors weights"),
    (["info", "-m", "{tmp}/ctrl_model"], "TransformerLens cannot bridge"),
    (["info", "-m", "./no/such/dir"], "'./no/such/dir' does not exist"),
    (["info", "-m", "{tmp}/notes.txt"], "is a file, not a model directory"),
    (["info", "-m", "{tmp}/nan_model"], "hold NaN or inf"),
    # neurons and prompts
    (["neuron", "2.0", "-m", "tiny-llama", "-p", "x"], "layer 2 is out of range: tiny-llama has layers 0-1"),
    (["neuron", "0.999", "-m", "tiny-llama", "-p", "x"], "neuron 999 is out of range"),
    (["neuron", "abc", "-m", "tiny-llama", "-p", "x"], "cannot read neuron 'abc'"),
    (["neuron", "0.1", "-m", "tiny-llama", "-p", " "], "the prompt is empty"),
    (["neuron", "0.1", "-m", "tiny-llama", "-p", "x" * 300], "longer than tiny-llama's context of 128"),
    # data
    (["data", "MISSING.txt", "--kind", "corpus"], "corpus path 'MISSING.txt' does not exist"),
    (["data", "{tmp}/bad_json.jsonl"], "bad_json.jsonl:2: not valid JSON"),
    (["data", "{tmp}/no_subject.jsonl"], "missing field 'subject'"),
    (["data", "{tmp}/subject_elsewhere.jsonl"], "subject 'Q' is not in the prompt"),
    (["data", "{tmp}/facts.jsonl", "--kind", "nonsense"], "unknown kind 'nonsense'"),
    (["data", "{tmp}/pairs_unequal.jsonl", "--kind", "pairs", "-m", "tiny-llama"], "tokenize to different lengths"),
    (["data", "builtin:nope"], "no built-in set 'nope'"),
    (["data", "{tmp}/empty.jsonl"], "no facts found"),
    (["data", "{tmp}/latin1.jsonl"], "not UTF-8"),
    # the generic run
    (["run", "nope", "-m", "tiny-llama"], "unknown analysis 'nope'"),
    (["run", "top_neurons", "-m", "tiny-llama", "--top-kk", "2"], "unknown option --top-kk"),
    (["run", "top_neurons", "-m", "tiny-llama", "--top-k"], "--top-k needs a value"),
    (["run", "top_neurons", "-m", "tiny-llama", "--top-k", "x"], "cannot read 'x' as int"),
    (["run", "top_neurons", "-m", "tiny-llama", "--top-k", "0"], "top_k (--top-k) must be at least 1, got 0"),
    # top-neurons, decode, neurons-for
    (["top-neurons", "-m", "tiny-llama", "-k", "-3"], "top_k (--top-k) must be at least 1, got -3"),
    (["top-neurons", "-m", "tiny-llama", "-t", "ab"], "'ab' is not a single token"),
    (["decode", "-m", "tiny-llama", "--layers", "5-2"], "the range '5-2' runs backwards"),
    (["decode", "-m", "tiny-llama", "--layers", "7"], "layer 7 is out of range"),
    (["decode", "-m", "tiny-llama", "--layers", "a-b"], "cannot read 'a-b'"),
    (["decode", "-m", "tiny-llama", "-k", "0"], "top_k (--top-k) must be at least 1, got 0"),
    (["decode", "-m", "tiny-llama", "--sides", "sideways"], "'sideways' is not one of out, up, gate"),
    (["decode", "-m", "tiny-llama", "-k", "100000"], "at most the vocabulary size, 259"),
    (["decode", "-m", "tiny-gpt2", "--sides", "gate"], "has no gate side"),
    (["neurons-for", "-m", "tiny-llama", "-t", "xy"], "tokenizes as ['x', 'y']"),
    (["neurons-for", "-m", "tiny-llama", "-t", "a", "--side", "down"], "unknown side 'down'"),
    (["neurons-for", "-m", "tiny-llama", "-t", "a", "--by", "loud"], "unknown ranking --by 'loud'"),
    (["card", "0.99999", "-m", "tiny-llama"], "out of range"),
    (["card", "zero", "-m", "tiny-llama"], "cannot read neuron 'zero'"),
    (["card", "0.1", "-m", "tiny-llama", "--clamp", "a", "--values", "1,inf"], "not a finite number"),
    (["card", "0.1", "-m", "tiny-llama", "--verify"], "no stored neuron-level attribution or RelP run"),
    (["diff", "tiny-gpt2", "-m", "tiny-llama"], "do not line up"),
    (["diff", "no-such-model-xyz", "-m", "tiny-llama"], "no-such-model-xyz"),
    # clamp and concept
    (["clamp", "-m", "tiny-llama", "-n", "1.2", "-v", "nan", "-p", "hi", "-t", "a"], "value (--value) must be"),
    (["clamp", "-m", "tiny-llama", "-n", "4.2", "-v", "1", "-p", "hi", "-t", "a"], "layer 4 is out of range"),
    (["clamp", "-m", "tiny-llama", "-n", "1.2", "-v", "1e38", "-p", "hi", "-t", "a"], "clamp at 1e+38 is not finite"),
    (["clamp", "-m", "tiny-llama", "-n", "1.2", "-v", "1", "-p", "hi", "-g", "-1"], "generate (--generate) must be at"),
    (["clamp", "-m", "tiny-llama", "-n", "x.y", "-v", "1", "-p", "hi"], "cannot read neuron 'x.y'"),
    (["concept", "-m", "tiny-llama", "-t", "xy"], "tokenizes as ['x', 'y']"),
    (["concept", "-m", "tiny-llama", "-t", "a", "--side", "down"], "side (--side): 'down' is not one of"),
    (["concept", "-m", "tiny-llama", "-t", "a", "--multiple", "nan"], "multiple (--multiple) must be a finite"),
    # atlas
    (["atlas", "-m", "tiny-llama", "-k", "0"], "k (--k) must be at least 1, got 0"),
    (["atlas", "-m", "tiny-llama", "--batch-size", "0"], "batch_size (--batch-size) must be at least 1, got 0"),
    (["atlas", "-m", "tiny-llama", "--workers", "0"], "workers (--workers) must be at least 1, got 0"),
    (["atlas", "-m", "tiny-llama", "--seq-len", "1"], "seq_len (--seq-len) must be at least 2, got 1"),
    (["atlas", "-m", "tiny-llama", "--corpus", "MISSING"], "corpus path 'MISSING' does not exist"),
    (["atlas", "-m", "tiny-llama", "--tokens", "10", "--seq-len", "64"], "n_tokens (10) must be at least one window"),
    # patch and patch-compare
    (["patch", "-m", "tiny-llama", "--n", "-1"], "n (--n) must be at least 0, got -1"),
    (["patch", "-m", "tiny-llama", "--method", "magic"], "method (--method): 'magic' is not one of"),
    (["patch", "-m", "tiny-llama", "--components", "brain"], "components (--components): 'brain' is not one of"),
    (["patch", "-m", "tiny-llama", "--components", ""], "components (--components) needs at least one value"),
    (["patch", "-m", "tiny-llama", "--metric", "vibes"], "metric (--metric): 'vibes' is not one of"),
    (["patch", "-m", "tiny-llama", "-d", "{tmp}/pairs_unequal.jsonl"], "tokenize to different lengths"),
    (["patch", "-m", "tiny-llama", "-d", "ioi"], "tokenizes too few IOI words"),
    (["patch", "-m", "tiny-llama", "-d", "{tmp}/pairs.jsonl", "--rules", "zz"], "unknown LRP rule(s) ['zz']"),
    (["patch", "-m", "tiny-llama", "-d", "{tmp}/pairs.jsonl", "--layers", "9"], "layer 9 is out of range"),
    (["patch", "-m", "tiny-llama", "--batch-rows", "0"], "batch_rows (--batch-rows) must be at least 1"),
    (["patch-compare", "nope1", "nope2"], "no stored run 'nope1'"),
    # facts
    (["factual", "-m", "tiny-llama", "-f", "builtin:nope"], "no built-in set 'nope'"),
    (["factual", "-m", "tiny-llama", "--top-heads", "0"], "top_heads (--top-heads) must be at least 1"),
    (["factual", "-m", "tiny-llama", "--layer", "-2"], "mlp_layer (--mlp-layer) must be at least -1, got -2"),
    (["factual", "-m", "tiny-llama", "-f", "{tmp}/facts.jsonl"], "answers none of the 1 facts correctly"),
    (["factual-fix", "-m", "tiny-llama", "--train-fraction", "1.5"], "train_fraction (--train-fraction) must"),
    (["factual-fix", "-m", "tiny-llama", "--target", "brain"], "target (--target): 'brain' is not one of"),
    (["factual-fix", "-m", "tiny-llama", "--layer", "99"], "layer 99 is out of range"),
    (["factual-fix", "-m", "tiny-llama", "-k", "0"], "k (--k) must be at least 1, got 0"),
    # tracing and unlearning
    (["trace", "-m", "tiny-llama", "--noise", "nan"], "noise (--noise) must be a finite number, got nan"),
    (["trace", "-m", "tiny-llama", "--noise", "-1"], "noise (--noise) must be at least 0, got -1"),
    (["trace", "-m", "tiny-llama", "--samples", "0"], "samples (--samples) must be at least 1, got 0"),
    (["trace", "-m", "tiny-llama", "--kind", "brain"], "kinds (--kinds): 'brain' is not one of"),
    (["trace", "-m", "tiny-llama", "-f", "{tmp}/facts.jsonl"], "answers none of the 1 facts correctly"),
    (["unlearn", "-m", "tiny-llama", "--lr", "-1"], "lr (--lr) must be more than 0, got -1"),
    (["unlearn", "-m", "tiny-llama", "--loss", "magic"], "loss (--loss): 'magic' is not one of"),
    (["unlearn", "-m", "tiny-llama", "--steps", "0"], "steps (--steps) must be at least 1, got 0"),
    (["unlearn", "-m", "tiny-llama", "--forget", "MISSING.jsonl"], "'MISSING.jsonl' does not exist"),
    # bigram subnetworks
    (["unlearn", "-m", "tiny-llama", "--methods", "forgetting"], "methods (--methods): 'forgetting' is not one of"),
    (["unlearn", "-m", "tiny-llama", "--npo-beta", "0"], "npo_beta (--npo-beta) must be more than 0, got 0"),
    (["faithfulness", "-m", "tiny-llama", "--n-boot", "3"], "n_boot (--n-boot) must be at least 10, got 3"),
    (["faithfulness", "-m", "tiny-llama", "--methods", "activation"], "methods (--methods): 'activation' is not one"),
    (["faithfulness", "-m", "tiny-llama", "-d", "ioi", "--n", "3"], "no stored activation patching of resid"),
    (["bigram-surprisal", "-m", "tiny-llama"], "no stored bigram subnetwork for tiny-llama"),
    (["bigram-surprisal", "-m", "tiny-llama", "--subnetwork", "nope"], "no stored run 'nope'"),
    (["bigram", "-m", "tiny-llama", "--lr", "-1"], "lr (--lr) must be more than 0, got -1"),
    (["bigram", "-m", "tiny-llama", "--batch-size", "0"], "batch_size (--batch-size) must be at least 1, got 0"),
    (["bigram", "-m", "tiny-llama", "--params", "brain"], "params (--params): 'brain' is not one of"),
    (["bigram", "-m", "tiny-llama", "--lam", "0"], "lam (--lam) must be more than 0, got 0"),
    (["bigram", "-m", "tiny-llama", "--t-mult", "0.5"], "t_mult (--t-mult) must be at least 1, got 0.5"),
    # neuron graphs
    (["graph", "-m", "tiny-llama", "--prompt", "x" * 200], "longer than tiny-llama's context of 128"),
    (["graph", "-m", "tiny-llama", "--target", " Mary"], "' Mary' is not a single token for tiny-llama"),
    (["graph", "-m", "tiny-llama", "--target", "a", "--wrong", "a"], "--wrong 'a' is the target token itself"),
    (["graph", "-m", "tiny-llama", "--top-logits", "--target", "a"], "--top-logits picks its own targets"),
    (["graph", "-m", "tiny-llama", "--prompt", "abcdefgh", "--candidates", "1", "--max-nodes", "1",
      "--node-threshold", "0", "--edge-threshold", "0"], "no neuron survived pruning"),
    (["graph", "-m", "tiny-llama", "--html", "{tmp}/missing/g.html"], "give a file path in an existing folder"),
    (["graph", "-m", "tiny-llama", "--export", "{tmp}"], "(that is a folder)"),
    (["graph", "-m", "tiny-llama", "--node-threshold", "1.5"], "node_threshold (--node-threshold) must be at most 1"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    for name, text in FILES.items():
        (tmp / name).write_text(text)
    (tmp / "latin1.jsonl").write_bytes('{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    (tmp / "no_config").mkdir()
    (tmp / "no_config" / "model.safetensors").write_bytes(b"")
    (tmp / "pickles").mkdir()
    (tmp / "pickles" / "config.json").write_text("{}")
    (tmp / "pickles" / "pytorch_model.bin").write_bytes(b"")
    (tmp / "not_gguf.gguf").write_text("this is not a GGUF file")
    (tmp / "truncated.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")  # the magic and version, then nothing
    (tmp / "no_weights").mkdir()
    (tmp / "no_weights" / "config.json").write_text("{}")
    from transformers import CTRLConfig, CTRLLMHeadModel

    from interp.models.tiny import byte_tokenizer

    ctrl = CTRLLMHeadModel(CTRLConfig(vocab_size=259, n_embd=32, n_layer=1, n_head=2, dff=64, n_positions=64))
    ctrl.save_pretrained(tmp / "ctrl_model")
    byte_tokenizer().save_pretrained(tmp / "ctrl_model")
    from interp.models import load_model

    model = load_model("tiny-llama")
    model.save_pretrained(tmp / "nan_model")
    from safetensors.torch import load_file, save_file

    weights = load_file(tmp / "nan_model" / "model.safetensors")
    name = next(k for k in weights if "mlp" in k)
    weights[name][0, 0] = float("nan")
    save_file(weights, tmp / "nan_model" / "model.safetensors", metadata={"format": "pt"})
    return tmp


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")} if root.exists() else {}


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a)[:60] or "(bare)" for a, _ in CASES])
def test_bad_input_is_one_error_line(capsys, monkeypatch, tmp_path, files, args, message):
    runs = tmp_path / "runs"
    monkeypatch.setenv("INTERP_RUNS", str(runs))
    args = [a.replace("{tmp}", str(files)) for a in args]
    before = snapshot(runs)
    code, out, err = run_cli(capsys, monkeypatch, *([*args, "--json"] if args and args[0] != "frobnicate" else args))
    assert code == 2, (code, err)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert message in errors[0], errors[0]
    assert "Traceback" not in err
    if args and args[0] != "frobnicate":
        assert strict(out.strip().splitlines()[-1])["error"] == errors[0].removeprefix("error: ")
    assert snapshot(runs) == before


def test_the_suite_covers_every_command():
    import typer.main

    from interp.commands.common import app

    commands = set(typer.main.get_command(app).commands)
    covered = {args[0] for args, _ in CASES if args}
    assert commands <= covered, commands - covered
    assert len(CASES) >= 60


def test_json_output_is_strict(capsys, monkeypatch, tmp_path):
    """A non-finite number in a Result's metrics becomes null in --json output, listed under non_finite."""
    from interp.commands.common import strict_json

    text = strict_json({"a": float("nan"), "b": [1.0, float("inf")], "c": torch.tensor(2.0)})
    assert strict(text) == {"a": None, "b": [1.0, None], "c": 2.0, "non_finite": ["a", "b[1]"]}
