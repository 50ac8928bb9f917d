"""Reading stored patching and causal-tracing Results: which runs are comparable, their joined score tables,
one neuron's scores, Verify, and the card's "Patching" and "Causal tracing" sections. Nothing outside
``patching/`` opens a ``patching`` or ``causal_tracing`` Result's tables.

**Comparable runs** have one definition, ``RUN_KEY``: the same pairs (dataset and n, and the pairs' hash
when both are loaded), seed, metric, direction and neuron position. ``run_key`` is the group key the
dashboard and the card use; ``differences`` says why two loaded runs are not comparable.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from interp.analyses.base import run as run_registered
from interp.analyses.patching.engine import COMPONENTS
from interp.analyses.sections import CardContext, Section, card_section
from interp.datasets.prompts import pairs_hash
from interp.errors import InterpError
from interp.metrics import correlation
from interp.render import esc, note, svg_bars, table_html
from interp.result import Result
from interp.storage import load_result, newest_run

RUN_KEY = ("dataset", "n", "seed", "metric", "direction", "neuron_pos")
METHODS = ("activation", "attribution", "relp")
__all__ = ["COMPONENTS", "RUN_KEY", "compare", "joined", "stored_patching", "verify_patching"]
KEYS = ["component", "layer", "unit", "pair"]


def _config(config) -> dict:
    return config if isinstance(config, dict) else config.to_dict()


def run_key(config) -> str:
    """The group key of a patching run's config (a Config or its dict): runs with the same key are comparable.
    A run over a subset of neurons (a Verify) forms its own group, labelled so: it never stands in for a whole
    comparison (a run over some layers' neurons stays: it extends its group's neuron-level scores)."""
    c = _config(config)
    key = {k: c.get(k) for k in RUN_KEY}
    if c.get("neurons"):
        key["subset"] = "verify" if len(c["neurons"]) <= 64 else "neurons"
    return json.dumps(key)


def matches(config, **want) -> bool:
    """Whether a patching config has these ``RUN_KEY`` fields (and ``method``/``component``, if given)."""
    c = _config(config)
    component = want.pop("component", None)
    if component is not None and component not in c.get("components", ()):
        return False
    return all(c.get(k) == v for k, v in want.items())


def differences(result_a: Result, result_b: Result) -> list[str]:
    """Why two patching runs measure different things (empty: they are comparable)."""
    out = []
    ha, hb = pairs_hash(result_a.table("pairs")), pairs_hash(result_b.table("pairs"))
    if ha != hb:
        out.append(f"they patch different pairs ({result_a.config.dataset!r} n={result_a.config.n} vs "
                   f"{result_b.config.dataset!r} n={result_b.config.n}; pair hashes {ha} vs {hb})")
    for name in ("metric", "direction", "neuron_pos"):
        va, vb = getattr(result_a.config, name), getattr(result_b.config, name)
        if va != vb:
            out.append(f"{name} {va!r} vs {vb!r}")
    return out


def joined(result_a: Result, result_b: Result, force: bool = False) -> pd.DataFrame:
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


def compare(result_a: Result, result_b: Result, k: int = 10, force: bool = False) -> pd.DataFrame:
    """Per component type: pearson, spearman (pooled over every pair, layer and unit), pearson_mean (over the
    means across pairs), top_k_overlap, n (and ``forced``: the differences overridden with ``force``). Put the
    ground truth (activation patching) in ``result_a``."""
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
            "pearson": correlation(df.score_a, df.score_b),
            "spearman": correlation(df.score_a, df.score_b, "spearman"),
            "pearson_mean": correlation(means.score_a, means.score_b),
            "top_k_overlap": len(top_a & top_b) / kk if kk else float("nan"),
            "k": kk,
            "n": len(df),
            **({"forced": forced} if forced else {}),
        })
    return pd.DataFrame(rows)


def stored_patching(model, dataset: str, n: int, method: str, component: str) -> Result:
    """The newest stored patching run of ``method`` on this model's weights and these pairs, with ``component``
    among its components (logit difference, denoising: the faithfulness protocol)."""
    path = newest_run("patching", model.weights_hash, where=lambda c: matches(
        c, method=method, dataset=dataset, n=n, component=component, metric="logit_diff", direction="denoising"))
    if path is None:
        raise InterpError(f"no stored {method} patching of {component} on {dataset!r} (n={n}) for {model.spec}: "
                          f"run `interp patch --model {model.spec} --method {method} --dataset {dataset} --n {n} "
                          f"--components {component}` first")
    return load_result(path)


def neuron_scores(result: Result, layer: int) -> pd.Series:
    """One patching run's mean score over pairs of each neuron of ``layer`` (index: neuron)."""
    df = result.table("scores")
    df = df[(df.component == "neurons") & (df.layer == layer)]
    return df.groupby("unit").score.mean()


def groups(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Stored patching runs (an index from ``list_runs``: pinned, then newest first) grouped by ``run_key``:
    ``{key: [paths, pinned then newest first]}``. A group holding a pinned run comes first; then the most
    complete (whole groups before Verify subsets, then the most methods, then the most pairs), so a default
    never lands on a Verify."""
    out: dict[str, list[str]] = {}
    methods: dict[str, set] = {}
    pinned: set[str] = set()
    flags = runs.pinned if "pinned" in runs else [False] * len(runs)
    for path, cfg, pin in zip(runs.path, runs.config, flags) if len(runs) else []:
        c = json.loads(cfg)
        key = run_key(c)
        out.setdefault(key, []).append(str(path))
        methods.setdefault(key, set()).add(c.get("method"))
        if pin:
            pinned.add(key)

    def completeness(key: str) -> tuple:
        k = json.loads(key)
        return (key in pinned, "subset" not in k, len(methods[key]), k.get("n") or 0)

    return dict(sorted(out.items(), key=lambda kv: completeness(kv[0]), reverse=True))


def comparison(results: list[Result]) -> dict:
    """For one comparable group (newest first): the newest run per method (skipping neuron-only runs where a
    full run exists) as paths, and the faithfulness table of each method against activation."""
    main = [r for r in results if list(r.config.components) != ["neurons"]] or results
    newest: dict[str, Result] = {}
    for r in main:
        newest.setdefault(r.metrics["method"], r)
    methods = [m for m in METHODS if m in newest]
    table = None
    if "activation" in newest and len(methods) > 1:
        table = pd.concat([compare(newest["activation"], newest[m]).assign(method=m)
                           for m in methods if m != "activation"], ignore_index=True)
    return {"methods": methods, "paths": {m: str(r.path) for m, r in newest.items()}, "faithfulness": table}


def layer_neuron_scores(results: list[Result], layer: int, k: int = 10) -> tuple[str, pd.DataFrame] | None:
    """The top neurons of one MLP layer by mean score, from the first run with neuron scores there
    (``(method, table)``), or None."""
    for r in results:
        if "neurons" not in r.config.components:
            continue
        scores = neuron_scores(r, layer)
        if len(scores):
            top = scores.rename("mean_score").reset_index()
            top = top.reindex(top.mean_score.abs().sort_values(ascending=False).index).head(k)
            return r.metrics["method"], top.reset_index(drop=True)
    return None


def verify_patching(model, neuron, run: Result, k: int = 5, save: bool = True) -> dict:
    """Check a stored cheap score on the spot: activation patching (the ground truth) of the neuron and of its
    layer's top ``k`` neurons by ``run``'s score, on ``run``'s pairs, metric, direction and position. Returns
    the table (neuron, predicted = the stored score, activation = the patched effect, both means over pairs),
    Pearson and Spearman over those neurons and over every (pair, neuron), the share of matching signs, and
    the activation-patching Result (stored when ``save``)."""
    nid = model.check_neuron(neuron)
    if "neurons" not in run.config.components:
        raise InterpError(f"run {run.run_id} has no neuron scores: verify a run with --components neurons")
    scores = neuron_scores(run, nid.layer)
    if scores.empty:
        raise InterpError(f"run {run.run_id} has no neuron scores in layer {nid.layer}")
    chosen = sorted({nid.index, *scores.abs().sort_values(ascending=False).index[:k].tolist()})
    c = run.config
    config = type(c)(dataset=c.dataset, n=c.n, seed=c.seed, method="activation", components=("neurons",),
                     metric=c.metric, direction=c.direction, layers=(nid.layer,), neuron_pos=c.neuron_pos,
                     neurons=tuple(int(n) for n in chosen))
    truth = run_registered("patching", model, config, save=save)
    true_scores = neuron_scores(truth, nid.layer)
    table = pd.DataFrame({"neuron": chosen, "predicted": scores.reindex(chosen).to_numpy(),
                          "activation": true_scores.reindex(chosen).to_numpy()})

    def part(r):
        df = r.table("scores")
        return df[(df.component == "neurons") & (df.layer == nid.layer) & df.unit.isin(chosen)][
            ["pair", "unit", "score"]]

    per_pair = part(run).merge(part(truth), on=["pair", "unit"], suffixes=("_p", "_a"))
    mine = table[table.neuron == nid.index].iloc[0]
    return {"method": run.metrics["method"], "table": table, "result": truth,
            "neuron": {"predicted": float(mine.predicted), "activation": float(mine.activation)},
            "pearson": _finite_or_none(correlation(table.predicted, table.activation) if len(table) >= 3 else None),
            "spearman": _finite_or_none(correlation(table.predicted, table.activation, "spearman")
                                        if len(table) >= 3 else None),
            "pearson_per_pair": _finite_or_none(correlation(per_pair.score_p, per_pair.score_a)
                                                if len(per_pair) >= 3 else None),
            "sign_agreement": float((np.sign(table.predicted) == np.sign(table.activation)).mean())}


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


# --- card sections ------------------------------------------------------------------------------------

@card_section("patching", "Patching", order=40)
def patching_section(ctx: CardContext) -> Section:
    """The neuron's score and rank in its layer on each stored neuron-level patching run: the newest full run
    per method and comparable group, and every Verify run."""
    nid = ctx.neuron
    section = Section("patching", "Patching", missing=f"`interp patch{ctx.spec_flag} --method relp --components "
                                                      "neurons` (and --method attribution)")
    rows, seen = [], set()
    for path in ctx.store.paths("patching", lambda c: "neurons" in c.get("components", ())
                                and (not c.get("layers") or nid.layer in c["layers"])):
        result = ctx.store.load(path)
        scores = neuron_scores(result, nid.layer)
        c = result.config
        key = (result.metrics["method"], run_key(c), c.rules)
        if nid.index not in scores.index or (key in seen and not c.neurons):
            continue  # newest first: one full run per method and comparable group (Verify runs all listed)
        seen.add(key)
        order = scores.abs().sort_values(ascending=False)
        rows.append({"method": result.metrics["method"], "dataset": c.dataset,
                     "n_pairs": int(result.metrics["n_pairs"]),
                     "metric": c.metric, "direction": c.direction, "neuron_pos": c.neuron_pos,
                     "score": float(scores[nid.index]), "rank": int(order.index.get_loc(nid.index)) + 1,
                     "of": len(scores), "subset": bool(c.neurons), "path": path,
                     "layer_top": [{"neuron": int(u), "score": float(scores[u])} for u in order.index[:5]]})
        section.sources.append(path)
    if rows:
        section.data = {"runs": rows}
    return section


@patching_section.html
def _patching_html(section: Section, nid) -> str:
    return table_html(section.data["runs"], ["method", "dataset", "n_pairs", "metric", "score", "rank", "of"]) + \
        note("score: the neuron's mean over pairs; rank: by |score| among the layer's neurons.")


@patching_section.text
def _patching_text(d: dict) -> str:
    return "; ".join(f"{r['method']} {r['score']:+.4f} (rank {r['rank']}/{r['of']})" for r in d["runs"])


@card_section("tracing", "Causal tracing", order=60)
def tracing_section(ctx: CardContext) -> Section:
    """The neuron's layer's indirect effect in each stored causal trace (MLP, last subject token)."""
    nid = ctx.neuron
    section = Section("tracing", "Causal tracing", missing=f"`interp trace{ctx.spec_flag}`")
    rows = []
    for path in ctx.store.paths("causal_tracing"):
        r = ctx.store.load(path)
        eff = r.table("effects")
        mlp = eff[(eff.kind == "mlp") & (eff.role == "last subject")]
        by_layer = mlp.groupby("layer").effect.mean()
        if nid.layer not in by_layer.index:
            continue
        rows.append({"facts": r.config.facts, "n_facts": int(r.metrics["n_facts"]),
                     "effect": float(by_layer[nid.layer]), "rank": int((by_layer > by_layer[nid.layer]).sum()) + 1,
                     "of": len(by_layer), "peak_layers": r.metrics.get("mlp_peak_layers"),
                     "by_layer": {int(k): float(v) for k, v in by_layer.items()}, "path": path})
        section.sources.append(path)
    if rows:
        section.data = {"runs": rows, "note": "indirect effect of restoring the layer's MLP output (a window of "
                                              "layers around it) at the last subject token, mean over facts"}
    return section


@tracing_section.html
def _tracing_html(section: Section, nid) -> str:
    d, run = section.data, section.data["runs"][0]
    layers = list(run["by_layer"])
    step = max(1, len(layers) // 10)
    bars = svg_bars([max(v, 0.0) for v in run["by_layer"].values()], [f"layer {l}" for l in layers],
                    "Indirect effect of each MLP layer (last subject token)",
                    colors=["#dd6b20" if l == nid.layer else "#a0aec0" for l in layers],
                    ticks=[(i, str(l)) for i, l in enumerate(layers) if i % step == 0 or l == nid.layer], fmt="{:.3f}")
    return (f"<p>Layer {nid.layer}'s MLP: indirect effect <b>{run['effect']:+.3f}</b>, rank {run['rank']} of "
            f"{run['of']} layers (<code>{esc(run['facts'])}</code>, {run['n_facts']} facts). "
            f"{esc(d['note'])}.</p>" + bars)


@tracing_section.text
def _tracing_text(d: dict) -> str:
    r = d["runs"][0]
    return f"layer indirect effect {r['effect']:+.3f} (rank {r['rank']}/{r['of']})"
