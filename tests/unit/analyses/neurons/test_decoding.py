from __future__ import annotations

import pytest
import torch

import interp
from interp.analyses.neurons.decoding import decode_block, side_basis, side_vectors
from interp.analyses.neurons.read import neuron_tokens, neurons_for
from interp.errors import InterpError


def test_batched_decoding_equals_a_per_neuron_loop(tiny):
    k = 7
    result = interp.run("lm_head_decoding", tiny, top_k=k, save=False)
    decoded = result.table("decoded")
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        layer = int(torch.randint(tiny.n_layers, (1,), generator=gen))
        neuron = int(torch.randint(tiny.d_mlp, (1,), generator=gen))
        for side in result.metrics["sides"]:
            scores = side_vectors(tiny, layer, side, True)[neuron].float() @ side_basis(tiny, side, True).float()
            rows = decoded[(decoded.layer == layer) & (decoded.neuron == neuron)]
            top = rows[rows.side == side + "+"].sort_values("rank")
            bottom = rows[rows.side == side + "-"].sort_values("rank")
            torch.testing.assert_close(torch.tensor(top.score.values), scores.topk(k).values)
            torch.testing.assert_close(torch.tensor(bottom.score.values), scores.topk(k, largest=False).values)
            assert top.token_id.tolist() == scores.topk(k).indices.tolist()


def test_inverted_index_equals_brute_force(tiny_llama):
    k = 5
    result = interp.run("lm_head_decoding", tiny_llama, top_k=k, save=False)
    basis = side_basis(tiny_llama, "out", True).float()
    all_scores = torch.cat([side_vectors(tiny_llama, l, "out", True).float() @ basis
                            for l in range(tiny_llama.n_layers)])
    for token in (3, 100, 250):
        best = all_scores[:, token].topk(k)
        table = neurons_for(result, token, k)
        assert (table.layer * tiny_llama.d_mlp + table.neuron).tolist() == best.indices.tolist()
        torch.testing.assert_close(torch.tensor(table.score.values), best.values)


def test_planted_embedding_decodes_to_its_token(tiny_llama):
    token = tiny_llama.token_id("Q")
    W_E = tiny_llama.weights.W_E
    vectors = torch.randn(4, tiny_llama.d_model) * 0.01
    vectors[2] = W_E[token] * 10
    top_s, top_i, _, _ = decode_block(vectors, W_E.T, k=3)[:4]
    assert int(top_i[2, 0]) == token


def test_options_and_bad_input(tiny_gpt2):
    result = interp.run("lm_head_decoding", tiny_gpt2, top_k=3, layers=(1,), fold_norm=False, save=False)
    assert result.metrics["sides"] == ["out", "up"]  # no gate on a GELU model
    assert set(result.table("decoded").layer) == {1}
    assert len(neuron_tokens(result, 1, 4)) == 3 * 2 * 2
    with pytest.raises(InterpError, match="layer 9 is out of range"):
        interp.run("lm_head_decoding", tiny_gpt2, layers=(9,), save=False)
    with pytest.raises(InterpError, match=r"sides \(--sides\): .down. is not one of"):
        interp.run("lm_head_decoding", tiny_gpt2, sides=("down",), save=False)


def test_cached_run_reuses_the_stored_result(tiny_llama):
    from interp.analyses.base import cached_run

    first = cached_run("lm_head_decoding", tiny_llama, top_k=4)
    again = cached_run("lm_head_decoding", tiny_llama, top_k=4)
    assert again.path == first.path and again.run_id == first.run_id
    assert cached_run("lm_head_decoding", tiny_llama, top_k=5).path != first.path


@pytest.mark.parametrize("v, chunk", [(64 * 40, 50), (64 * 40, 1000), (259, 30)])
def test_blockwise_topk_and_chunked_index_are_exact(v, chunk):
    """The prefilter (vocab divisible by 64) and the plain path give torch.topk's
    values, and the thresholded inverted index equals a brute-force column top-k."""
    gen = torch.Generator().manual_seed(v)
    vectors, basis, k = torch.randn(120, 16, generator=gen), torch.randn(16, v, generator=gen), 6
    prom = (torch.full((k, v), -torch.inf), torch.zeros((k, v), dtype=torch.long))
    ts, ti, bs, bi = decode_block(vectors, basis, k, chunk=chunk, promoters=prom, offset=1000)[:4]
    scores = vectors @ basis
    torch.testing.assert_close(ts, scores.topk(k, dim=1).values)
    torch.testing.assert_close(bs, scores.topk(k, dim=1, largest=False).values)
    torch.testing.assert_close(scores.gather(1, ti), ts)  # ids point at those values
    torch.testing.assert_close(scores.gather(1, bi), bs)
    col = scores.topk(k, dim=0)
    torch.testing.assert_close(prom[0], col.values)
    assert torch.equal(prom[1], col.indices + 1000)


def test_decoded_table_is_queryable_with_duckdb(tiny_llama):
    result = interp.run("lm_head_decoding", tiny_llama, top_k=3)
    hits = interp.sql("SELECT layer, neuron, score FROM table('lm_head_decoding', 'decoded') "
                      "WHERE side = 'out+' AND rank = 0 AND token = 'a' ORDER BY score DESC")
    decoded = result.table("decoded")
    expected = decoded[(decoded.side == "out+") & (decoded["rank"] == 0) & (decoded.token == "a")]
    assert len(hits) == len(expected) > 0


def _brute_force_specificity(model, token: int, own_top: int, typical=None):
    """Every neuron's signed z-score and own rank for ``token``, ranked as the index ranks them."""
    import numpy as np
    import pandas as pd

    basis = side_basis(model, "out", True).float()
    scores = torch.cat([side_vectors(model, l, "out", True).float() @ basis for l in range(model.n_layers)])
    std, mean = torch.std_mean(scores, dim=1, keepdim=True)
    z = (scores - mean) / std
    rows = []
    for flat in range(scores.shape[0]):
        layer, neuron = divmod(flat, model.d_mlp)
        for side, sign in (("out+", 1), ("out-", -1)):
            if typical is not None and typical.get((layer, neuron), sign) != sign:
                continue
            own = int((sign * scores[flat] > sign * scores[flat, token]).sum())
            rows.append((layer, neuron, side, own, float(sign * z[flat, token])))
    df = pd.DataFrame(rows, columns=["layer", "neuron", "side", "own", "z"])
    df = df.sort_values("z", ascending=False).drop_duplicates(["layer", "neuron"])
    df["tier"] = np.where(df.own < own_top, 0, 1)
    return df.sort_values(["tier", "z"], ascending=[True, False])


@pytest.mark.parametrize("token", [3, 100, 250])
def test_specificity_index_equals_brute_force_both_signs(tiny_llama, token):
    from interp.analyses.neurons.read import specific_neurons

    k = 6
    result = interp.run("lm_head_decoding", tiny_llama, top_k=k, save=False)
    table = specific_neurons(result, token, k=k)
    expected = _brute_force_specificity(tiny_llama, token, own_top=k).head(k)
    assert list(zip(table.layer, table.neuron, table.side.astype(str))) == \
        list(zip(expected.layer, expected.neuron, expected.side))
    np_z = torch.tensor(table.z.to_numpy(), dtype=torch.float32)
    torch.testing.assert_close(np_z, torch.tensor(expected.z.to_numpy(), dtype=torch.float32), atol=1e-4, rtol=1e-4)
    assert set(table.side.astype(str)) <= {"out+", "out-"}


def test_specificity_takes_each_neurons_typical_side(tiny_llama):
    """A neuron that fires only negative promotes through its out- side: the index lists it there (and
    not on out+); one that fires only positive, on out+."""
    import pandas as pd

    from interp.analyses.neurons.read import specific_neurons

    k, token = 6, 100
    result = interp.run("lm_head_decoding", tiny_llama, top_k=k, save=False)
    n = tiny_llama.n_layers * tiny_llama.d_mlp
    signs = torch.where(torch.arange(n) % 2 == 0, 1, -1)  # even neurons positive, odd negative
    typical = pd.DataFrame({"layer": torch.arange(n) // tiny_llama.d_mlp, "neuron": torch.arange(n) % tiny_llama.d_mlp,
                            "sign": signs, "mass_pos": (signs > 0).float(), "mass_neg": (signs < 0).float(),
                            "rms": torch.ones(n)})
    table = specific_neurons(result, token, k=k, typical=typical)
    flat = table.layer * tiny_llama.d_mlp + table.neuron
    assert ((flat % 2 == 0) == (table.side.astype(str) == "out+")).all()
    lookup = {(int(l), int(m)): int(s) for l, m, s in zip(typical.layer, typical.neuron, typical.sign)}
    expected = _brute_force_specificity(tiny_llama, token, own_top=k, typical=lookup).head(k)
    assert list(zip(table.layer, table.neuron)) == list(zip(expected.layer, expected.neuron))
    with pytest.raises(InterpError, match="output side"):
        neurons_for(result, token, side="up", by="specificity")


def test_layer_summary_promotes_the_side_each_neuron_fires_with():
    import pandas as pd

    from interp.analyses.neurons.read import layer_summary
    from interp.result import Result

    neurons = pd.DataFrame({"layer": [3, 3, 3], "neuron": [0, 1, 2], "out_norm": [1.0, 3.0, 2.0],
                            "out_top": ["a", "b", "c"], "out_bottom": ["x", "y", "z"]})
    decoding = Result(analysis="lm_head_decoding", config={}, provenance={}, tables={"neurons": neurons})
    typical = pd.DataFrame({"layer": [3, 3], "neuron": [0, 1], "sign": [1, -1]})
    df = layer_summary(decoding, 3, typical)
    assert df.neuron.tolist() == [1, 2, 0]  # by output-weight norm
    assert df.fires.tolist() == ["−", "?", "+"]  # neuron 2 is outside the atlas
    assert df.promotes.tolist() == ["y", "c", "a"]  # a negative firer promotes its bottom token
    assert layer_summary(decoding, 3).fires.eq("?").all()
