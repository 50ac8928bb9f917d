"""Neuron-level faithfulness everywhere (issue 30): the sampler covers every layer and each position class, the
activation-patching column equals a brute-force loop, and the cheap scores equal the engine's at the last token."""

import json

import numpy as np
import pytest
import torch

from interp.analyses.base import run
from interp.analyses.patching.engine import PatchingConfig, baseline, gradient_scores, prepare
from interp.analyses.patching.neuron_faithfulness import CLASSES, position_classes, untrusted
from interp.datasets.prompts import Pair
from interp.names import hook_name

PAIRS = [Pair("abcdefgh", "abxdefgh", "a", "b"), Pair("hello world", "jello world", "r", "x"),
         Pair("xyzabc", "xzzabc", "a", "b")]


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in PAIRS))
    return str(path)


@pytest.fixture(scope="module")
def result(tiny_llama, pairs_file, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("INTERP_RUNS", str(tmp_path_factory.mktemp("runs")))
    yield run("neuron_faithfulness", tiny_llama, dataset=pairs_file, n=3, n_random=3, top_k=2, n_boot=50,
              spearman_boot=20, batch_rows=40)
    mp.undo()


def test_the_sampler_covers_every_layer_and_each_position_class(result, tiny_llama):
    rows = result.table("rows")
    assert set(rows.layer) == set(range(tiny_llama.n_layers))
    for layer, df in rows.groupby("layer"):
        assert set(df.cls) == set(CLASSES), (layer, set(df.cls))
        for cls, part in df.groupby("cls"):
            assert set(part.kind) == {"top", "random"} and part.pair.nunique() == 3, (layer, cls)
    pairs = result.table("pairs")
    for r in rows.itertuples():  # each row's position is of its class
        clean, corrupt = pairs.clean_tokens[r.pair], pairs.corrupt_tokens[r.pair]
        last = pairs.n_tokens[r.pair] - 1
        want = "last" if r.pos == last else "subject" if clean[r.pos] != corrupt[r.pos] else "other"
        assert r.cls == want
    summary = result.table("summary")
    assert set(summary.method) == {"attribution", "relp"} and (summary.layer == -1).sum() == 2 * len(CLASSES)
    assert isinstance(untrusted(summary), dict)


def test_activation_column_equals_a_brute_force_loop(result, tiny_llama):
    """Patch each sampled neuron alone with a hand-written hook (not the engine's Write) and compare."""
    model = tiny_llama
    batch = prepare(model, PAIRS)
    rows = result.table("rows").sample(12, random_state=0)
    with torch.no_grad():
        clean_post = {}
        for layer in rows.layer.unique():
            site = hook_name("mlp_post", int(layer))
            hp = model.hook_point(site)
            grab = {}
            handle = hp.register_forward_hook(lambda m, i, o, g=grab: g.setdefault("x", o.detach().clone()))
            model(batch.clean)
            handle.remove()
            clean_post[int(layer)] = grab["x"]

        def logit_diff(tokens, p):
            logits = model(tokens)[0, int(batch.last[p])]
            return float(logits[batch.answer[p]] - logits[batch.wrong[p]])

        for r in rows.itertuples():
            hp = model.hook_point(hook_name("mlp_post", r.layer))

            def patch(m, i, o, r=r):
                o = o.clone()
                o[0, r.pos, r.neuron] = clean_post[r.layer][r.pair, r.pos, r.neuron]
                return o

            handle = hp.register_forward_hook(patch)
            patched = logit_diff(batch.corrupt[r.pair: r.pair + 1], r.pair)
            handle.remove()
            base = logit_diff(batch.corrupt[r.pair: r.pair + 1], r.pair)
            assert patched - base == pytest.approx(r.activation, abs=2e-4), r


def test_last_position_scores_equal_the_engines(result, tiny_llama):
    """The every-position AtP read at the last token equals the engine's neuron-level AtP at --neuron-pos -1."""
    model = tiny_llama
    batch = prepare(model, PAIRS)
    config = PatchingConfig(n=3, components=("neurons",), method="attribution")
    b = baseline(model, config, batch, [1])
    engine = gradient_scores(model, config, batch, [1], b.metric, b.source_acts)[("neurons", 1)]
    rows = result.table("rows")
    last = rows[(rows.layer == 1) & (rows.cls == "last")]
    got = engine[torch.tensor(last.pair.to_numpy()), torch.tensor(last.neuron.to_numpy())].double().numpy()
    assert np.allclose(got, last.attribution.to_numpy(), atol=1e-6)


def test_position_classes_leave_out_what_every_method_scores_zero(tiny_llama):
    batch = prepare(tiny_llama, PAIRS[:2])
    cls = position_classes(batch)
    differs = batch.clean != batch.corrupt
    first = differs.float().argmax(1)
    for b in range(2):
        assert (cls[b, : first[b]] == -1).all() and cls[b, int(batch.last[b])] == CLASSES.index("last")
        assert (cls[b, int(batch.lengths[b]):] == -1).all()


def test_the_layer_curves_draw_each_method_per_position_class(result):
    from interp.viz.patching import layer_curves

    fig = layer_curves(result)
    drawn = {(t.name, t.xaxis) for t in fig.data}
    assert {name for name, _ in drawn} == {"attribution", "relp"} and len({ax for _, ax in drawn}) == len(CLASSES)
    assert any(s.y0 == 0.8 for s in fig.layout.shapes)  # the trust line
