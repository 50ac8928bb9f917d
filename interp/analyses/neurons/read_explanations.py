"""Reading a stored ``neuron_explanations`` Result: one neuron's explanation with its held-out scores and
baselines, and the search over every explanation (``read`` re-exports both)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from interp.result import Result

EXPLANATION_METRICS = ("iid_corr", "auprc", "top_random_corr", "detection_auroc")


def neuron_explanation(result: Result, layer: int, neuron: int) -> dict | None:
    """One neuron's stored explanation: its label, each held-out score with its random-explanation,
    shuffled-token and random-weights (median) baselines, the flag, and any LLM explanation."""
    expl = result.table("explanations")
    row = expl[(expl.layer == layer) & (expl.neuron == neuron)]
    if not len(row):
        return None
    sc = result.table("scores")
    s = sc[(sc.layer == layer) & (sc.neuron == neuron)].iloc[0]
    rnd = result.metrics.get("random_weights", {})

    val = lambda col: float(s[col]) if col in s and s[col] == s[col] else None  # noqa: E731 - NaN -> None
    scores = {m: {"score": val(m), "random": val(f"{m}_random"), "shuffled": val(f"{m}_shuffled"),
                  "random_weights_median": rnd.get(m, {}).get("median")} for m in EXPLANATION_METRICS}
    out = {"label": str(row.label.iloc[0]), "explainer": "token statistics", "scores": scores,
           "flagged": bool(s["flagged"]),
           "note": "token statistics (a look-up of the tokens it fires on, and its decoding's promoted tokens), not "
                   "prose; every score is on held-out windows the explanation never read"}
    if "llm" in result.tables:
        llm = result.table("llm")
        hit = llm[(llm.layer == layer) & (llm.neuron == neuron)]
        out["llm"] = [{"explainer": r.explainer, "explanation": r.explanation, "iid_corr": float(r.iid_corr),
                       "iid_corr_random": float(r.iid_corr_random)} for r in hit.itertuples()]
    return out


def search_explanations(result: Result, query: str, vocab: list[str], k: int = 20) -> pd.DataFrame:
    """Neurons whose explanation matches ``query`` (every word, case aside, as a whole word): in the label or
    an LLM's explanation, or spelled by one of the tokens it fires on; the better-scored first."""
    words = [w for w in query.lower().split() if w]
    if not words:
        return pd.DataFrame(columns=["layer", "neuron", "label", "iid_corr", "flagged"])
    expl = result.table("explanations")[["layer", "neuron", "label"]]
    text = expl.label.str.lower()
    if "llm" in result.tables:
        llm = result.table("llm")[["layer", "neuron", "explanation"]]
        extra = expl[["layer", "neuron"]].merge(llm, how="left", on=["layer", "neuron"]).explanation.fillna("")
        text = text + " " + extra.str.lower().to_numpy()
    entries = result.table("entries")
    spelled = pd.Series([vocab[int(t)].strip().lower() for t in entries.token_id], index=entries.index)
    hit = np.ones(len(expl), dtype=bool)
    keys = pd.MultiIndex.from_frame(expl[["layer", "neuron"]])
    for w in words:
        by_token = pd.MultiIndex.from_frame(entries.loc[spelled == w, ["layer", "neuron"]])
        whole_word = text.str.contains(rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])", regex=True).to_numpy()
        hit &= whole_word | keys.isin(by_token)
    scores = result.table("scores")[["layer", "neuron", "iid_corr", "flagged"]]
    found = expl[hit].merge(scores, on=["layer", "neuron"])
    return found.sort_values("iid_corr", ascending=False).head(k).reset_index(drop=True)
