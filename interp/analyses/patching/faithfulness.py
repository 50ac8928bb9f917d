"""Faithfulness of one patching method to another: how well its scores track them.

``compare(result_a, result_b)`` joins two patching Results on (component, layer,
unit, pair) and reports, per component type:

- ``pearson`` and ``spearman``: over every (pair, layer, unit) score, pooled, as in
  RelP's comparison against activation patching;
- ``pearson_mean``: over the scores averaged across pairs (one per layer x unit);
- ``top_k_overlap``: the share of ``b``'s top-k units (by mean |score|) that are also
  in ``a``'s top k.

Put the ground truth (activation patching) in ``result_a``.
"""

from __future__ import annotations

import pandas as pd

from interp.errors import InterpError

KEYS = ["component", "layer", "unit", "pair"]


def joined(result_a, result_b) -> pd.DataFrame:
    """Scores of both Results side by side (``score_a``, ``score_b``) where both have them."""
    for r in (result_a, result_b):
        if r.analysis != "patching":
            raise InterpError(f"compare needs two patching Results, got a {r.analysis!r} one ({r.run_id})")
    a = result_a.table("scores")[KEYS + ["pos_from_end", "score"]]
    b = result_b.table("scores")[KEYS + ["score"]]
    both = a.merge(b, on=KEYS, suffixes=("_a", "_b"))
    if both.empty:
        raise InterpError(f"runs {result_a.run_id} and {result_b.run_id} share no (component, layer, unit, pair): "
                          "were they run on the same dataset, components and layers?")
    return both


def compare(result_a, result_b, k: int = 10) -> pd.DataFrame:
    """Per component type: pearson, spearman, pearson_mean, top_k_overlap, n."""
    both = joined(result_a, result_b)
    rows = []
    for component, df in both.groupby("component", sort=False):
        means = df.groupby(["layer", "unit"])[["score_a", "score_b"]].mean()
        kk = min(k, len(means))
        top_a = set(means.score_a.abs().nlargest(kk).index)
        top_b = set(means.score_b.abs().nlargest(kk).index)
        rows.append({
            "component": component,
            "pearson": df.score_a.corr(df.score_b),
            "spearman": df.score_a.rank().corr(df.score_b.rank()),  # Spearman: Pearson of ranks
            "pearson_mean": means.score_a.corr(means.score_b),
            "top_k_overlap": len(top_a & top_b) / kk if kk else float("nan"),
            "k": kk,
            "n": len(df),
        })
    return pd.DataFrame(rows)
