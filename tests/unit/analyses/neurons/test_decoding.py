from __future__ import annotations

import pytest
import torch

import interp
from interp.analyses.neurons.decoding import (
    decode_block,
    neuron_tokens,
    neurons_for,
    side_basis,
    side_vectors,
)
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
    top_s, top_i, _, _ = decode_block(vectors, W_E.T, k=3)
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
    ts, ti, bs, bi = decode_block(vectors, basis, k, chunk=chunk, promoters=prom, offset=1000)
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
