from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import interp
from interp.analyses.patching.engine import PatchingConfig, at_last, metric_fn, prepare, run
from interp.analyses.patching.read import compare
from interp.datasets.prompts import Pair
from interp.errors import InterpError
from interp.models import load_model
from interp.names import hook_name
from interp.tracing.hooks import hooks, record
from interp.tracing.interventions import patch

PAIRS = [Pair("abcdefgh", "abxdefgh", "a", "b"), Pair("hello wo", "jello wo", "r", "x"), Pair("xyz", "xzz", "a", "b")]
ALL = ("resid", "attn_out", "mlp_out", "heads", "neurons")


def scores(result):
    return result.table("scores").sort_values(["component", "layer", "unit", "pair"]).score.to_numpy()


def linearised(model):
    """Hooks that make a GELU model affine in its residual stream: norm scales fixed at 1,
    a constant (uniform causal) attention pattern, and the identity as the activation."""
    fwd, seen = [], {}
    for l in range(model.n_layers):
        for ln in ("ln1", "ln2"):
            fwd.append((f"blocks.{l}.{ln}.hook_scale", torch.ones_like))
        fwd.append((f"blocks.{l}.attn.hook_pattern",
                    lambda p: torch.tril(torch.ones_like(p)) / torch.tril(torch.ones_like(p)).sum(-1, keepdim=True)))
        fwd.append((f"blocks.{l}.mlp.hook_pre", lambda x, l=l: seen.__setitem__(l, x)))
        fwd.append((f"blocks.{l}.mlp.hook_post", lambda y, l=l: seen[l]))
    fwd.append(("ln_final.hook_scale", torch.ones_like))
    return hooks(model, fwd)


def test_attribution_equals_activation_on_a_linear_model():
    model = load_model("tiny-gpt2", dtype="float64")
    with linearised(model):
        act = run(model, PatchingConfig(method="activation", components=ALL), pairs=PAIRS)
        att = run(model, PatchingConfig(method="attribution", components=ALL), pairs=PAIRS)
    assert len(scores(act)) == len(scores(att)) > 100
    largest = abs(scores(act)).max()
    assert largest > 1e-6  # not trivially zero
    assert scores(act) == pytest.approx(scores(att), abs=1e-9 * largest)


def test_attribution_differs_from_activation_on_the_real_model(tiny_gpt2):
    act = run(tiny_gpt2, PatchingConfig(method="activation", components=("mlp_out",)), pairs=PAIRS)
    att = run(tiny_gpt2, PatchingConfig(method="attribution", components=("mlp_out",)), pairs=PAIRS)
    assert scores(act) != pytest.approx(scores(att), abs=1e-6)


@pytest.mark.parametrize("method", ["activation", "attribution", "relp"])
@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_clean_into_clean_changes_nothing(tiny, method, direction):
    same = [Pair(p.clean, p.clean, p.answer, p.wrong) for p in PAIRS]
    result = run(tiny, PatchingConfig(method=method, components=ALL, direction=direction), pairs=same)
    assert len(scores(result)) > 0
    # gradient methods: exactly 0 (a_source - a_base = 0); activation patching runs rows in
    # batches of another size than the base run, so float32 rounding (~1e-7) remains
    assert abs(scores(result)).max() <= (1e-5 if method == "activation" else 0.0)


def test_whole_residual_at_last_layer_recovers_clean(tiny):
    batch = prepare(tiny, PAIRS)
    site = hook_name("resid_pre", tiny.n_layers - 1)
    with torch.no_grad(), record(tiny, [site]) as clean_acts:
        clean = at_last(tiny(batch.clean), batch.last)
    clean_acts = dict(clean_acts)
    with torch.no_grad(), patch(tiny, [site], clean_acts):
        patched = at_last(tiny(batch.corrupt), batch.last)
    metric = metric_fn("logit_diff", batch, clean)
    rows = torch.arange(len(PAIRS))
    assert torch.equal(metric(patched, rows), metric(clean, rows))
    assert not torch.equal(metric(at_last(tiny(batch.corrupt), batch.last), rows), metric(clean, rows))


@pytest.mark.parametrize("metric", ["prob", "kl"])
def test_other_metrics_and_storage(tiny_llama, metric):
    result = run(tiny_llama, PatchingConfig(method="relp", metric=metric, components=("mlp_out", "heads")),
                 pairs=PAIRS)
    loaded = interp.load_result(interp.save_result(result))
    assert loaded.table("scores").equals(result.table("scores"))  # storage is exact
    # the metric is applied: the same method and pairs under logit_diff give other scores, and the two runs
    # are refused as not comparable unless forced (the table then says why)
    base = run(tiny_llama, PatchingConfig(method="relp", components=("mlp_out", "heads")), pairs=PAIRS)
    with pytest.raises(InterpError, match=f"metric 'logit_diff' vs '{metric}'"):
        compare(base, loaded)
    cmp = compare(base, loaded, force=True)
    assert set(cmp.component) == {"mlp_out", "heads"} and (cmp.forced.str.contains("metric")).all()
    assert not np.allclose(base.table("scores").score, loaded.table("scores").score)


def test_pairs_file(tiny_llama, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(p.to_dict()) for p in PAIRS))
    result = interp.run("patching", tiny_llama, dataset=str(path), n=2, method="attribution",
                        components=["resid"], layers=[1])
    assert sorted(result.table("scores").pair.unique()) == [0, 1]
    assert set(result.table("scores").layer) == {1}


def test_bad_input(tiny_llama):
    with pytest.raises(InterpError, match="different lengths"):
        run(tiny_llama, PatchingConfig(), pairs=[Pair("abc", "abcd", "a", "b")])
    with pytest.raises(InterpError, match="not a single token"):
        run(tiny_llama, PatchingConfig(), pairs=[Pair("abc", "abd", "ab", "b")])
    with pytest.raises(InterpError, match=r"components \(--components\): .mlp. is not one of"):
        run(tiny_llama, PatchingConfig(components=("mlp",)), pairs=PAIRS)
    with pytest.raises(InterpError, match="no pairs"):
        run(tiny_llama, PatchingConfig(), pairs=[])
    with pytest.raises(InterpError, match=r"method \(--method\): .eap. is not one of"):
        run(tiny_llama, PatchingConfig(method="eap"), pairs=PAIRS)
    with pytest.raises(InterpError, match="layer"):
        run(tiny_llama, PatchingConfig(layers=(5,)), pairs=PAIRS)
