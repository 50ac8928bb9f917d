"""Faithfulness with error bars: per-pair correlations, bootstrap intervals over pairs, RelP's paired gain."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import interp
from interp.analyses.patching.faithfulness import bootstrap, per_pair
from interp.errors import InterpError
from interp.metrics import pearson, ranks


def synthetic(n_pairs: int, units: int = 40, noise: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """Scores of ``n_pairs`` pairs: b = a + noise, each pair with its own scale and noise level (real pairs
    differ in both, so which pairs were drawn matters)."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_pairs):
        a = rng.normal(size=units) * rng.uniform(0.5, 2)
        rows.append(pd.DataFrame({"component": "mlp_out", "pair": p, "score_a": a,
                                  "score_b": a + noise * rng.uniform(0.2, 2.0) * rng.normal(size=units)}))
    return pd.concat(rows, ignore_index=True)


def test_ranks_average_ties_like_a_brute_force_loop():
    x = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 0.0])
    brute = [1 + sum(v < xi for v in x) + (sum(v == xi for v in x) - 1) / 2 for xi in x]
    assert ranks(x).tolist() == brute


def test_bootstrap_contains_the_point_estimate_and_narrows_with_more_pairs():
    few, many = bootstrap(synthetic(6), n_boot=400), bootstrap(synthetic(96), n_boot=400)
    for b in (few, many):
        assert b["pearson_lo"] <= b["pearson"] <= b["pearson_hi"]
        assert b["spearman_lo"] <= b["spearman"] <= b["spearman_hi"]
    width = lambda b, k: b[f"{k}_hi"] - b[f"{k}_lo"]  # noqa: E731
    assert width(many, "pearson") < 0.6 * width(few, "pearson")
    assert width(many, "spearman") < 0.6 * width(few, "spearman")


def test_bootstrap_pearson_of_a_resample_equals_a_direct_computation():
    """The per-pair-sums shortcut against rebuilding the resample and correlating it."""
    from interp.analyses.patching.faithfulness import _boot_pearson, _resamples

    df = synthetic(5, units=7)
    counts = _resamples(5, 20, seed=3)
    fast = _boot_pearson(df.score_a.to_numpy(), df.score_b.to_numpy(), df.pair.to_numpy(), counts)
    for c, r in zip(counts, fast):
        rebuilt = pd.concat([df[df.pair == p] for p, k in enumerate(c) for _ in range(k)])
        assert r == pytest.approx(pearson(rebuilt.score_a.to_numpy(), rebuilt.score_b.to_numpy()), abs=1e-9)


def test_a_noisier_approximation_gets_a_lower_interval_and_per_pair_values():
    good, bad = bootstrap(synthetic(30, noise=0.2), n_boot=300), bootstrap(synthetic(30, noise=3.0), n_boot=300)
    assert good["pearson_lo"] > bad["pearson_hi"]
    pp = per_pair(synthetic(8, noise=0.2))
    assert len(pp) == 8 and (pp.pearson > 0.8).all() and pp.spearman.between(-1, 1).all()


PAIRS = [{"clean": c, "corrupt": x, "answer": a, "wrong": w} for c, x, a, w in
         [("abcdefgh", "abxdefgh", "a", "b"), ("hello wo", "jello wo", "r", "x"), ("xyzxyz", "xzzxyz", "a", "b"),
          ("mnopqr", "mnoaqr", "s", "t")]]


def test_faithfulness_run_on_stored_runs(tiny_llama, tmp_path):
    """The analysis finds each method's stored run, and RelP's gain interval contains its point value."""
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    opts = dict(dataset=str(data), n=4, components=("mlp_out",))
    for method in ("activation", "attribution", "relp"):
        interp.run("patching", tiny_llama, method=method, **opts)
    r = interp.run("faithfulness", tiny_llama, n_boot=50, spearman_boot=20, **opts)
    s = r.table("summary")
    assert set(s.method) == {"attribution", "relp"} and (s.pearson_lo <= s.pearson).all()
    g = r.table("gain").iloc[0]
    assert g.gain_lo <= g.gain <= g.gain_hi
    assert len(r.table("per_pair")) == 2 * 4


def test_faithfulness_without_stored_runs_names_the_command(tiny_llama):
    with pytest.raises(InterpError, match="interp patch --model tiny-llama --method activation --dataset ioi"):
        interp.run("faithfulness", tiny_llama, dataset="ioi", n=3, components=("heads",), save=False)
