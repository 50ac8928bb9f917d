"""Sessions on one shared model stay apart, and pages show the store as it is now."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import interp
from interp.analyses.facts.factual_recall import FactualConfig
from interp.analyses.facts.factual_recall import run as decompose
from interp.datasets.prompts import Fact
from interp.models import load_model

APP = str(Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py")
FACT = ("The capital of Qrs is", "Qrs", " z")


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("INTERP_MODEL", "tiny-llama")
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path / "runs"))
    return tmp_path


def _page(path: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    return at.switch_page(path).run()


def test_a_mask_preview_does_not_leak_into_another_sessions_decomposition(env):
    interp.run("bigram_subnetworks", load_model("tiny-llama"), corpus="stdlib-docs", corpus_tokens=3000, steps=3,
               random_seeds=1, seq_len=32, checkpoint_every=0)
    alone = decompose(load_model("tiny-llama"), FactualConfig(only_correct=False, top_heads=5, batch_size=1),
                      facts=[Fact(*FACT, "custom")])  # an independent model instance: the reference
    bigram, factual = _page("views/bigram_subnetwork.py"), _page("views/factual_recall.py")
    errors = []

    def preview():
        try:
            for token in "abcdefgh":  # each token a fresh preview: the mask goes on and off the private model
                bigram.main.text_input[0].set_value(token).run()
                assert not bigram.exception and any("corpus bigram" in m.value for m in bigram.markdown)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=preview)
    thread.start()
    for label, value in zip(("Prompt", "Subject", "Answer"), FACT):
        next(t for t in factual.text_input if t.label == label).set_value(value)
    factual.run()
    thread.join(300)
    assert not errors and not factual.exception and not factual.error
    heads = factual.dataframe[0].value.reset_index(drop=True)
    want = alone.table("heads").sort_values("attn_to_subject", ascending=False).head(8)[heads.columns]
    pd.testing.assert_frame_equal(heads, want.reset_index(drop=True), check_exact=True)
    p = alone.table("facts").iloc[0].p_answer
    assert any(f"= **{p:.3f}**" in m.value for m in factual.markdown)


def test_a_resaved_run_shows_its_new_content(env):
    model = load_model("tiny-llama")
    result = interp.run("top_neurons", model, prompt="abc", save=False)
    result.notes = ["first version of this run"]
    path = interp.save_result(result, env / "runs" / "top_neurons" / "the-run")
    at = _page("views/runs.py")
    at.run()
    assert any("first version" in w.value for w in at.warning)
    result.notes = ["second version of this run"]
    interp.save_result(result, path)
    stat = os.stat(path / "result.json")
    os.utime(path / "result.json", (stat.st_atime, stat.st_mtime + 5))  # a later save, whatever the clock
    at.run()
    assert any("second version" in w.value for w in at.warning)
    assert not any("first version" in w.value for w in at.warning)
