"""Faithfulness of one patching method to another: how well its scores track them.

``compare(result_a, result_b)`` (in ``read``, beside ``joined`` and ``differences``) joins two patching
Results on (component, layer, unit, pair) and reports, per component type:

- ``pearson`` and ``spearman``: over every (pair, layer, unit) score, pooled, as in
  RelP's comparison against activation patching;
- ``pearson_mean``: over the scores averaged across pairs (one per layer x unit);
- ``top_k_overlap``: the share of ``b``'s top-k units (by mean |score|) that are also
  in ``a``'s top k.

Put the ground truth (activation patching) in ``result_a``. Two runs are compared only when
they patch the same pairs with the same metric, direction and neuron position
(``differences``); ``force=True`` compares them anyway, and the table says so.

One pooled correlation says little about how much of it is the pair set, and pooled Pearson is
dominated by a few large entries. ``intervals`` adds, per component: the distribution of per-pair
correlations (each pair's scores over its layers and units), and percentile bootstrap intervals over
pairs (pairs resampled with replacement, the pooled Pearson and Spearman recomputed). ``gains`` compares
two approximations on the same resamples (a paired bootstrap): the interval of RelP's Pearson minus
AtP's. The registered analysis ``faithfulness`` finds the stored runs of each method on one dataset and
stores all three tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from interp.analyses.base import register
from interp.analyses.patching.read import KEYS, joined, stored_patching
from interp.metrics import pearson, ranks
from interp.result import Config, Result, option, provenance


def per_pair(both: pd.DataFrame) -> pd.DataFrame:
    """Each pair's Pearson and Spearman over its (layer, unit) scores, per component (NaN where a pair's
    scores are constant)."""
    rows = []
    for (component, pair), df in both.groupby(["component", "pair"], sort=False):
        a, b = df.score_a.to_numpy(float), df.score_b.to_numpy(float)
        rows.append({"component": component, "pair": int(pair), "n": len(df), "pearson": pearson(a, b),
                     "spearman": pearson(ranks(a), ranks(b))})
    return pd.DataFrame(rows)


def _resamples(n_pairs: int, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, n_pairs]``: how often each pair is drawn in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_pairs, np.full(n_pairs, 1 / n_pairs), size=n_boot)


def _boot_pearson(a: np.ndarray, b: np.ndarray, pair: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Pooled Pearson of each resample, from per-pair sums (exact: a pair drawn k times counts k times)."""
    stats = np.stack([np.ones_like(a), a, b, a * a, b * b, a * b], 1)
    per = np.zeros((counts.shape[1], 6))
    np.add.at(per, pair, stats)
    n, sa, sb, saa, sbb, sab = (counts @ per).T
    cov, va, vb = sab - sa * sb / n, saa - sa * sa / n, sbb - sb * sb / n
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.sqrt(va * vb)


def _boot_spearman(a: np.ndarray, b: np.ndarray, pair: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Pooled Spearman of each resample: the resample's entries are ranked afresh."""
    order = np.argsort(pair, kind="stable")
    a, b, pair = a[order], b[order], pair[order]
    starts = np.searchsorted(pair, np.arange(counts.shape[1] + 1))
    out = np.empty(len(counts))
    for i, c in enumerate(counts):
        idx = np.concatenate([np.tile(np.arange(starts[p], starts[p + 1]), k) for p, k in enumerate(c) if k])
        out[i] = pearson(ranks(a[idx]), ranks(b[idx]))
    return out


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if not len(v):
        return float("nan"), float("nan")
    lo, hi = np.quantile(v, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap(both: pd.DataFrame, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
              spearman_boot: int | None = None) -> dict:
    """Point estimates and percentile bootstrap intervals over pairs of one component's joined scores
    (columns ``pair``, ``score_a``, ``score_b``): pooled Pearson and Spearman. ``spearman_boot`` resamples
    for Spearman (re-ranking is the slow part; default ``n_boot``)."""
    pairs = np.sort(both.pair.unique())
    pair = np.searchsorted(pairs, both.pair.to_numpy())
    a, b = both.score_a.to_numpy(float), both.score_b.to_numpy(float)
    counts = _resamples(len(pairs), n_boot, seed)
    r = _boot_pearson(a, b, pair, counts)
    rho = _boot_spearman(a, b, pair, counts[: spearman_boot or n_boot])
    out = {"pearson": pearson(a, b), "spearman": pearson(ranks(a), ranks(b)), "n_pairs": len(pairs), "n": len(a)}
    out["pearson_lo"], out["pearson_hi"] = _interval(r, level)
    out["spearman_lo"], out["spearman_hi"] = _interval(rho, level)
    return out


def _only(both: pd.DataFrame, components) -> pd.DataFrame:
    return both if components is None else both[both.component.isin(components)]


def intervals(truth, approx, n_boot: int = 1000, seed: int = 0, level: float = 0.95, force: bool = False,
              spearman_boot: int | None = None, components=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per component (all shared ones, or ``components``): pooled Pearson and Spearman with bootstrap intervals
    over pairs, and the per-pair correlations' median and quartiles; and the per-pair table itself."""
    both = _only(joined(truth, approx, force), components)
    pp = per_pair(both)
    rows = []
    for component, df in both.groupby("component", sort=False):
        q = pp[pp.component == component].pearson.dropna()
        rows.append({"component": component, **bootstrap(df, n_boot, seed, level, spearman_boot),
                     "per_pair_median": float(q.median()) if len(q) else float("nan"),
                     "per_pair_q25": float(q.quantile(0.25)) if len(q) else float("nan"),
                     "per_pair_q75": float(q.quantile(0.75)) if len(q) else float("nan"),
                     "per_pair_constant": int(pp[pp.component == component].pearson.isna().sum())})
    return pd.DataFrame(rows), pp


def gains(truth, first, second, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
          components=None) -> pd.DataFrame:
    """Per component: ``second``'s pooled Pearson minus ``first``'s against ``truth``, on the same bootstrap
    resamples of pairs (paired), with its interval and the share of resamples where it is above zero."""
    a, b = _only(joined(truth, first), components), _only(joined(truth, second), components)
    both = a.merge(b[KEYS + ["score_b"]], on=KEYS, suffixes=("_1", "_2"))
    rows = []
    for component, df in both.groupby("component", sort=False):
        pairs = np.sort(df.pair.unique())
        pair = np.searchsorted(pairs, df.pair.to_numpy())
        counts = _resamples(len(pairs), n_boot, seed)
        t, s1, s2 = (df[c].to_numpy(float) for c in ("score_a", "score_b_1", "score_b_2"))
        diff = _boot_pearson(t, s2, pair, counts) - _boot_pearson(t, s1, pair, counts)
        lo, hi = _interval(diff, level)
        rows.append({"component": component, "gain": pearson(t, s2) - pearson(t, s1), "gain_lo": lo,
                     "gain_hi": hi, "share_above_zero": float((diff[np.isfinite(diff)] > 0).mean())})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class FaithfulnessConfig(Config):
    dataset: str = option("ioi", "the pair set the patching runs used (ioi, ioi-fresh or a JSONL path)",
                          flags=("-d",))
    n: int = option(16, "pairs the runs patched", min=0)
    components: tuple[str, ...] = option(("resid", "attn_out", "mlp_out", "heads"),
                                         "components to compare (each from the newest run that has it)",
                                         nonempty=True)
    methods: tuple[str, ...] = option(("attribution", "relp"), "approximations compared with activation patching",
                                      choices=("attribution", "relp"), nonempty=True)
    n_boot: int = option(1000, "bootstrap resamples of the pairs", min=10)
    spearman_boot: int = option(200, "resamples for Spearman's interval (re-ranking is slow)", min=10)
    level: float = option(0.95, "interval coverage", above=0, max=0.999)


@register("faithfulness", FaithfulnessConfig)
def run(model, config: FaithfulnessConfig) -> Result:
    """Faithfulness of AtP and RelP to activation patching, with bootstrap intervals over pairs."""
    summaries, pairs, gain_rows, used = [], [], [], {}
    for component in config.components:
        truth = stored_patching(model, config.dataset, config.n, "activation", component)
        runs = {m: stored_patching(model, config.dataset, config.n, m, component) for m in config.methods}
        used[component] = {"activation": truth.run_id, **{m: r.run_id for m, r in runs.items()}}
        for method, r in runs.items():
            table, pp = intervals(truth, r, config.n_boot, config.seed, config.level,
                                  spearman_boot=config.spearman_boot, components=[component])
            summaries.append(table.assign(method=method))
            pairs.append(pp.assign(method=method))
        if {"attribution", "relp"} <= set(runs):
            gain_rows.append(gains(truth, runs["attribution"], runs["relp"], config.n_boot, config.seed,
                                   config.level, components=[component]))
    summary = pd.concat(summaries, ignore_index=True)
    summary = summary[["method", *[c for c in summary.columns if c != "method"]]]
    gain = pd.concat(gain_rows, ignore_index=True) if gain_rows else pd.DataFrame(
        columns=["component", "gain", "gain_lo", "gain_hi", "share_above_zero"])
    notes = [f"{config.dataset} (n={config.n}), {config.level:.0%} percentile bootstrap over pairs "
             f"({config.n_boot} resamples; {config.spearman_boot} for Spearman)."]
    for g in gain.itertuples():
        sure = "above zero" if g.gain_lo > 0 else ("below zero" if g.gain_hi < 0 else "includes zero")
        notes.append(f"{g.component}: RelP - AtP pooled Pearson {g.gain:+.3f} [{g.gain_lo:+.3f}, {g.gain_hi:+.3f}], "
                     f"the interval {sure}.")
    metrics = {f"{r.method}/{r.component}": {"pearson": r.pearson, "pearson_lo": r.pearson_lo,
                                            "pearson_hi": r.pearson_hi, "spearman": r.spearman}
               for r in summary.itertuples()}
    return Result(analysis="faithfulness", config=config, provenance=provenance(model, config),
                  tables={"summary": summary, "per_pair": pd.concat(pairs, ignore_index=True), "gain": gain},
                  metrics={"runs": used, **metrics}, notes=notes)
