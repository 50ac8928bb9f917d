"""The neuron card: a planted neuron shows its planted facts in every section; verify equals
`interp patch --method activation`; exports; bad input; diff."""

from __future__ import annotations

import json

import pytest
import torch

import interp
from interp.analyses.neurons.card import neuron_card, section_keys
from interp.analyses.neurons.read import diff_models, dose_response
from interp.analyses.patching.read import verify_patching
from interp.errors import InterpError
from interp.models import load_model
from tests.unit.cli.helpers import run_cli, strict

PAIRS = [{"clean": "QQab cd", "corrupt": "xxab cd", "answer": "Z", "wrong": "y"},
         {"clean": "a Q b Qc", "corrupt": "a x b xc", "answer": "Z", "wrong": "y"},
         {"clean": "Qhello Q", "corrupt": "xhello x", "answer": "Z", "wrong": "y"}]
TEXT = "The quick brown fox jumps over the lazy dog; Q marks the spot. " * 20
LAYER, INDEX = 1, 7


@pytest.fixture
def pairs(tmp_path) -> str:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return str(path)


@pytest.fixture
def planted():
    """tiny-llama whose neuron 1.7 reads the embedding of 'Q' (gate and up) and writes the unembedding
    of 'Z': it fires on 'Q', decodes to 'Z', and carries the Q -> Z pairs' effect."""
    model = load_model("tiny-llama")
    q, z = model.token_id("Q"), model.token_id("Z")
    w = model.weights
    with torch.no_grad():
        read = w.W_E[q] / w.W_E[q].norm() * 40
        w.W_gate[LAYER][INDEX] = read
        w.W_in[LAYER][INDEX] = read
        w.W_out[LAYER][:, INDEX] = w.W_U[:, z] / w.W_U[:, z].norm() * 4
    return model


def _store_everything(model, corpus, pairs):
    interp.run("lm_head_decoding", model, top_k=5)
    interp.run("neuron_atlas", model, corpus=corpus, n_tokens=1024, seq_len=32, batch_size=4, k=4,
               checkpoint_every=0)
    for method in ("attribution", "relp"):
        interp.run("patching", model, dataset=pairs, n=0, method=method, components=("neurons",))


def test_every_section_shows_the_planted_neuron(planted, pairs, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    _store_everything(planted, str(corpus), pairs)
    card = neuron_card(planted, f"{LAYER}.{INDEX}")
    assert list(card.sections) == section_keys()
    assert card["identity"].data["norms"]["out"]["ratio"] > 1  # planted weights are larger than the layer's median
    dec = card["decoding"].data
    assert dec["promoted"][0]["token"] == "Z"
    assert dec["inputs"]["gate+"][0]["token"] == "Q" and dec["inputs"]["up+"][0]["token"] == "Q"
    act = card["activations"].data
    top = act["contexts"]["top"][0]
    assert top["tokens"][top["center"]] == "Q" and top["activation"] == pytest.approx(act["stats"]["max"])
    assert set(act["quadrants"]) == {"g+u+", "g+u-", "g-u+", "g-u-"}
    assert sum(q["share"] for q in act["quadrants"].values()) == pytest.approx(1.0)
    runs = card["patching"].data["runs"]
    assert {r["method"] for r in runs} == {"attribution", "relp"}
    for r in runs:  # the planted neuron carries the Q -> Z effect: the top of its layer
        stored = interp.load_result(r["path"]).table("scores")
        mine = stored[(stored.component == "neurons") & (stored.layer == LAYER) & (stored.unit == INDEX)]
        assert r["score"] == pytest.approx(float(mine.score.mean())) and r["rank"] == 1
    for key in ("factual", "tracing", "unlearning", "bigram", "clamp"):
        assert not card[key].available and card[key].missing  # each says which command fills it
    data = json.loads(card.to_json())  # strict JSON with Neuronpedia's names
    assert data["pos_str"][0] == "Z" and data["layer"] == LAYER and data["index"] == INDEX
    assert len(data["freq_hist_data_bar_heights"]) == len(data["freq_hist_data_bar_values"])
    assert data["activations"][0]["maxValueTokenIndex"] == top["center"]

    from interp.viz.card import card_html

    table = dose_response(planted, [f"{LAYER}.{INDEX}"], "Z", [-8.0, 0.0, 8.0, 32.0])
    page = card_html(card, clamp=table, clamp_target="Z")
    assert page.count("<h2") == len(section_keys()) and "Plotly.newPlot" in page and "<script src=" not in page


def test_dose_response_rises_with_the_clamp_and_refuses_non_finite_values(planted):
    table = dose_response(planted, [f"{LAYER}.{INDEX}"], "Z", [0.0, 0.5, 1.0, 2.0, 4.0, 64.0])
    # rises, then saturates (the final RMSNorm caps how far one direction can push)
    assert table.dlogp.diff().dropna().min() > -1e-3 and table.dlogp.iloc[-1] > table.dlogp.iloc[0] + 0.5
    assert table.kl.iloc[-1] > table.kl.iloc[0] >= 0
    for bad in (float("nan"), float("inf")):
        with pytest.raises(InterpError, match="not a finite number"):
            dose_response(planted, [f"{LAYER}.{INDEX}"], "Z", [1.0, bad])


def test_verify_equals_interp_patch_activation(pairs, capsys, monkeypatch):
    model = load_model("tiny-llama")
    cheap = interp.run("patching", model, dataset=pairs, n=0, method="attribution", components=("neurons",),
                       save=False)
    out = verify_patching(model, f"{LAYER}.{INDEX}", cheap, k=3)
    assert INDEX in out["table"].neuron.tolist() and len(out["table"]) <= 4
    code, stdout, _ = run_cli(capsys, monkeypatch, "patch", "-m", "tiny-llama", "--dataset", pairs, "--n", "0",
                              "--method", "activation", "--components", "neurons", "--layers", str(LAYER),
                              "--json")
    assert code == 0
    full = interp.load_result(strict(stdout)["path"]).table("scores")
    mine = full[(full.component == "neurons") & (full.layer == LAYER) & (full.unit == INDEX)]
    assert out["neuron"]["activation"] == pytest.approx(float(mine.score.mean()), abs=1e-6)
    for row in out["table"].itertuples():  # the others too: patching a subset gives the full run's values
        assert row.activation == pytest.approx(float(full[(full.layer == LAYER) & (full.unit == row.neuron)]
                                                     .score.mean()), abs=1e-6)


def test_bad_input_is_one_clear_line(tiny_llama, tiny_gpt2, capsys, monkeypatch):
    with pytest.raises(InterpError, match="out of range"):
        neuron_card(tiny_llama, f"{LAYER}.{tiny_llama.d_mlp}")
    card = neuron_card(tiny_llama, "0.0")  # an empty store: every section says what to run
    assert all(s.missing for k, s in card.sections.items() if k != "identity")
    assert "interp decode -m tiny-llama" in card["decoding"].missing
    with pytest.raises(InterpError, match="do not line up"):
        diff_models(tiny_llama, tiny_gpt2)
    code, _, err = run_cli(capsys, monkeypatch, "card", "0.99999", "-m", "tiny-llama")
    assert code != 0 and "out of range" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, monkeypatch, "card", "0.1", "-m", "tiny-llama", "--clamp", "Z", "--values", "1,nan")
    assert code != 0 and "not a finite number" in err
    code, _, err = run_cli(capsys, monkeypatch, "card", "0.1", "-m", "tiny-llama", "--html", "/no/such/dir/c.html")
    assert code != 0 and "/no/such/dir does not exist" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, monkeypatch, "diff", "tiny-gpt2", "-m", "tiny-llama")
    assert code != 0 and "do not line up" in err


def test_diff_finds_the_edited_neurons(planted, tiny_llama):
    table = diff_models(tiny_llama, planted, k=3)
    assert (table.layer.iloc[0], table.neuron.iloc[0]) == (LAYER, INDEX)
    assert table.d_weights.iloc[0] > 1 and table.d_weights.iloc[1] == 0
    same = diff_models(tiny_llama, tiny_llama, k=0)  # k=0: every neuron; a model against itself changed nowhere
    assert len(same) == tiny_llama.n_layers * tiny_llama.d_mlp and (same.d_weights == 0).all()


def test_card_cli_json_and_html(pairs, tmp_path, capsys, monkeypatch):
    interp.run("lm_head_decoding", load_model("tiny-llama"), top_k=5)
    html = tmp_path / "card.html"
    code, stdout, _ = run_cli(capsys, monkeypatch, "card", "1.7", "-m", "tiny-llama", "--json", "--html", str(html),
                              "--clamp", "Z", "--values", "-4,0,4")
    data = strict(stdout)
    assert code == 0 and data["sections"]["decoding"]["available"] and data["sections"]["clamp"]["available"]
    assert len(data["sections"]["clamp"]["data"]["sweep"]) == 3 and html.read_text().startswith("<!doctype html>")
    code, stdout, _ = run_cli(capsys, monkeypatch, "card", "1.7", "-m", "tiny-llama")
    assert code == 0 and "Decoding (LM head): promotes" in stdout and "interp atlas -m tiny-llama" in stdout
