"""Streamlit AppTest: every page runs without exceptions; bad input gets a message.

The pages run on tiny-llama (INTERP_MODEL) so the test is fast; the real-browser
test in test_browser.py uses the embedded model."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py")
PAGES = ["views/runs.py", "views/neuron_explorer.py", "views/neuron_card.py", "views/lm_head_decoding.py",
         "views/neuron_atlas.py", "views/patching.py", "views/factual_recall.py", "views/causal_tracing.py",
         "views/bigram_subnetwork.py", "views/circuit.py"]


def finish_jobs(app):
    """Wait for the dashboard's background jobs, then rerun the page (the job panel shows how they ended)."""
    import state  # the app's own module, imported by AppTest in this process

    for job in list(state._workbench("tiny-llama").jobs.jobs.values()):
        job.wait(120)
    app.run()
    return app


@pytest.fixture
def app(monkeypatch, tmp_path):
    monkeypatch.setenv("INTERP_MODEL", "tiny-llama")
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    return at


def explorer(app):
    """The explorer on a model whose decoding is stored: the page offers the build first (a job), so build it."""
    app.switch_page("views/neuron_explorer.py").run()
    build = [b for b in app.button if b.label == "Build the LM-head decoding of every neuron"]
    if build:
        build[0].click().run()
        finish_jobs(app)
    return app


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs(app, page):
    app.switch_page(page).run()
    assert not app.exception, [e.value for e in app.exception]


def test_runs_page_lists_the_decoding(app):
    app.switch_page("views/neuron_explorer.py").run()  # no decoding stored: the page offers the build, builds nothing
    assert not list((Path(os.environ["INTERP_RUNS"]) / "lm_head_decoding").glob("[!.]*"))
    assert any("Building it takes about" in str(i.value) for i in app.info), [i.value for i in app.info]
    build = next(b for b in app.button if b.label == "Build the LM-head decoding of every neuron")
    build.click().run()  # a job (progress, Cancel); stored when it ends
    finish_jobs(app)
    app.switch_page("views/runs.py").run()
    assert not app.exception
    assert any("lm_head_decoding · " in str(s.format_func(s.value)) for s in app.selectbox if s.label == "Open a run")


def test_explorer_token_search_and_bad_inputs(app):
    explorer(app)
    assert not app.exception and not app.error
    app.text_input(key="token_query").set_value("ab").run()  # two byte tokens
    assert any("not a single token" in e.value for e in app.error)
    app.text_input(key="token_query").set_value("a").run()
    app.text_input(key="neuron").set_value("7.3").run()
    assert any("layer 7 is out of range" in e.value for e in app.error)
    app.text_input(key="neuron").set_value("1.3").run()
    assert not app.error
    assert any("Neuron 1.3" in s.value for s in app.subheader)


def test_explorer_clamp_box(app):
    explorer(app)
    prompt, value = app.text_input(key="clamp-prompt"), app.text_input(key="clamp-value")
    run = next(b for b in app.button if b.label == "Run")
    prompt.set_value("hello")
    value.set_value("nan")
    run.click().run()
    assert any("finite" in e.value for e in app.error)
    app.text_input(key="clamp-prompt").set_value("   ")
    app.text_input(key="clamp-value").set_value("3")
    next(b for b in app.button if b.label == "Run").click().run()
    assert any("prompt is empty" in e.value for e in app.error)
    app.text_input(key="clamp-prompt").set_value("hello")
    next(b for b in app.button if b.label == "Run").click().run()
    assert not app.error and not app.exception
    assert any("Clamped" in h.proto.body for h in app.get("html"))  # escaped HTML, never markdown


def test_explorer_shows_the_atlas(app, monkeypatch):
    import interp
    from interp.models import load_model

    interp.run("neuron_atlas", load_model("tiny-llama"), corpus="stdlib-docs", n_tokens=512, seq_len=64, k=3,
               checkpoint_every=0)
    explorer(app)
    assert not app.exception and not app.error
    assert any("What makes it fire" in s.value for s in app.subheader)
    assert any("Top activations" in m.value for m in app.markdown)
    app.switch_page("views/neuron_atlas.py").run()
    assert not app.exception and not app.error
    assert any("Neurons most active on this text" in s.value for s in app.subheader)


def test_patching_page_compares_methods_and_lists_neurons(app, tmp_path):
    import interp
    from interp.models import load_model

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"clean": "abcdefgh", "corrupt": "abxdefgh", "answer": "a", "wrong": "b"}\n'
                     '{"clean": "hello wo", "corrupt": "jello wo", "answer": "r", "wrong": "x"}\n')
    model = load_model("tiny-llama")
    for method in ("activation", "attribution", "relp"):
        interp.run("patching", model, dataset=str(pairs), method=method, components=["resid", "mlp_out", "heads"])
    app.switch_page("views/patching.py").run()
    assert not app.exception and not app.error
    assert any("Faithfulness" in s.value for s in app.subheader)
    shown = app.dataframe[0].value
    assert set(shown.method) == {"attribution", "relp"} and set(shown.component) == {"resid", "mlp_out", "heads"}
    app.main.button[-1].click().run()  # score the last layer's neurons with RelP (a background job)
    finish_jobs(app)
    assert not app.exception and not app.error
    assert any("/neuron?model=tiny-llama&neuron=1." in m.value for m in app.markdown)  # links open the card


def test_patching_page_reports_bad_dataset(app):
    app.switch_page("views/patching.py").run()
    assert any("No patching runs" in i.value for i in app.info)
    app.main.button[0].click().run()  # the form's Run: ioi is not possible with a byte tokenizer
    finish_jobs(app)
    assert any("too few IOI words" in e.value for e in app.error)


def test_factual_page_one_fact_and_dataset(app, tmp_path):
    import interp
    from interp.models import load_model

    app.switch_page("views/factual_recall.py").run()
    assert not app.exception and not app.error
    assert any("No factual-recall run" in i.value for i in app.info)
    subject = next(t for t in app.text_input if t.label == "Subject")
    subject.set_value("Spain").run()
    assert any("not in the prompt" in e.value for e in app.error)
    facts = tmp_path / "facts.jsonl"
    facts.write_text('{"prompt": "The capital of Abc is", "subject": "Abc", "answer": " x", "relation": "c"}\n')
    interp.run("factual_recall", load_model("tiny-llama"), facts=str(facts), only_correct=False)
    subject.set_value("France").run()
    assert not app.exception and not app.error
    assert any("Over a facts set" in s.value for s in app.subheader)
    assert any("/neuron?model=tiny-llama&neuron=" in m.value for m in app.markdown)


def test_causal_tracing_page(app, tmp_path):
    import json

    import torch

    import interp
    from interp.models import load_model

    model = load_model("tiny-llama")
    rows = []
    for p in ["The capital of Abc is", "Home of Qrs: the", "Zed lives in", "Where is Wuv? In"]:
        with torch.no_grad():
            top = int(model(model.to_tokens(p))[0, -1].argmax())
        rows.append({"prompt": p, "subject": p.split()[-2] if p.startswith("The") else p.split()[0].rstrip("?"),
                     "answer": model.token_str(top), "relation": "r"})
    rows[0]["subject"] = "Abc"
    rows[1]["subject"] = "Qrs"
    rows[3]["subject"] = "Wuv"
    forget, retain = tmp_path / "f.jsonl", tmp_path / "r.jsonl"
    forget.write_text("\n".join(json.dumps(r) for r in rows[:2]))
    retain.write_text("\n".join(json.dumps(r) for r in rows[2:]))
    app.switch_page("views/causal_tracing.py").run()
    assert not app.exception and any("No causal-tracing run" in i.value for i in app.info)
    interp.run("causal_tracing", model, facts=str(forget), samples=2)
    interp.run("unlearning", model, forget=str(forget), retain=str(retain), layers=[0], steps=2,
               corpus_tokens=256, seq_len=32)
    app.switch_page("views/causal_tracing.py").run()
    assert not app.exception and not app.error
    bodies = [h.proto.body for h in app.get("html")]  # escaped HTML, never markdown
    assert any("original" in b for b in bodies) and any("constrained" in b for b in bodies)


def test_bigram_page(app):
    import interp
    from interp.models import load_model

    app.switch_page("views/bigram_subnetwork.py").run()
    assert not app.exception and any("No bigram-subnetwork run" in i.value for i in app.info)
    interp.run("bigram_subnetworks", load_model("tiny-llama"), corpus="stdlib-docs", corpus_tokens=3000, steps=3,
               random_seeds=1, seq_len=32, checkpoint_every=0)
    app.switch_page("views/bigram_subnetwork.py").run()
    assert not app.exception and not app.error
    assert any("corpus bigram" in md.value for md in app.markdown)
    app.main.text_input[0].set_value("ab").run()
    assert any("not a single token" in e.value for e in app.error)


def test_the_model_picker_switches_model_and_names_a_bad_spec(app):
    """The sidebar lists the embedded models and takes any spec; the choice is the session's and in the URL."""
    picker = next(s for s in app.sidebar.selectbox if s.label == "Model")
    assert list(picker.options)[:2] == ["smollm2-135m", "gemma3-270m"] and picker.value == "another model…"
    app.sidebar.text_input[0].set_value("tiny-gpt2").run()
    assert not app.exception
    assert any("Model: `tiny-gpt2`" in c.value for c in app.caption)
    assert app.query_params.get("model") in ("tiny-gpt2", ["tiny-gpt2"])
    app.sidebar.text_input[0].set_value("no-such-model").run()
    assert any("unknown model spec 'no-such-model'" in e.value for e in app.error)
    assert not app.exception


def test_neuron_card_page_shows_every_section_and_says_what_to_run(app):
    page = app.switch_page("views/neuron_card.py").run()
    page.text_input(key="card_neuron").set_value("1.7").run()
    assert not page.exception, [e.value for e in page.exception]
    bodies = [h.proto.body for h in page.get("html")]
    # the stored sections are drawn as HTML blocks, each under its anchored heading; the page's own actions after
    headings = re.findall(r"<h2 id='[a-z_]+'>([^<]+)</h2>", "".join(bodies))
    assert headings == ["Identity", "What it does (explanation)", "Decoding (LM head)", "Activations",
                        "Patching", "Factual recall", "Causal tracing", "In stored graphs", "Unlearning edits",
                        "Bigram subnetwork"], headings
    assert [h.value for h in page.header] == ["Clamp, verify and share"]
    assert any("Not computed yet" in b and "interp atlas -m tiny-llama" in b for b in bodies)  # no atlas stored
    # the actions: none drawn until chosen, then only the chosen one's widgets
    assert page.button_group(key="card_action").value is None
    labels = {b.label for b in page.button}
    assert not labels & {"Generate with the clamp held", "Run the dose-response", "Diff"}, labels
    for action, button in (("Dose-response", "Run the dose-response"), ("Diff against a model", "Diff"),
                           ("Generate with a clamp", "Generate with the clamp held")):
        page.button_group(key="card_action").set_value(action).run()
        assert not page.exception, (action, [e.value for e in page.exception])
        labels = {b.label for b in page.button}
        assert button in labels and not labels & ({"Run the dose-response", "Diff"} - {button}), (action, labels)
    page.text_input(key="generate-value").set_value("5")
    next(b for b in page.button if b.label == "Generate with the clamp held").click().run()
    assert any("Clamped to 5:" in h.proto.body for h in page.get("html")) and not page.exception
    page.text_input(key="card_neuron").set_value("1.99999").run()
    assert any("out of range" in e.value for e in page.error) and not page.exception


def test_circuit_page_draws_a_stored_graph_and_links_its_neurons(app):
    from interp.analyses.base import run
    from interp.models import load_model

    run("neuron_graph", load_model("tiny-llama"), prompt="abcdefghij", max_nodes=40, candidates=200, batch_size=16,
        verify=True, verify_top=4, reference_tokens=256)
    app.switch_page("views/circuit.py").run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("neurons kept" in m.label for m in app.metric)
    assert any(s.label == "Graph" for s in app.selectbox)
    assert any("Verification" in h.value for h in app.subheader)
    app.toggle[0].set_value(True).run()  # the other nodes drawn too
    assert not app.exception
