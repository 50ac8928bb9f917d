"""The bigram paper's surprisal correlation against a direct computation on a tiny corpus."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch

import interp
from interp.analyses.subnetworks.surprisal import bigram_surprisal, fit, model_surprisal
from interp.datasets.bigrams import count_bigrams


def test_bigram_surprisal_is_minus_log2_of_the_counted_ratio(tiny_llama):
    stream = torch.tensor(tiny_llama.encode("the cat sat on the mat; the cat ran") * 2)
    table = count_bigrams(stream, tiny_llama.d_vocab)
    pairs, contexts = Counter(zip(stream[:-1].tolist(), stream[1:].tolist())), Counter(stream[:-1].tolist())
    held = torch.tensor([tiny_llama.encode("the cat sat; a dog")])
    got = bigram_surprisal(table, held)[0].tolist()
    for t, value in enumerate(got):
        x, y = int(held[0, t]), int(held[0, t + 1])
        want = -math.log2(pairs[(x, y)] / contexts[x]) if pairs[(x, y)] else math.inf
        assert value == want or math.isclose(value, want, rel_tol=1e-12)
    assert math.isinf(max(got)) and min(got) >= 0  # an unseen bigram, and probabilities at most 1


def test_model_surprisal_and_fit_equal_a_direct_computation(tiny_llama):
    windows = torch.tensor([tiny_llama.encode(t)[:6] for t in ("the cat sat on the mat", "a dog ran far away")])
    s = model_surprisal(tiny_llama, windows, batch=1)
    with torch.no_grad():
        logits = tiny_llama(windows).double()
    direct = -(logits.log_softmax(-1)[:, :-1].gather(-1, windows[:, 1:, None])[..., 0]) / math.log(2)
    assert torch.allclose(s, direct, atol=1e-5)
    bigram = torch.tensor([[1.0, 2.0, math.inf, 0.5, 3.0], [2.0, math.inf, 1.0, 1.5, 0.2]], dtype=torch.float64)
    out = fit(s, bigram)
    a, b = s.flatten().numpy(), bigram.flatten().numpy()
    keep = np.isfinite(b)
    assert math.isclose(out["pearson_dropped"], np.corrcoef(a[keep], b[keep])[0, 1], rel_tol=1e-9)
    assert math.isclose(out["pearson_max"], np.corrcoef(a, np.where(keep, b, 3.0))[0, 1], rel_tol=1e-9)
    assert out["n_infinite"] == 2 and out["n_tokens"] == 10


def test_bigram_run_reports_it_and_the_stored_run_reproduces_it(tiny_llama):
    r = interp.run("bigram_subnetworks", tiny_llama, corpus="stdlib-docs", corpus_tokens=3000, steps=2,
                   optimal_pruning=False, random_seeds=1, checkpoint_every=0, seq_len=32, heldout_tokens=512)
    table = r.table("surprisal")
    assert set(table.model) == {"full", "subnetwork", "random subnetwork"}
    again = interp.run("bigram_surprisal", tiny_llama, subnetwork=str(r.path), heldout_tokens=512, random_seeds=1)
    assert np.allclose(again.table("surprisal").pearson_dropped, table.pearson_dropped, atol=1e-6)
