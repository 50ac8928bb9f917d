"""Faithfulness of one patching method to another: how well its scores track them.

``compare(result_a, result_b)`` joins two patching Results on (component, layer,
unit, pair) and reports, per component type:

- ``pearson`` and ``spearman``: over every (pair, layer, unit) score, pooled, as in
  RelP's comparison against activation patching;
- ``pearson_mean``: over the scores averaged across pairs (one per layer x unit);
- ``top_k_overlap``: the share of ``b``'s top-k units (by mean |score|) that are also
  in ``a``'s top k.

Put the ground truth (activation patching) in ``result_a``. Two runs are compared only when
they patch the same pairs with the same metric, direction and neuron position
(``differences``); ``force=True`` compares them anyway, and the table says so.
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from interp.errors import InterpError

KEYS = ["component", "layer", "unit", "pair"]
PAIR_FIELDS = ["clean", "corrupt", "answer", "wrong"]


def dataset_hash(pairs: pd.DataFrame) -> str:
    """The identity of a run's pairs: a hash of their text, in order."""
    rows = pairs.sort_values("pair")[PAIR_FIELDS].to_dict("records")
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def differences(result_a, result_b) -> list[str]:
    """Why two patching runs measure different things (empty: they are comparable)."""
    out = []
    ha, hb = dataset_hash(result_a.table("pairs")), dataset_hash(result_b.table("pairs"))
    if ha != hb:
        out.append(f"they patch different pairs ({result_a.config.dataset!r} n={result_a.config.n} vs "
                   f"{result_b.config.dataset!r} n={result_b.config.n}; pair hashes {ha} vs {hb})")
    for name in ("metric", "direction", "neuron_pos"):
        va, vb = getattr(result_a.config, name), getattr(result_b.config, name)
        if va != vb:
            out.append(f"{name} {va!r} vs {vb!r}")
    return out


def joined(result_a, result_b, force: bool = False) -> pd.DataFrame:
    """Scores of both Results side by side (``score_a``, ``score_b``) where both have them."""
    for r in (result_a, result_b):
        if r.analysis != "patching":
            raise InterpError(f"compare needs two patching Results, got a {r.analysis!r} one ({r.run_id})")
    diff = differences(result_a, result_b)
    if diff and not force:
        raise InterpError(f"runs {result_a.run_id} and {result_b.run_id} are not comparable: {'; '.join(diff)}. "
                          "Rerun one on the other's dataset, or pass --force to compare anyway")
    a = result_a.table("scores")[KEYS + ["pos_from_end", "score"]]
    b = result_b.table("scores")[KEYS + ["score"]]
    both = a.merge(b, on=KEYS, suffixes=("_a", "_b"))
    if both.empty:
        raise InterpError(f"runs {result_a.run_id} and {result_b.run_id} share no (component, layer, unit, pair): "
                          "were they run on the same dataset, components and layers?")
    return both


def compare(result_a, result_b, k: int = 10, force: bool = False) -> pd.DataFrame:
    """Per component type: pearson, spearman, pearson_mean, top_k_overlap, n (and ``forced``, the
    differences overridden with ``force``)."""
    both = joined(result_a, result_b, force)
    forced = "; ".join(differences(result_a, result_b)) if force else ""
    rows = []
    for component, df in both.groupby("component", sort=False):
        # mean over pairs per (layer, unit); positions line up from the end (pairs differ in length)
        where = "pos_from_end" if (df.pos_from_end >= 0).all() else "unit"
        means = df.groupby(["layer", where])[["score_a", "score_b"]].mean()
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
            **({"forced": forced} if forced else {}),
        })
    return pd.DataFrame(rows)
