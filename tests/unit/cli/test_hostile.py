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
    (["pin", "no-such-run"], "no stored run 'no-such-run'"),
    (["pin"], "Missing argument 'run'"),
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
    (["diff", "runs/unlearning/edits/20261201-x-constrained", "-m", "tiny-llama"],
     "the edited weights of an unlearning run are written where it runs and are not committed"),
    # clamp and concept
    (["clamp", "-m", "tiny-llama", "-n", "1.2", "-v", "nan", "-p", "hi", "-t", "a"], "value (--value) must be"),
    (["clamp", "-m", "tiny-llama", "-n", "4.2", "-v", "1", "-p", "hi", "-t", "a"], "layer 4 is out of range"),
    (["clamp", "-m", "tiny-llama", "-n", "1.2", "-v", "1e38", "-p", "hi", "-t", "a"],
     "clamp value 1e+38 is beyond ±1e+06"),
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
    (["trace", "-m", "tiny-llama", "--launcher", "pbs"], "launcher (--launcher): 'pbs' is not one of"),
    (["trace", "-m", "tiny-llama", "--kind", "brain"], "kinds (--kinds): 'brain' is not one of"),
    (["trace", "-m", "tiny-llama", "-f", "{tmp}/facts.jsonl"], "answers none of the 1 facts correctly"),
    (["unlearn", "-m", "tiny-llama", "--lr", "-1"], "lr (--lr) must be more than 0, got -1"),
    (["unlearn", "-m", "tiny-llama", "--loss", "magic"], "loss (--loss): 'magic' is not one of"),
    (["unlearn", "-m", "tiny-llama", "--steps", "0"], "steps (--steps) must be at least 1, got 0"),
    (["unlearn", "-m", "tiny-llama", "--forget", "MISSING.jsonl"], "'MISSING.jsonl' does not exist"),
    # bigram subnetworks
    (["unlearn", "-m", "tiny-llama", "--methods", "forgetting"], "methods (--methods): 'forgetting' is not one of"),
    (["unlearn", "-m", "tiny-llama", "--npo-beta", "0"], "npo_beta (--npo-beta) must be more than 0, got 0"),
    (["unlearn", "-m", "tiny-llama", "--retain-unseen", "1"], "retain_unseen (--retain-unseen) must be at most 0.9"),
    (["unlearn", "-m", "tiny-llama", "--memit-keep", "0"], "memit_keep (--memit-keep) must be more than 0, got 0"),
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
    (["explain", "-m", "tiny-llama", "--layers", "9"], "layer 9 is out of range"),
    (["explain", "-m", "tiny-llama", "--llm", "nope"], "--llm 'nope' is not an endpoint"),
    (["explain", "-m", "tiny-llama", "--top-tokens", "0"], "top_tokens (--top-tokens) must be at least 1, got 0"),
    (["explain", "-m", "tiny-llama"], "no neuron atlas of tiny-llama to explain from"),
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


# --- round two: one test per class, at least three cases each; every case ends in a result or one `error:`
# line, never a traceback, a wrong result or a deletion outside the store ------------------------------------


def _one_error(code, out, err, expected: str) -> None:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code != 0 and len(errors) == 1 and expected in errors[0], (code, err[-600:])
    assert "Traceback" not in err


def _tree(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else None for p in sorted(path.rglob("*"))}


def _stored(tmp_path: Path, prompt: str = "abcdef") -> Path:
    from interp.analyses.base import run
    from interp.models import load_model

    r = run("top_neurons", load_model("tiny-llama"), prompt=prompt, target="a")
    return Path(r.path)


def test_class1_prune_never_deletes_outside_the_store_or_what_it_cannot_prove(capsys, monkeypatch, tmp_path):
    runs = tmp_path / "runs"
    monkeypatch.setenv("INTERP_RUNS", str(runs))
    neighbour = tmp_path / "neighbour" / "data"  # a folder beside the store with a result.json interp never wrote
    neighbour.mkdir(parents=True)
    (neighbour / "result.json").write_text('{"analysis": 1}')
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "result.json").write_text("not json")
    good = _stored(tmp_path)
    damaged = _stored(tmp_path, "another prompt")
    (damaged / "tables" / "top.parquet").write_bytes(b"garbage")
    notes = runs / "notes" / "keep"  # inside the store, but not named as interp names runs
    notes.mkdir(parents=True)
    (notes / "result.json").write_text("{")
    link = runs / "top_neurons" / "20260101-000000-tiny-llama-abcdef"  # a run-like link that points outside
    link.symlink_to(outside, target_is_directory=True)
    before_outside, before_neighbour = _tree(tmp_path / "outside"), _tree(tmp_path / "neighbour")
    # (a) a path as the analysis name, (b) a glob, (c) an absolute path: refused before anything is read
    for bad in ("..", "*", str(tmp_path), "top_neurons/../.."):
        code, out, err = run_cli(capsys, monkeypatch, "runs", "--prune", "--analysis", bad)
        _one_error(code, out, err, "is not a valid analysis name")
    # (d) a real prune: the damaged run goes (said first), the rest stays
    code, out, err = run_cli(capsys, monkeypatch, "runs", "--prune")
    assert code == 0 and f"will remove: {damaged}" in err
    assert not damaged.exists() and good.exists() and notes.exists() and link.is_symlink()
    assert _tree(tmp_path / "outside") == before_outside and _tree(tmp_path / "neighbour") == before_neighbour
    assert "damaged, kept" in out and "not an interp run id" in out


def test_class1_run_references_stay_in_the_store(capsys, monkeypatch, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    for ref in ("../elsewhere", "../../etc", "*"):
        code, out, err = run_cli(capsys, monkeypatch, "patch-compare", ref, ref)
        _one_error(code, out, err, "no stored run")
    good = _stored(tmp_path)  # (an option that takes a run, given a run of another analysis)
    code, out, err = run_cli(capsys, monkeypatch, "patch-compare", str(good), str(good))
    _one_error(code, out, err, "is a top_neurons run, not a patching run")


def test_class2_models_that_would_load_wrong_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    from interp.errors import InterpError
    from interp.models import load_model

    model = load_model("tiny-llama")
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    name = next(k for k in load_file_of(model, tmp_path) if "down_proj" in k)
    cases = {"lack": lambda w: w.pop(name),
             "does not have": lambda w: w.__setitem__("model.extra.weight", torch.zeros(2)),
             "another shape": lambda w: w.__setitem__(name, torch.zeros(3, 3))}
    for expected, change in cases.items():
        d = tmp_path / expected.replace(" ", "_")
        model.save_pretrained(d)
        w = load_file(d / "model.safetensors")
        change(w)
        save_file(w, d / "model.safetensors", metadata={"format": "pt"})
        with pytest.raises(InterpError, match=expected):
            load_model(str(d))
    assert weights  # the shared model was not touched


def load_file_of(model, tmp_path):
    from safetensors.torch import load_file

    model.save_pretrained(tmp_path / "probe")
    return load_file(tmp_path / "probe" / "model.safetensors")


def test_class2_a_damaged_model_cache_is_caught_anywhere_in_the_file(tmp_path):
    """Finite damage far from the fingerprint's sampled blocks: the load-time hash of every tensor catches it."""
    import shutil

    from interp.models.embedded import _read_cache, embedded_cache_dir

    src = embedded_cache_dir("smollm2-135m")
    if not (src / "model.safetensors").is_file():
        pytest.skip("no SmolLM2 cache on this machine yet")
    cache = tmp_path / "cache"
    shutil.copytree(src, cache)
    f = cache / "model.safetensors"
    size = f.stat().st_size
    for offset in (size // 3 + 12_345, size // 2 + 777, size - 70_001):  # three places, one at a time
        data = bytearray(f.read_bytes())
        data[offset] ^= 0x01  # the lowest mantissa bit of one weight: still finite, slightly wrong
        f.write_bytes(bytes(data))
        with pytest.raises(ValueError, match="differ"):
            _read_cache(cache, "smollm2-135m")
        data[offset] ^= 0x01
        f.write_bytes(bytes(data))


def test_class3_results_that_are_not_findings_are_refused(capsys, monkeypatch, tmp_path):
    one_pair = tmp_path / "one.jsonl"
    one_pair.write_text('{"clean": "abcdefgh", "corrupt": "abcdefgx", "answer": "a", "wrong": "b"}\n')
    cases = [
        (["patch", "-m", "tiny-llama", "-d", str(one_pair), "--components", "neurons", "--neuron-pos", "999",
          "--method", "attribution"], "--neuron-pos 999 is outside the shortest prompt"),
        (["patch", "-m", "tiny-llama", "-d", str(one_pair), "--components", "neurons", "--neuron-pos", "2",
          "--method", "attribution"], "--neuron-pos 2 falls before the clean and corrupt prompts differ"),
        (["card", "1.3", "-m", "tiny-llama", "--clamp", "a", "--values=-1e30,1e30"], "is beyond ±1e+06"),
        (["trace", "-m", "tiny-llama", "--noise", "1e30"], "noise (--noise) must be at most 1000"),
        (["factual-fix", "-m", "tiny-llama", "--scale", "1e30"], "scale (--scale) must be at most 100"),
    ]
    for args, expected in cases:
        before = _tree(tmp_path / "runs") if (tmp_path / "runs").exists() else {}
        code, out, err = run_cli(capsys, monkeypatch, *args)
        _one_error(code, out, err, expected)
        assert (_tree(tmp_path / "runs") if (tmp_path / "runs").exists() else {}) == before


def test_class3_the_shared_output_check_and_diverged_edits():
    import pandas as pd

    from interp.analyses.base import non_finite_outputs
    from interp.errors import InterpError
    from interp.models import load_model
    from interp.models.loading import save_edit
    from interp.result import Result

    r = Result(analysis="top_neurons", config={}, provenance={}, metrics={"a": 1.0},
               tables={"t": pd.DataFrame({"x": [1.0, float("inf")]})}, tensors={"w": torch.tensor([float("-inf")])})
    assert set(non_finite_outputs(r)) == {"tables.t", "tensors.w"}
    r.tables["t"] = pd.DataFrame({"x": [1.0, float("nan")]})  # NaN marks "not applicable" in a table: allowed
    assert non_finite_outputs(r) == ["tensors.w"]
    r.tensors["w"] = torch.tensor([float("nan")])  # and in a tensor (the atlas's context padding)
    assert non_finite_outputs(r) == []
    model = load_model("tiny-llama")  # a private copy: this test breaks its weights
    name = next(iter(model.hf_params))
    with torch.no_grad():
        model.hf_params[name].fill_(float("nan"))
    with pytest.raises(InterpError, match="hold NaN or inf"):
        save_edit(model, Path("/nonexistent/never-written"), [name], "x")


DOCS = {
    "provenance is a list": lambda m: m.__setitem__("provenance", []),
    "a files entry is not [size, sha256]": lambda m: m["files"].__setitem__(next(iter(m["files"])), "x"),
    "metrics is a string": lambda m: m.__setitem__("metrics", "high"),
    "a table named as a path": lambda m: m.__setitem__("tables", ["../../x"]),
    "a file outside the run": lambda m: m["files"].__setitem__("../../etc/passwd", [1, "0" * 64]),
}


@pytest.mark.parametrize("what", DOCS)
def test_class4_a_stored_document_of_the_wrong_shape_is_a_damaged_run(capsys, monkeypatch, tmp_path, what):
    import json

    run = _stored(tmp_path)
    meta = json.loads((run / "result.json").read_text())
    DOCS[what](meta)
    (run / "result.json").write_text(json.dumps(meta))
    code, out, err = run_cli(capsys, monkeypatch, "runs", "--check", "--json")
    rows = strict(out.strip().splitlines()[-1])
    assert code == 0 and [r["path"] for r in rows] == [str(run)] and "Traceback" not in err
    code, out, err = run_cli(capsys, monkeypatch, "runs")
    assert code == 0 and "Traceback" not in err
    code, out, err = run_cli(capsys, monkeypatch, "card", "1.3", "-m", "tiny-llama")
    assert code == 0 and "Traceback" not in err


def _edit(tmp_path: Path, dtype: str = "float32") -> Path:
    from interp.models import load_model
    from interp.models.loading import save_edit

    model = load_model("tiny-llama", dtype=dtype)
    base_hash = model.weights_hash
    name = next(n for n in model.hf_params if "down_proj" in n)
    with torch.no_grad():
        model.hf_params[name].mul_(0.5)
    return save_edit(model, tmp_path / f"edit-{dtype}", [name], base_hash)


def test_class5_edit_directories_are_validated(tmp_path):
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    from interp.errors import InterpError
    from interp.models import load_model

    good = _edit(tmp_path)
    load_model(str(good))

    def variant(name: str, change) -> Path:
        d = tmp_path / name
        shutil.copytree(good, d)
        change(d)
        return d

    def meta(d: Path, **kw):
        m = json.loads((d / "interp_edit.json").read_text())
        m.update(kw)
        (d / "interp_edit.json").write_text(json.dumps(m))

    def weights(d: Path, fn):
        w = load_file(d / "edits.safetensors")
        fn(w)
        save_file(w, d / "edits.safetensors")

    cases = {
        "truncated": (lambda d: (d / "edits.safetensors").write_bytes((d / "edits.safetensors").read_bytes()[:40]),
                      "edits.safetensors is missing or damaged"),
        "itself": (lambda d: meta(d, base=str(d)), "names itself as its base"),
        "bad_json": (lambda d: (d / "interp_edit.json").write_text("{"), "is not valid JSON"),
        "no_base": (lambda d: meta(d, base=str(tmp_path / "gone")), "does not load"),
        "unknown": (lambda d: (meta(d, params=["model.nope.weight"]),
                               weights(d, lambda w: w.__setitem__("model.nope.weight", w.pop(next(iter(w)))))),
                    "which 'tiny-llama' does not have"),
        "shape": (lambda d: weights(d, lambda w: w.__setitem__(next(iter(w)), torch.zeros(2, 2))), "gives"),
        "nan": (lambda d: weights(d, lambda w: next(iter(w.values())).fill_(float("nan"))), "holds NaN or inf"),
    }
    for name, (change, expected) in cases.items():
        with pytest.raises(InterpError, match=expected):
            load_model(str(variant(name, change)))


def test_class5_an_edit_made_in_bfloat16_loads_in_float32_without_blaming_its_base(tmp_path):
    from interp.models import load_model

    edit = _edit(tmp_path, "bfloat16")
    model = load_model(str(edit), dtype="float32")
    assert model.dtype == torch.float32


def test_class6_paths_and_environment(capsys, monkeypatch, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").symlink_to(corpus / "b.txt")
    (corpus / "b.txt").symlink_to(corpus / "a.txt")  # a loop
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    cases = [
        (["atlas", "-m", "tiny-llama", "--corpus", str(corpus), "--tokens", "256"], "cannot read corpus file"),
        (["data", str(deep), "--kind", "facts"], "nested too deeply"),
        (["data", str(tmp_path), "--kind", "facts"], "is a folder"),
        (["graph", "-m", "tiny-llama", "--html", str(tmp_path)], "(that is a folder)"),
    ]
    for args, expected in cases:
        code, out, err = run_cli(capsys, monkeypatch, *args)
        _one_error(code, out, err, expected)
    from transformers import MambaConfig, MambaForCausalLM

    from interp.models.tiny import byte_tokenizer

    ssm = tmp_path / "mamba"  # a state-space model: no MLP in any layer
    config = MambaConfig(vocab_size=259, hidden_size=32, num_hidden_layers=2, state_size=4)
    MambaForCausalLM(config).save_pretrained(ssm)
    byte_tokenizer().save_pretrained(ssm)
    code, out, err = run_cli(capsys, monkeypatch, "info", "-m", str(ssm))
    _one_error(code, out, err, "has no MLP in layer(s) [0, 1]")
    monkeypatch.setenv("INTERP_HOME", "/dev/null/x")  # a home that cannot be written: the cache cannot be built
    code, out, err = run_cli(capsys, monkeypatch, "info", "-m", "gemma3-270m")
    _one_error(code, out, err, "cannot write interp's cache")
    monkeypatch.setenv("INTERP_MEMORY_LIMIT", "1.2.3GB")
    code, out, err = run_cli(capsys, monkeypatch, "graph", "-m", "tiny-llama", "--dry-run")
    _one_error(code, out, err, "INTERP_MEMORY_LIMIT='1.2.3GB' is not a size")


def test_class7_a_long_facts_file_is_scored_only_as_far_as_needed(tiny_llama):
    from interp.datasets.prompts import Fact
    from interp.metrics import score_facts

    with torch.no_grad():
        answer = tiny_llama.token_str(int(tiny_llama(tiny_llama.to_tokens("abc"))[0, -1].argmax()))
    facts = [Fact(prompt="abc", subject="ab", answer=answer, relation="r") for _ in range(500)]  # all answered
    assert len(score_facts(tiny_llama, facts, want=1)) == 32  # one batch, not the whole file
    assert len(score_facts(tiny_llama, facts, want=40)) == 64
    assert len(score_facts(tiny_llama, facts[:50])) == 50  # nothing wanted in particular: every fact


def test_class8_hints_signals_and_control_bytes(capsys, monkeypatch, tmp_path):
    import subprocess
    import sys
    import time

    code, out, err = run_cli(capsys, monkeypatch, "info", "-m", "")
    _one_error(code, out, err, "no model spec given")
    esc_name = tmp_path / "bad\x1b[31mname.jsonl"
    code, out, err = run_cli(capsys, monkeypatch, "data", str(esc_name), "--kind", "facts")
    _one_error(code, out, err, "\\x1b[31mname")
    assert "\x1b" not in err
    code, out, err = run_cli(capsys, monkeypatch, "top-neurons", "-m", "tiny-llama", "-p", "ab\x1b[2Jcd")
    assert code == 0 and "\x1b" not in out and "\\x1b[2J" in out  # the prompt, echoed, clears no screen
    from interp.metrics import dla_tolerance
    assert dla_tolerance(10.0, torch.bfloat16) > 10 * dla_tolerance(10.0)  # rounding, not the architecture
    # SIGTERM (Slurm, docker stop) ends a long command as Ctrl-C does: one line saying what was saved, 143
    env = {**__import__("os").environ, "INTERP_RUNS": str(tmp_path / "runs"),
           "INTERP_ATLAS_THROTTLE_S": "0.2"}  # long enough to be stopped mid-run, however fast the atlas gets
    proc = subprocess.Popen([sys.executable, "-m", "interp.cli", "atlas", "-m", "tiny-llama", "--corpus",
                             "stdlib-docs", "--tokens", "2000000"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(12)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-400:]
    assert err.strip().splitlines()[-1].startswith("error: interrupted") and "Traceback" not in err


# --- property-based: random documents and values; each outcome is a result or one InterpError -----------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                 max_size=4), max_leaves=20)
KEYS = ["format", "analysis", "run_id", "config", "provenance", "metrics", "notes", "tables", "tensors",
        "non_finite", "files"]
DOC = st.one_of(JSON, st.fixed_dictionaries({}, optional={k: JSON for k in KEYS}),
                st.fixed_dictionaries({"analysis": st.sampled_from(["top_neurons", "../x", "a b"]),
                                       "run_id": st.text(max_size=30), "config": JSON, "provenance": JSON,
                                       "metrics": JSON, "tables": JSON, "tensors": JSON},
                                      optional={"files": JSON, "non_finite": JSON, "notes": JSON}))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=DOC)
def test_any_stored_document_is_read_or_refused_in_one_line(tmp_path_factory, doc):
    import json

    from interp.errors import InterpError
    from interp.storage import damaged_runs, list_runs, load_result
    from interp.storage.results import verify_run

    root = tmp_path_factory.mktemp("store")
    run = root / "top_neurons" / "20260101-000000-tiny-llama-abcdef"
    (run / "tables").mkdir(parents=True)
    (run / "result.json").write_text(json.dumps(doc))
    try:
        load_result(run)
    except InterpError:
        pass
    assert isinstance(verify_run(run), list)
    assert all(p.startswith(str(root)) for p, _ in damaged_runs(root))
    import os

    old = os.environ.get("INTERP_RUNS")
    os.environ["INTERP_RUNS"] = str(root)
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            list_runs()
    finally:
        os.environ["INTERP_RUNS"] = old or ""


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=12))
def test_memory_limits_parse_or_refuse(text):
    from interp.errors import InterpError
    from interp.scale.preflight import parse_size

    try:
        assert parse_size(text) >= 0
    except InterpError as exc:
        assert "INTERP_MEMORY_LIMIT" in str(exc)


VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                   st.lists(st.integers(), max_size=3), st.lists(st.text(max_size=4), max_size=3))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_every_config_field_takes_a_value_or_refuses_it(data):
    from interp.analyses.base import discover
    from interp.errors import InterpError
    from interp.result import CONFIGS

    discover()
    name = data.draw(st.sampled_from(sorted(CONFIGS)))
    fields = [f.name for f in __import__("dataclasses").fields(CONFIGS[name])]
    options = data.draw(st.dictionaries(st.sampled_from(fields), VALUES, max_size=3))
    try:
        CONFIGS[name].from_dict(options)
    except InterpError:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.text(max_size=12))
def test_prune_with_any_analysis_name_never_touches_the_neighbours(tmp_path_factory, name):
    from interp.errors import InterpError
    from interp.storage import damaged_runs

    root = tmp_path_factory.mktemp("p")
    (root / "neighbour").mkdir()
    (root / "neighbour" / "result.json").write_text("{")
    store = root / "runs"
    store.mkdir()
    try:
        found = damaged_runs(store, analysis=name)
    except InterpError:
        found = []
    assert all(p.startswith(str(store)) for p, _ in found)
    assert (root / "neighbour" / "result.json").read_text() == "{"


@settings(max_examples=100, deadline=None)
@given(device=st.text(max_size=10), dtype=st.text(max_size=10))
def test_device_and_dtype_parse_or_refuse(device, dtype):
    from interp.errors import InterpError
    from interp.models.loading import _check_device, resolve_dtype

    for fn, value in ((_check_device, device), (resolve_dtype, dtype)):
        try:
            fn(value)
        except InterpError:
            pass
