"""Neuron graphs: the stored graph conserves, pruning keeps what it says, verification and exports hold."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from interp.analyses.base import run
from interp.analyses.circuits.prune import cut_at
from interp.analyses.circuits.read import conservation, shown, to_graph_json

SMALL = dict(prompt="abcdefghij", max_nodes=40, candidates=200, batch_size=16)


@pytest.fixture(scope="module")
def graph(tiny_llama):
    return run("neuron_graph", tiny_llama, save=False, verify=True, verify_top=5, reference_tokens=256, **SMALL)


def test_stored_graph_conserves_and_a_perturbed_edge_does_not(graph):
    gaps = conservation(graph)
    scale = graph.table("edges").weight.abs().groupby(graph.table("edges").target).sum()
    assert (gaps.gap.abs() <= 1e-4 * np.maximum(scale.reindex(gaps.index).fillna(1.0), 1.0)).all()
    edges = graph.table("edges").copy()
    edges.loc[edges.index[0], "weight"] += 0.1 * max(1.0, abs(edges.weight.iloc[0]))
    graph.tables["edges"], saved = edges, graph.tables["edges"]
    try:
        assert conservation(graph).gap.abs().max() > 1e-2
    finally:
        graph.tables["edges"] = saved


def test_no_dangling_neuron_survives(graph):
    nodes, edges = graph.table("nodes"), graph.table("edges")
    kept = nodes[nodes.kind == "neuron"].node
    assert len(kept) > 0
    on = edges[edges.shown]
    assert set(kept) <= set(on.source) and set(kept) <= set(on.target)
    assert graph.metrics["n_edges"] == int(on.shape[0])
    assert 0 <= graph.metrics["replacement"] <= 1 and 0 <= graph.metrics["completeness"] <= 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=200), st.floats(0.01, 1.0))
def test_threshold_keeps_at_least_its_share(scores, share):
    s = torch.tensor(scores, dtype=torch.float64)
    if float(s.sum()) == 0:
        assert cut_at(s, share) == float("inf")
        return
    kept = s[s >= cut_at(s, share)].sum() / s.sum()
    assert float(kept) >= share - 1e-9


def test_verification_tables(graph):
    ko, fc = graph.table("knockouts"), graph.table("faithfulness")
    assert len(ko) == 3 * 5 and set(ko["mode"]) == {"mean", "zero", "nudge"}
    clean = fc[fc.kind == "top"].set_index("x").faithfulness
    assert clean[100] == pytest.approx(1.0)
    assert len(fc[fc.kind == "half"]) == 5
    for key in ("knockout_pearson", "knockout_sign_agreement", "faithfulness_graph"):
        assert key in graph.metrics


def test_graph_json_follows_circuit_tracer(graph):
    doc = to_graph_json(graph, {(0, 1): "label"})
    assert set(doc) == {"metadata", "qParams", "nodes", "links"}
    ids = [n["node_id"] for n in doc["nodes"]]
    assert len(ids) == len(set(ids))
    assert {link["source"] for link in doc["links"]} | {link["target"] for link in doc["links"]} <= set(ids)
    kinds = {n["feature_type"] for n in doc["nodes"]}
    assert {"mlp neuron", "embedding", "logit"} <= kinds
    json.dumps(doc, allow_nan=False)


def test_html_export_is_self_contained_and_escaped(tiny_llama, tmp_path):
    from interp.viz.graph import export_html

    r = run("neuron_graph", tiny_llama, save=False, **(SMALL | {"prompt": "<script>alert(1)</script>xy"}))
    page = export_html(r, tmp_path / "g.html").read_text()
    assert "<script>alert(1)</script>" not in page
    assert 'src="http' not in page and "src='http" not in page
    assert len(shown(r)[0]) > 0


def test_card_shows_the_graphs_a_neuron_is_in(tiny_llama):
    from interp.analyses.neurons.card import neuron_card

    graph = run("neuron_graph", tiny_llama, **SMALL)  # stored in this test's runs folder
    node = graph.table("nodes").query("kind == 'neuron'").nlargest(1, "influence").iloc[0]
    card = neuron_card(tiny_llama, f"{int(node.layer)}.{int(node.neuron)}")
    section = card["graphs"]
    assert section.available
    assert section.data["graphs"][0]["prompt"] == SMALL["prompt"]


def test_zero_kept_neurons_is_one_clear_error(tiny_llama):
    from interp.errors import InterpError

    with pytest.raises(InterpError, match="no neuron survived pruning"):
        run("neuron_graph", tiny_llama, save=False, **(SMALL | {"max_nodes": 1, "candidates": 1,
                                                                "edge_threshold": 0.0, "node_threshold": 0.0}))


def test_subject_mass_sits_where_causal_tracing_peaks(smol):
    """Capitals: the graph's neurons at the subject's last token carry their influence in the layers where
    causal tracing's MLP restoration effect (the committed Result) is at least 5% of its peak."""
    import glob

    from interp.datasets.prompts import subject_positions
    from interp.storage import load_result

    traced = load_result(glob.glob("data/results/causal_tracing/*smollm2-135m*")[0])
    eff = traced.table("effects")
    mlp = eff[(eff.kind == "mlp") & (eff.role == "last subject")].groupby("layer").effect.mean()
    strong = set(mlp.index[mlp >= 0.05 * mlp.max()])
    mass, inside = 0.0, 0.0
    for fact in traced.table("facts").head(2).itertuples():
        r = run("neuron_graph", smol, save=False, prompt=fact.prompt, target=fact.answer, max_nodes=300)
        nodes = r.table("nodes")
        pos = subject_positions(smol, fact.prompt, fact.subject)[-1]
        at = nodes[(nodes.kind == "neuron") & (nodes.position == pos)]
        mass += float(at.influence.sum())
        inside += float(at[at.layer.isin(strong)].influence.sum())
    assert mass > 0
    assert inside / mass >= 0.8


def test_top_logits_targets_cover_the_probability(tiny_llama):
    r = run("neuron_graph", tiny_llama, save=False, **(SMALL | {"top_logits": True}))
    probs = r.metrics["target_probs"]
    assert 1 <= len(probs) <= 10 and probs == sorted(probs, reverse=True)
    assert sum(probs) >= 0.95 or len(probs) == 10
    assert len(r.table("nodes").query("kind == 'logit'")) == len(probs)
