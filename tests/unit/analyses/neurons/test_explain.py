"""Neuron explanations: the scores against brute-force loops, a planted neuron end to end, the split, the
LLM endpoint against a stub server, and bad input."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pandas as pd
import pytest
import torch

from interp.analyses.base import run
from interp.analyses.neurons import llm
from interp.analyses.neurons.scoring import auroc, average_precision, pearson
from interp.errors import InterpError

# --- the metrics against brute force ----------------------------------------------------------------------


def _ap_loop(score, label):
    """AUPRC by thresholds: for each distinct score (high to low), recall gained times precision there."""
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(score.tolist()), reverse=True):
        sel = score >= t
        tp = (label & sel).sum()
        recall, precision = tp / label.sum(), tp / sel.sum()
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    return ap


def test_metrics_match_brute_force_loops():
    g = torch.Generator().manual_seed(0)
    score = torch.randint(0, 5, (200, 6), generator=g).float()  # many ties
    label = torch.rand(200, 6, generator=g) < 0.2 + 0.1 * score / 5
    ap = average_precision(score, label)
    for j in range(6):
        assert ap[j].item() == pytest.approx(_ap_loop(score[:, j].numpy(), label[:, j].numpy()), abs=1e-6)
        assert pearson(score, label.float())[j].item() == pytest.approx(
            np.corrcoef(score[:, j].numpy(), label[:, j].float().numpy())[0, 1], abs=1e-5)
    pos, neg = torch.randn(6, 30, generator=g).round(), torch.randn(6, 50, generator=g).round()
    pm, nm = torch.rand(6, 30, generator=g) < 0.7, torch.rand(6, 50, generator=g) < 0.8
    got = auroc(pos + 0.5, pm, neg, nm)
    for j in range(6):
        p, n = (pos[j] + 0.5)[pm[j]], neg[j][nm[j]]
        wins = sum((a > b) + 0.5 * (a == b) for a in p.tolist() for b in n.tolist())
        assert got[j].item() == pytest.approx(wins / (len(p) * len(n)), abs=1e-6)
    assert pearson(torch.ones(10, 1), torch.randn(10, 1)).item() == 0.0  # a constant prediction scores 0
    assert average_precision(torch.randn(10, 1), torch.zeros(10, 1, dtype=torch.bool)).isnan().all()


# --- a planted neuron, end to end ---------------------------------------------------------------------------

PLANT = (0, 5)


@pytest.fixture(scope="module")
def planted():
    """tiny-llama with neuron 0.5 firing exactly on the byte 'e' (its own embedding direction, no attention
    output in layer 0), and an atlas of it."""
    from interp.models.model import Model
    from interp.models.tiny import build_tiny

    hf, tok = build_tiny("tiny-llama", seed=3)
    target = tok.convert_tokens_to_ids("e")
    with torch.no_grad():
        emb = hf.model.embed_tokens.weight
        emb[:, 0] = 0.0
        emb[target] = 0.0
        emb[target, 0] = 1.0
        hf.model.layers[0].self_attn.o_proj.weight.zero_()
        mlp = hf.model.layers[0].mlp
        mlp.gate_proj.weight[PLANT[1]] = 0.0
        mlp.up_proj.weight[PLANT[1]] = 0.0
        mlp.gate_proj.weight[PLANT[1], 0] = 2.0
        mlp.up_proj.weight[PLANT[1], 0] = 1.0
    model = Model.wrap("tiny-planted", "tiny-planted", hf.requires_grad_(False), tok, source="test")
    return model, target


def test_a_planted_neuron_is_named_and_scores_near_one(planted, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_HOME", str(tmp_path / "home"))
    model, target = planted
    atlas = run("neuron_atlas", model, corpus="stdlib-docs", n_tokens=8192, seq_len=64, layers=(0,), k=10,
                checkpoint_every=0)
    ex = atlas.table("examples")
    ex = ex[ex.window >= 0]
    splits = ex.groupby("window", observed=True).split.nunique()
    assert (splits == 1).all()  # a window is in one split only: train and held-out never share an example
    assert set(ex.split.unique()) == {"train", "heldout"}
    assert (ex.which == "sample").any()
    r = run("neuron_explanations", model, layers=(0,), token_change=2, contexts=1, heldout_windows=8, seed=0)
    entries = r.table("entries")
    mine = entries[(entries.layer == PLANT[0]) & (entries.neuron == PLANT[1])]
    assert mine.sort_values("mass", ascending=False).token_id.iloc[0] == target
    s = r.table("scores").set_index(["layer", "neuron"]).loc[PLANT]
    assert s.iid_corr > 0.95 and s.auprc > 0.95 and s.detection_auroc > 0.95
    assert abs(s.iid_corr_random) < 0.3 and abs(s.iid_corr_shuffled) < 0.3  # against 1.0
    assert not s.flagged
    assert repr("e") in r.table("explanations").set_index(["layer", "neuron"]).loc[PLANT].label
    assert r.metrics["random_weights"]["weights_hash"] != model.weights_hash  # a model with other weights
    assert len(r.table("random_weights")) == model.d_mlp
    # the scores read held-out windows only
    held = r.metrics["heldout_tokens"]
    assert held == 8 * 64
    out = r.table("outputs")
    assert len(out) == 2 and out.output_precision_decoding.between(0, 1).all()


def test_an_atlas_without_samples_is_refused_by_name(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_HOME", str(tmp_path / "home"))
    with pytest.raises(InterpError, match="interp atlas -m tiny-llama"):
        run("neuron_explanations", tiny_llama, layers=(0,))
    with pytest.raises(InterpError, match="layer"):
        run("neuron_explanations", tiny_llama, layers=(7,))


# --- the LLM endpoint ---------------------------------------------------------------------------------------


class _Stub(BaseHTTPRequestHandler):
    answers: list = []
    requests: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        answer = type(self).answers[0]
        payload = answer if isinstance(answer, bytes) else json.dumps(
            {"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    server = HTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Stub.requests.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_the_endpoint_is_asked_once_then_cached(stub, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_HOME", str(tmp_path / "home"))
    _Stub.answers[:] = ['"the letter e."']
    explain = llm.endpoint(stub, "stub-model")
    msgs = llm.messages(["h<<e>>llo"], ["e"])
    assert explain(msgs) == ('"the letter e."', False)
    assert explain(msgs) == ('"the letter e."', True)  # a rerun makes no request
    assert len(_Stub.requests) == 1 and _Stub.requests[0]["model"] == "stub-model"
    assert llm.clean('"the letter e."') == "the letter e"
    assert llm.explanation_tokens("the letter E", {"e": [7], "letter": [9]}) == [7, 9]
    _Stub.answers[:] = [b"<html>not json</html>"]
    with pytest.raises(InterpError, match="not an OpenAI chat completion"):
        llm.endpoint(stub, "other")(msgs)


def test_the_llm_explainer_end_to_end_and_errors(planted, stub, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_HOME", str(tmp_path / "home"))
    model, _ = planted
    run("neuron_atlas", model, corpus="stdlib-docs", n_tokens=4096, seq_len=64, layers=(0,), k=5, checkpoint_every=0)
    _Stub.answers[:] = ["the letter e"]
    r = run("neuron_explanations", model, layers=(0,), token_change=0, random_weights=False, llm=stub,
            llm_neurons=200, heldout_windows=4)
    llm_scores = r.table("llm").set_index(["layer", "neuron"])
    assert llm_scores.loc[PLANT].explanation == "the letter e"
    assert llm_scores.loc[PLANT].iid_corr > 0.9  # the proxy simulator reads 'e' from the words
    n = len(_Stub.requests)
    run("neuron_explanations", model, layers=(0,), token_change=0, random_weights=False, llm=stub, llm_neurons=200,
        heldout_windows=4)
    assert len(_Stub.requests) == n  # every answer came from the cache
    with pytest.raises(InterpError, match="not reachable"):
        llm.endpoint("http://127.0.0.1:9/v1", "x")(llm.messages(["a"], ["a"]))
    with pytest.raises(InterpError, match="is not an endpoint"):
        run("neuron_explanations", model, layers=(0,), llm="ftp:/nowhere")


def test_the_cli_refuses_bad_input_in_one_line(capsys, monkeypatch, tmp_path):
    from tests.unit.cli.helpers import run_cli

    monkeypatch.setenv("INTERP_HOME", str(tmp_path / "home"))
    for args, words in ((["--layers", "9"], "layer 9 is out of range"), (["--llm", "not a url"], "is not an endpoint"),
                        ([], "interp atlas -m tiny-llama")):
        code, out, err = run_cli(capsys, monkeypatch, "explain", "-m", "tiny-llama", *args)
        assert code != 0 and words in err and "Traceback" not in err + out, err
        assert len(err.strip().splitlines()) == 1


def test_search_finds_a_neuron_by_token_and_label():
    from interp.analyses.neurons.read import search_explanations
    from interp.result import Result, UntypedConfig

    expl = pd.DataFrame({"layer": [0, 0], "neuron": [1, 2], "label": ["fires on ' France'", "fires on ' dog'"]})
    entries = pd.DataFrame({"layer": [0, 0], "neuron": [1, 2], "prev_id": [-1, -1], "token_id": [3, 4],
                            "weight": [1.0, 1.0]})
    scores = pd.DataFrame({"layer": [0, 0], "neuron": [1, 2], "iid_corr": [0.5, 0.9], "flagged": [False, False]})
    r = Result(analysis="neuron_explanations", config=UntypedConfig({}), provenance={},
               tables={"explanations": expl, "entries": entries, "scores": scores})
    vocab = ["a", "b", "c", " Paris", " dog"]
    assert search_explanations(r, "france", vocab).neuron.tolist() == [1]
    assert search_explanations(r, "paris", vocab).neuron.tolist() == [1]  # by a token it fires on
    assert search_explanations(r, "DOG", vocab).neuron.tolist() == [2]
    assert search_explanations(r, "cat", vocab).empty
