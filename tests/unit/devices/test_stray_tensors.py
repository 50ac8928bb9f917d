"""Device mixing caught on the CPU: every analysis runs with torch's default device set to ``meta``.

A tensor an analysis makes without naming its device is made on the CPU, beside a GPU model's tensors: the
mistake that fails only on a GPU (issue 29 found one in factual recall). Here the model loads on the CPU as
usual, then every tensor made without a device lands on ``meta``, which holds no data, so one that meets the
model's tensors, is moved, or is read fails at once, on the CPU. Host bookkeeping names ``device="cpu"``.
``INTERP_STRAY_DEVICE=meta`` is the same switch for any CLI command (``interp.commands.common.load``)."""

from __future__ import annotations

import json

import pytest
import torch

import interp
from interp.analyses.neurons.atlas import AtlasConfig
from interp.analyses.patching import causal_tracing, engine
from interp.analyses.patching.causal_tracing import TraceConfig
from tests.unit.analyses.facts.test_unlearning import known_items, write
from tests.unit.analyses.patching.test_faithfulness import PAIRS as PAIR_ROWS
from tests.unit.scale.test_sweep import PAIRS, _known


def _atlas(model, tmp_path):
    (tmp_path / "c.txt").write_text("Neurons fire on some tokens and not on others. " * 40)
    config = AtlasConfig(corpus=str(tmp_path / "c.txt"), n_tokens=512, seq_len=32, batch_size=4, k=4,
                         checkpoint_every=2)
    interp.run("neuron_atlas", model, config)
    interp.run("neuron_explanations", model, layers=(0,), token_change=2, contexts=1, heldout_windows=4, seed=0,
               save=False)


def _patching(model, tmp_path):
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIR_ROWS))
    opts = dict(dataset=str(tmp_path / "pairs.jsonl"), n=3, components=("mlp_out",))
    for method in ("activation", "attribution", "relp"):  # stored for faithfulness, and on every component
        interp.run("patching", model, method=method, **opts)
        engine.run(model, engine.PatchingConfig(method=method, components=("resid", "heads", "neurons"),
                                                checkpoint_every=0), pairs=PAIRS)
    interp.run("faithfulness", model, n_boot=20, spearman_boot=10, **opts)
    interp.run("neuron_faithfulness", model, dataset=opts["dataset"], n=3, n_random=2, top_k=2, n_boot=20,
               spearman_boot=10, batch_rows=40, save=False)


def _facts(model, tmp_path):
    items = known_items(model)
    forget, retain = write(tmp_path / "forget.jsonl", items[:3]), write(tmp_path / "retain.jsonl", items[3:])
    interp.run("factual_recall", model, facts=retain, only_correct=False, top_heads=3, save=False)
    interp.run("unlearning", model, forget=forget, retain=retain, layers=[0], steps=2, lr=1e-2,
               target_forget_acc=0.0, corpus_tokens=256, seq_len=32, save=False)
    causal_tracing._trace_sweep(model, TraceConfig(samples=2, checkpoint_every=0), _known(model))
    rows = [json.loads(line) for line in open(retain)] * 4
    (tmp_path / "facts.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    interp.run("factual_fix", model, facts=str(tmp_path / "facts.jsonl"), k=2, corpus_tokens=256, seq_len=32,
               save=False)


JOBS = {
    "atlas and explanations": _atlas,
    "decoding, top neurons, clamping, concept": lambda model, _: (
        interp.run("lm_head_decoding", model, top_k=5),
        interp.run("top_neurons", model, prompt="hello there", save=False),
        interp.run("clamp", model, neurons=("1.7",), value=10.0, prompts=("ab",), targets=("Z",), generate=3,
                   save=False),
        interp.run("concept", model, concept="a", save=False)),
    "patching, faithfulness": _patching,
    "factual recall, unlearning, tracing, the fix": _facts,
    "bigram subnetworks and surprisal": lambda model, _: interp.run(
        "bigram_surprisal", model, heldout_tokens=512, random_seeds=1,
        subnetwork=str(interp.run("bigram_subnetworks", model, corpus="stdlib-docs", corpus_tokens=3000, steps=2,
                                  batch_size=4, seq_len=32).path)),
    "neuron graph, verified": lambda model, _: interp.run(
        "neuron_graph", model, save=False, verify=True, verify_top=5, reference_tokens=256, prompt="abcdefghij",
        max_nodes=40, candidates=200, batch_size=16),
}


@pytest.mark.parametrize("job", JOBS)
def test_no_analysis_makes_a_tensor_off_its_device(job, tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("INTERP_HOME", str(tmp_path / "home"))
    with torch.device("meta"):
        JOBS[job](tiny_llama, tmp_path)


def test_a_planted_stray_tensor_fails_on_the_cpu(tiny_llama):
    """The check's own defect: a bias made without a device, added to the model's logits."""
    tokens = tiny_llama.to_tokens("abc")
    with torch.device("meta"), pytest.raises((RuntimeError, NotImplementedError)):
        float((tiny_llama(tokens) + torch.zeros(tiny_llama.d_vocab)).sum())


def test_the_cli_switch_puts_stray_tensors_on_meta(capsys, monkeypatch, tmp_path):
    """``INTERP_STRAY_DEVICE=meta``: a command runs as usual (its tensors all name a device) with the default
    device set after its model loads."""
    from tests.unit.cli.helpers import run_cli

    monkeypatch.setenv("INTERP_RUNS", str(tmp_path))
    monkeypatch.setenv("INTERP_STRAY_DEVICE", "meta")
    try:
        code, out, err = run_cli(capsys, monkeypatch, "top-neurons", "-m", "tiny-llama", "--prompt", "abc", "--json")
        assert torch.empty(0).device.type == "meta"  # the switch took effect
    finally:
        torch.set_default_device(None)
    assert code == 0, err
    assert json.loads(out)["analysis"] == "top_neurons"


def test_a_bad_switch_value_is_one_error_naming_it(capsys, monkeypatch, tmp_path):
    from tests.unit.cli.helpers import run_cli

    monkeypatch.setenv("INTERP_RUNS", str(tmp_path))
    monkeypatch.setenv("INTERP_STRAY_DEVICE", "bogus")
    code, out, err = run_cli(capsys, monkeypatch, "top-neurons", "-m", "tiny-llama", "--prompt", "abc")
    assert code == 2 and err.strip().splitlines() == ["error: INTERP_STRAY_DEVICE='bogus' is not a torch device: "
                                                      "set it to meta (the device-mixing check) or unset it"]
    assert torch.empty(0).device.type == "cpu" and not list(tmp_path.glob("*/*"))  # nothing set, nothing stored
