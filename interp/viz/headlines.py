"""The headline figures of each analysis, read from stored Results, side by side across models.

``headlines(results)`` turns one model's Results into ``{figure: text}``; ``cross_model(by_model)``
lays several models' headlines out as one table (a row per figure, a column per model), which the
README's cross-model table and ``notebooks/cross_model.ipynb`` print. Nothing is recomputed: a
figure whose Result is missing reads "—".
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from interp.result import Result

CONCEPTS = (" dog", " music", " water")
MISSING = "—"


def _decoding(r: Result) -> dict[str, str]:
    out = {}
    decoded = r.table("decoded")
    top = decoded[decoded.side == "out+"]
    for concept in CONCEPTS:
        rows = top[top.token == concept]
        if rows.empty:
            out[f"decoding: the neuron that ranks {concept!r} highest"] = "in no neuron's top-20"
            continue
        best = rows.sort_values(["rank", "score"], ascending=[True, False]).iloc[0]  # its own top token first
        tokens = top[(top.layer == best.layer) & (top.neuron == best.neuron) & (top.score > 0)]
        words = ", ".join(repr(t) for t in tokens.sort_values("score", ascending=False).token.head(4))
        at = f"rank {int(best['rank'])}; " if int(best["rank"]) else ""
        out[f"decoding: the neuron that ranks {concept!r} highest"] = (
            f"{int(best.layer)}.{int(best.neuron)} ({at}{words})")
    return out


def _atlas(r: Result) -> dict[str, str]:
    n = r.table("neurons")
    peak = n[["max", "min"]].abs().max(axis=1)
    out = {"atlas: tokens · neurons": f"{r.metrics['tokens']:,} · {len(n):,}",
           "atlas: median peak activation magnitude": f"{peak.median():.3g} (max {peak.max():.3g})"}
    if "density" in n:
        out["atlas: median density (magnitude ≥ 10% of peak)"] = f"{n.density.median():.1%}"
    out["atlas: median fraction positive"] = f"{n.frac_positive.median():.1%}"
    return out


def _patching(runs: list[Result]) -> dict[str, str]:
    from interp.analyses.patching.read import compare

    by_method = {}
    for r in runs:
        if list(r.config.components) != ["neurons"] and r.config.dataset == "ioi":  # the builtin pairs' component runs
            by_method.setdefault(r.metrics["method"], r)
    if "activation" not in by_method:
        return {}
    act = by_method["activation"]
    m = act.metrics
    out = {"patching: IOI pairs · clean logit diff": f"{m['n_pairs']} · {m['mean_metric_clean']:.2f}"}
    for method in ("attribution", "relp"):
        if method not in by_method:
            continue
        try:
            table = compare(act, by_method[method]).set_index("component")
        except Exception:  # noqa: BLE001 - runs that are not comparable leave the row out
            continue
        name = "AtP" if method == "attribution" else "RelP"
        out[f"patching: {name} vs activation, Pearson r (mlp_out · heads)"] = " · ".join(
            f"{table.loc[c, 'pearson']:.3f}" if c in table.index else MISSING for c in ("mlp_out", "heads"))
    return out


def _factual(r: Result) -> dict[str, str]:
    m = r.metrics
    heads = r.table("head_summary").set_index(["layer", "head"])
    top = m["top_heads"][0]
    layer, head = map(int, top.split("."))
    return {
        "factual: capitals right at top-1": f"{m['n_correct']} of {m['n_facts']}",
        "factual: top argument-passing head (attention to subject)":
            f"{top} ({heads.loc[(layer, head), 'attn_to_subject']:.2f})",
        "factual: last MLP suppresses the answer (share of facts)": f"{m['share_last_mlp_suppresses']:.0%}",
        "factual: P(answer), without the last MLP": f"{m['mean_p_answer']:.2f} → {m['mean_p_without_last_mlp']:.2f}",
        "factual: DLA decomposition residual (max)": f"{m['dla_residual_max']:.1e}" if "dla_residual_max" in m
        else "not recorded",
    }


def _fix(r: Result) -> dict[str, str]:
    m = r.metrics
    return {"factual-fix: held-out P(answer) · LM loss change":
            f"{m['held_out_p_before']:.3f} → {m['held_out_p_after']:.3f} · {m['corpus_loss_change']:+.1%}"}


def _tracing(r: Result) -> dict[str, str]:
    m = r.metrics
    return {"tracing: MLP peak layers (last subject token)": ", ".join(map(str, m["mlp_peak_layers"][:4])),
            "tracing: restored P · clean · corrupted":
                f"{m['mlp_peak_effect']:.2f} · {m['mean_p_clean']:.2f} · {m['mean_p_corrupt']:.3f}"}


def _unlearning(r: Result) -> dict[str, str]:
    m = r.metrics
    out = {}
    for arm in ("constrained", "unconstrained"):
        if arm in m:
            a = m[arm]
            where = f"MLPs {', '.join(map(str, m['layers']))}" if arm == "constrained" else "all blocks"
            out[f"unlearning, {arm}: forget acc · unseen retain kept · ppl (trained)"] = (
                f"{a['forget_acc']:.1f} · {a['retain_kept']:.0%} · {a['perplexity_change']:+.1%} ({where})")
    return out


def _bigram(r: Result) -> dict[str, str]:
    m = r.metrics
    kl = m["sufficiency_kl"]
    return {"bigram: kept share (steps) · in layer 0's MLP": f"{m['kept_fraction']:.1%} ({m['steps']}) · "
                                                           f"{m['share_in_layer0_mlp']:.1%}",
            "bigram: KL to bigram, subnetwork · full · random":
                f"{kl['subnetwork']:.2f} · {kl['full']:.2f} · {kl['random subnetwork']:.1f}"}


READERS = {"lm_head_decoding": _decoding, "neuron_atlas": _atlas, "factual_recall": _factual,
           "factual_fix": _fix, "causal_tracing": _tracing, "unlearning": _unlearning,
           "bigram_subnetworks": _bigram}


def headlines(results: Iterable[Result]) -> dict[str, str]:
    """One model's headline figures from its Results (the newest of each analysis)."""
    newest: dict[str, Result] = {}
    patching = []
    for r in sorted(results, key=lambda r: r.provenance.get("created", ""), reverse=True):
        if r.analysis == "patching":
            patching.append(r)
        elif r.analysis == "unlearning" and (r.config.forget != "builtin:forget" or r.config.layers):
            continue  # the table compares the builtin split's full run (layers from its trace), not a variant
        else:
            newest.setdefault(r.analysis, r)
    out: dict[str, str] = {}
    for analysis, read in READERS.items():
        if analysis in newest:
            out.update(read(newest[analysis]))
        if analysis == "neuron_atlas":  # keep the table in the data-flow order
            out.update(_patching(patching))
    return out


def cross_model(by_model: dict[str, Iterable[Result]]) -> pd.DataFrame:
    """A row per headline figure, a column per model ("—" where a model has no Result for it)."""
    columns = {model: headlines(results) for model, results in by_model.items()}
    rows = list(dict.fromkeys(k for h in columns.values() for k in h))
    return pd.DataFrame({m: [h.get(k, MISSING) for k in rows] for m, h in columns.items()},
                        index=pd.Index(rows, name="figure"))


def from_store(roots, models=("smollm2-135m", "gemma3-270m")) -> dict[str, list[Result]]:
    """Every stored Result of ``models`` under the store ``roots`` (missing roots are skipped)."""
    from pathlib import Path

    from interp.storage import list_runs, load_result

    by_model: dict[str, list[Result]] = {m: [] for m in models}
    for root in roots:
        runs = list_runs(root=root) if Path(root).is_dir() else []
        for path, model in zip(runs.path, runs.model) if len(runs) else []:
            if model in by_model:
                by_model[model].append(load_result(path))
    return by_model


def markdown(table: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency); a ``|`` inside a cell is escaped."""
    head = [table.index.name or "", *table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(value) -> str:
        return str(value).replace("|", "\\|")

    lines += ["| " + " | ".join(map(cell, [i, *row])) + " |" for i, row in zip(table.index, table.values)]
    return "\n".join(lines)
