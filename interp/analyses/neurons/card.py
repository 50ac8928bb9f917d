"""The neuron card: what every stored analysis says about one neuron, joined on one page.

``neuron_card(model, "29.808")`` reads the newest stored Result of each analysis on the
model's weights (``$INTERP_RUNS``) and keeps the part about this neuron. Nothing heavy runs:
the atlas stores its examples' per-token activations, the decoding its token lists, patching
its per-neuron scores. A section whose Result is missing says which command computes it.

Sections (``SECTIONS``):

- ``identity``: layer, index, weight norms against the layer's median, model and weights hash;
- ``decoding``: promoted and suppressed tokens on the output side, taken on the neuron's typical
  side (``out-`` for a neuron whose mean activation is negative), and the up/gate input sides;
- ``activations``: the atlas's moments, quantiles, density and histogram, top and bottom
  contexts and, for GLU models, each gate/up sign quadrant's share of tokens and top contexts;
- ``patching``: the neuron's score on each stored neuron-level patching run (attribution, RelP,
  activation), its rank in its layer; ``verify_patching`` runs activation patching on it;
- ``factual``: its mean DLA on each stored factual-recall decomposition of its layer, its rank,
  the facts it pushes and suppresses most; the factual fix's effect where its layer was fixed;
- ``tracing``: its layer's indirect effect in each stored causal trace (MLP, last subject token);
- ``unlearning``: per stored edit, the change of its gate row, up row and down column and of its
  activation on the forget and the retain facts;
- ``bigram``: the kept share of its gate row, up row and down column in each stored subnetwork;
- ``clamp``: a dose-response curve (``interp.analyses.neurons.clamping.dose_response``) when asked.

The JSON export (``NeuronCard.to_dict``) follows Neuronpedia's field names where one exists
(``modelId``, ``layer``, ``index``, ``pos_str``/``pos_values``, ``neg_str``/``neg_values``,
``frac_nonzero``, ``maxActApprox``, ``freq_hist_data_bar_heights``/``_values``, and
``activations`` of ``{tokens, values, maxValue, maxValueTokenIndex}``), and keeps every section
under ``sections``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from interp.analyses.neurons.atlas import contexts
from interp.analyses.neurons.decoding import neuron_tokens, typical_activation
from interp.analyses.subnetworks.bigram_subnetworks import unpack
from interp.errors import InterpError
from interp.names import NeuronId
from interp.result import Result
from interp.storage import list_runs, load_result
from interp.tracing.reducers import QUADRANTS

SECTIONS = {
    "identity": "Identity",
    "decoding": "Decoding (LM head)",
    "activations": "Activations",
    "patching": "Patching",
    "factual": "Factual recall",
    "tracing": "Causal tracing",
    "unlearning": "Unlearning edits",
    "bigram": "Bigram subnetwork",
    "clamp": "Clamp",
}
CONTEXT_K = 5  # top and bottom contexts on the card
QUADRANT_CONTEXT_K = 2


@dataclass
class Section:
    key: str
    title: str
    data: dict | None = None  # None: no stored Result says anything yet
    missing: str | None = None  # what to run to fill it
    sources: list[str] = field(default_factory=list)  # the runs it was read from

    @property
    def available(self) -> bool:
        return self.data is not None

    def to_dict(self) -> dict:
        return {"title": self.title, "available": self.available, "missing": self.missing,
                "sources": self.sources, "data": self.data}


@dataclass
class NeuronCard:
    model: str
    weights_hash: str
    neuron: NeuronId
    sections: dict[str, Section]

    def __getitem__(self, key: str) -> Section:
        return self.sections[key]

    def to_dict(self) -> dict:
        """The card as plain data, with Neuronpedia's field names where one exists."""
        out = {"modelId": self.model, "layer": self.neuron.layer, "index": self.neuron.index,
               "neuron": str(self.neuron), "weights_hash": self.weights_hash}
        dec = self.sections["decoding"].data
        if dec:
            out.update(pos_str=[t["token"] for t in dec["promoted"]], pos_values=[t["score"] for t in dec["promoted"]],
                       neg_str=[t["token"] for t in dec["suppressed"]],
                       neg_values=[t["score"] for t in dec["suppressed"]])
        act = self.sections["activations"].data
        if act:
            out.update(frac_nonzero=act["stats"].get("density"), maxActApprox=act["stats"]["max_abs"],
                       freq_hist_data_bar_heights=act["histogram"]["counts"],
                       freq_hist_data_bar_values=act["histogram"]["centers"],
                       activations=[_neuronpedia_activation(c) for c in act["contexts"]["top"]])
        out["sections"] = {k: s.to_dict() for k, s in self.sections.items()}
        return _plain(out)

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, **kw)


def _neuronpedia_activation(ctx: dict) -> dict:
    values = [v if v is not None and math.isfinite(v) else 0.0 for v in ctx["acts"]]
    return {"tokens": ctx["tokens"], "values": values, "maxValue": max(values, key=abs) if values else 0.0,
            "maxValueTokenIndex": ctx["center"]}


def _plain(x):
    """JSON-safe: numpy scalars to Python, non-finite floats to None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# --- reading the store ------------------------------------------------------------------------

class Store:
    """The stored runs on one model's weights, read through ``load`` (the workbench's cache)."""

    def __init__(self, weights_hash: str, load: Callable[[str], Result] = load_result,
                 runs: pd.DataFrame | None = None):
        runs = list_runs() if runs is None else runs
        self.runs = runs[runs.weights_hash == weights_hash] if len(runs) else runs
        self.load = load

    def paths(self, analysis: str, where: Callable[[dict], bool] | None = None) -> list[str]:
        """Stored runs of ``analysis`` (newest first) whose config passes ``where``."""
        if not len(self.runs):
            return []
        df = self.runs[self.runs.analysis == analysis]
        return [str(p) for p, c in zip(df.path, df.config) if where is None or where(json.loads(c))]

    def newest(self, analysis: str, where=None) -> Result | None:
        paths = self.paths(analysis, where)
        return self.load(paths[0]) if paths else None


def neuron_card(model, neuron: str | NeuronId, store: Store | None = None, sections=tuple(SECTIONS)) -> NeuronCard:
    """Everything the stored Results say about ``neuron`` (see the module docstring)."""
    nid = model.check_neuron(neuron)
    store = store or Store(model.weights_hash)
    atlas = store.newest("neuron_atlas", lambda c: not c.get("layers") or nid.layer in c["layers"])
    typical = _typical(atlas, nid)
    builders = {"identity": lambda: _identity(model, nid), "decoding": lambda: _decoding(model, store, nid, typical),
                "activations": lambda: _activations(model, atlas, nid), "patching": lambda: _patching(store, nid),
                "factual": lambda: _factual(store, nid), "tracing": lambda: _tracing(store, nid),
                "unlearning": lambda: _unlearning(store, nid), "bigram": lambda: _bigram(model, store, nid),
                "clamp": lambda: Section("clamp", SECTIONS["clamp"], missing=(
                    f"computed on request: the card's Run button, or `interp card {nid} --clamp TOKEN`"))}
    out = {}
    for key in sections:
        section = builders[key]()
        section.missing = section.missing if section.data is None else None
        out[key] = section
    return NeuronCard(model.spec, model.weights_hash, nid, out)


def _typical(atlas: Result | None, nid: NeuronId) -> dict | None:
    """The neuron's firing sign and RMS activation in the atlas (``typical_activation``)."""
    if atlas is None or nid.layer not in atlas.tensors["layers"].tolist():
        return None
    typical = typical_activation(atlas)
    row = typical[(typical.layer == nid.layer) & (typical.neuron == nid.index)].iloc[0]
    return {"sign": int(row["sign"]), "rms": float(row["rms"])}


def _spec_flag(model) -> str:
    return "" if model.spec == "smollm2-135m" else f" -m {model.spec}"


# --- sections ---------------------------------------------------------------------------------

def _identity(model, nid: NeuronId) -> Section:
    w = model.weights
    sides = {"out": w.W_out[nid.layer].T, "up": w.W_in[nid.layer]}
    if model.is_glu:
        sides["gate"] = w.W_gate[nid.layer]
    norms = {}
    with torch.no_grad():
        for side, vectors in sides.items():
            layer_norms = vectors.float().norm(dim=1)
            value, median = float(layer_norms[nid.index]), float(layer_norms.median())
            norms[side] = {"value": value, "layer_median": median, "ratio": value / median if median else None}
    info = model.info()
    return Section("identity", SECTIONS["identity"], {
        "layer": nid.layer, "index": nid.index, "model": model.spec, "weights_hash": model.weights_hash,
        "n_layers": model.n_layers, "d_mlp": model.d_mlp, "is_glu": model.is_glu,
        "activation": info.get("act_fn"), "norms": norms,
        "formula": "act(x·W_gate)·(x·W_in)" if model.is_glu else "act(x·W_in + b_in)"})


def _tokens(rows: pd.DataFrame, side: str) -> list[dict]:
    part = rows[rows.side == side].sort_values("rank")
    return [{"token": str(t), "token_id": int(i), "score": float(s)}
            for t, i, s in zip(part.token, part.token_id, part.score)]


def _decoding(model, store: Store, nid: NeuronId, typical: dict | None) -> Section:
    section = Section("decoding", SECTIONS["decoding"], missing=f"`interp decode{_spec_flag(model)}`")
    dec = store.newest("lm_head_decoding", lambda c: not c.get("layers") or nid.layer in c["layers"])
    if dec is None:
        return section
    rows = neuron_tokens(dec, nid.layer, nid.index)
    sign = typical["sign"] if typical else 1
    promoted, suppressed = ("out+", "out-") if sign > 0 else ("out-", "out+")
    section.data = {
        "typical_sign": typical["sign"] if typical else None,
        "promoted_side": promoted, "promoted": _tokens(rows, promoted), "suppressed": _tokens(rows, suppressed),
        "inputs": {side: _tokens(rows, side) for side in ("up+", "up-", "gate+", "gate-") if (rows.side == side).any()},
        "note": ("the neuron fires negative (its strong activations in the atlas are negative), so it promotes "
                 "through its out- side: the tokens its output direction scores lowest" if sign < 0 else
                 "promoted: the tokens its output direction scores highest (it fires positive in the atlas)"
                 if typical else "no atlas: the sign it fires with is unknown, out+ is shown as promoted"),
        "fold_norm": bool(dec.config.fold_norm)}
    section.sources = [str(dec.path)]
    return section


def _activations(model, atlas: Result | None, nid: NeuronId) -> Section:
    section = Section("activations", SECTIONS["activations"],
                      missing=f"`interp atlas{_spec_flag(model)} --corpus sampled:4096+stdlib-docs --tokens 16384`")
    if atlas is None or nid.layer not in atlas.tensors["layers"].tolist():
        return section
    stats = atlas.table("neurons")
    row = stats[(stats.layer == nid.layer) & (stats.neuron == nid.index)].iloc[0]
    slot = atlas.tensors["layers"].tolist().index(nid.layer)
    counts = atlas.tensors["hist"][slot, nid.index].long()
    edges = atlas.tensors["hist_edges"].double()
    # bins: (-inf, e0), [e0, e1), ..., [e_last, inf); the outer two drawn one edge-width beyond
    lo = torch.cat([edges[:1] - (edges[1] - edges[0]), edges])
    hi = torch.cat([edges, edges[-1:] + (edges[-1] - edges[-2])])
    nonzero = counts.nonzero().squeeze(1)
    first, last = (int(nonzero.min()), int(nonzero.max()) + 1) if len(nonzero) else (0, 0)
    q = {c: float(row[c]) for c in stats.columns if c.startswith("q") and c[1:].isdigit()}
    data = {
        "stats": {"max": float(row["max"]), "min": float(row["min"]), "mean": float(row["mean"]),
                  "std": float(math.sqrt(row["var"])), "frac_positive": float(row["frac_positive"]),
                  "density": float(row["density"]) if "density" in row else None,
                  "max_abs": float(max(abs(row["max"]), abs(row["min"]))), "quantiles": q},
        "histogram": {"counts": counts[first:last].tolist(),
                      "centers": ((lo + hi) / 2)[first:last].tolist(), "lo": lo[first:last].tolist(),
                      "hi": hi[first:last].tolist()},
        "corpus": atlas.metrics.get("corpus"), "tokens": int(atlas.metrics["tokens"]),
        "contexts": {which: contexts(model, atlas, nid.layer, nid.index, which, k=CONTEXT_K, width=10)
                     for which in ("top", "bottom")},
    }
    if f"share_{QUADRANTS[0]}" in stats.columns:
        data["quadrants"] = {name: {"share": float(row[f"share_{name}"]),
                                    "contexts": _quadrant_contexts(model, atlas, nid, name)} for name in QUADRANTS}
    section.data, section.sources = data, [str(atlas.path)]
    return section


def _quadrant_contexts(model, atlas, nid, name) -> list[dict]:
    ex = atlas.table("examples")
    has = ex[(ex.layer == nid.layer) & (ex.neuron == nid.index) & (ex.which == name) & (ex.window >= 0)]
    return contexts(model, atlas, nid.layer, nid.index, name, k=QUADRANT_CONTEXT_K, width=10) if len(has) else []


def neuron_scores(result: Result, layer: int) -> pd.Series:
    """One patching run's mean score over pairs of each neuron of ``layer`` (index: neuron)."""
    df = result.table("scores")
    df = df[(df.component == "neurons") & (df.layer == layer)]
    return df.groupby("unit").score.mean()


def _patching(store: Store, nid: NeuronId) -> Section:
    section = Section("patching", SECTIONS["patching"],
                      missing="`interp patch --method relp --components neurons` (and --method attribution)")
    rows, seen = [], set()
    for path in store.paths("patching", lambda c: "neurons" in c.get("components", ())
                            and (not c.get("layers") or nid.layer in c["layers"])):
        result = store.load(path)
        scores = neuron_scores(result, nid.layer)
        c = result.config
        key = (result.metrics["method"], c.dataset, c.n, c.seed, c.metric, c.direction, c.neuron_pos, c.rules)
        if nid.index not in scores.index or (key in seen and not c.neurons):
            continue  # newest first: one full run per method and pair set (verify runs all listed)
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


def _factual(store: Store, nid: NeuronId) -> Section:
    section = Section("factual", SECTIONS["factual"], missing=f"`interp factual --layer {nid.layer}`")
    sets, other_layers, seen = [], [], set()
    for path in store.paths("factual_recall"):  # newest first: one entry per facts set
        r = store.load(path)
        if r.config.facts in seen:
            continue
        if int(r.metrics["mlp_layer"]) != nid.layer:
            other_layers.append(int(r.metrics["mlp_layer"]))
            continue
        dla = r.tensors["neuron_dla"].float()  # [fact, d_mlp]
        facts = r.table("facts")
        known = facts[facts.correct] if r.config.only_correct else facts
        mean = dla.mean(0)
        entry = {"facts": r.config.facts, "n_facts": int(dla.shape[0]), "mean_dla": float(mean[nid.index]),
                 "rank": int((mean > mean[nid.index]).sum()) + 1, "of": int(dla.shape[1]), "path": path}
        if len(known) == dla.shape[0]:
            col = dla[:, nid.index]
            order = col.argsort(descending=True).tolist()
            entry["pushes"] = [_fact(known, col, i) for i in order[:3]]
            entry["suppresses"] = [_fact(known, col, i) for i in order[::-1][:3]]
        sets.append(entry)
        seen.add(r.config.facts)
        section.sources.append(path)
    fixes = []
    for path in store.paths("factual_fix"):
        r = store.load(path)
        if int(r.metrics.get("layer", -1)) != nid.layer or "train_effects" not in r.tables:
            continue
        eff = r.table("train_effects").set_index("neuron").mean_effect
        fixes.append({"mean_effect": float(eff.get(nid.index, float("nan"))),
                      "rank": int((eff.abs() > abs(eff.get(nid.index, 0.0))).sum()) + 1,
                      "chosen": str(nid) in r.metrics.get("neurons", []), "path": path})
        section.sources.append(path)
    if sets or fixes:
        section.data = {"sets": sets, "fixes": fixes}
    elif other_layers:
        section.missing = (f"the stored decompositions are of layer {sorted(set(other_layers))}; "
                           f"`interp factual --layer {nid.layer}` decomposes this one")
    return section


def _fact(known: pd.DataFrame, dla, i: int) -> dict:
    return {"prompt": str(known.prompt.iloc[i]), "answer": str(known.answer.iloc[i]), "dla": float(dla[i])}


def _tracing(store: Store, nid: NeuronId) -> Section:
    section = Section("tracing", SECTIONS["tracing"], missing="`interp trace`")
    rows = []
    for path in store.paths("causal_tracing"):
        r = store.load(path)
        eff = r.table("effects")
        mlp = eff[(eff.kind == "mlp") & (eff.role == "last subject")]
        if mlp.empty:
            continue
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


def _unlearning(store: Store, nid: NeuronId) -> Section:
    section = Section("unlearning", SECTIONS["unlearning"], missing="`interp unlearn`")
    rows, old = [], []
    for path in store.paths("unlearning"):
        r = store.load(path)
        if "neuron_changes" not in r.tables:
            old.append(path)
            continue
        ch = r.table("neuron_changes")
        mine = ch[(ch.layer == nid.layer) & (ch.neuron == nid.index)]
        for row in mine.to_dict("records"):
            rows.append({**row, "layers": r.metrics.get("layers"), "forget": r.config.forget, "path": path})
        section.sources.append(path)
    if rows:
        section.data = {"edits": rows}
    elif section.sources:
        section.missing = (f"the stored edits record no change in layer {nid.layer}; "
                           "`interp unlearn` records every layer")
    elif old:
        section.missing = "the stored unlearning runs predate per-neuron changes: run `interp unlearn` again"
    return section


def mlp_param_names(model, layer: int) -> dict[str, str]:
    """The HF parameter names of one layer's gate, up and down weights (``{"gate": ..., "up": ..., "down": ...}``)."""
    w = model.weights
    views = {"up": w.W_in[layer], "down": w.W_out[layer]}
    if model.is_glu:
        views["gate"] = w.W_gate[layer]
    out = {}
    for part, view in views.items():
        for name, p in model.hf_params.items():
            if p.data_ptr() == view.data_ptr() and p.numel() == view.numel():
                out[part] = name
                break
    return out


def _bigram(model, store: Store, nid: NeuronId) -> Section:
    section = Section("bigram", SECTIONS["bigram"], missing="`interp bigram`")
    names = mlp_param_names(model, nid.layer)
    rows = []
    for path in store.paths("bigram_subnetworks"):
        r = store.load(path)
        entry = {"kept_fraction": float(r.metrics["kept_fraction"]), "steps": r.metrics.get("steps"), "path": path}
        for part, name in names.items():
            stored = r.tensors.get(f"kept/{name}")
            if stored is None:
                continue
            mask = unpack(stored, tuple(model.hf_params[name].shape))
            # a [d_mlp, d_model] Linear holds neuron n's gate/up weights in row n, a [d_model, d_mlp] one its
            # down weights in column n; GPT-2's Conv1D stores the transposes, so read along whichever axis is d_mlp
            by_row = mask.shape[0] == model.d_mlp and (part != "down" or mask.shape[1] != model.d_mlp)
            mine = mask[nid.index] if by_row else mask[:, nid.index]
            entry[part] = {"kept": float(mine.float().mean()), "layer_mean": float(mask.float().mean())}
        rows.append(entry)
        section.sources.append(path)
    if rows:
        section.data = {"runs": rows}
    return section


def export_json(card: NeuronCard, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(card.to_json(indent=1))
    return path


def verify_patching(model, neuron: str | NeuronId, run: Result, k: int = 5, save: bool = True) -> dict:
    """Check a stored cheap score on the spot: activation patching (the ground truth) of the neuron and
    of its layer's top ``k`` neurons by ``run``'s score, on ``run``'s pairs, metric, direction and
    position. Returns the table (neuron, predicted = the stored score, activation = the patched effect,
    both means over pairs), the Pearson and Spearman correlations over those neurons and over every
    (pair, neuron), the share of matching signs, and the activation-patching Result (stored when ``save``)."""
    from interp.analyses.base import run as run_analysis
    from interp.analyses.patching.engine import PatchingConfig

    nid = model.check_neuron(neuron)
    if "neurons" not in run.config.components:
        raise InterpError(f"run {run.run_id} has no neuron scores: verify a run with --components neurons")
    scores = neuron_scores(run, nid.layer)
    if scores.empty:
        raise InterpError(f"run {run.run_id} has no neuron scores in layer {nid.layer}")
    chosen = sorted({nid.index, *scores.abs().sort_values(ascending=False).index[:k].tolist()})
    c = run.config
    config = PatchingConfig(dataset=c.dataset, n=c.n, seed=c.seed, method="activation", components=("neurons",),
                            metric=c.metric, direction=c.direction, layers=(nid.layer,), neuron_pos=c.neuron_pos,
                            neurons=tuple(int(n) for n in chosen))
    truth = run_analysis("patching", model, config, save=save)
    true_scores = neuron_scores(truth, nid.layer)
    table = pd.DataFrame({"neuron": chosen, "predicted": scores.reindex(chosen).to_numpy(),
                          "activation": true_scores.reindex(chosen).to_numpy()})
    per_pair = _per_pair(run, truth, nid.layer, chosen)
    out = {"method": run.metrics["method"], "table": table, "result": truth,
           "neuron": {"predicted": float(table.predicted[table.neuron == nid.index].iloc[0]),
                      "activation": float(table.activation[table.neuron == nid.index].iloc[0])},
           "pearson": _corr(table.predicted, table.activation, "pearson"),
           "spearman": _corr(table.predicted, table.activation, "spearman"),
           "pearson_per_pair": _corr(per_pair.predicted, per_pair.activation, "pearson"),
           "sign_agreement": float((np.sign(table.predicted) == np.sign(table.activation)).mean())}
    return out


def _per_pair(cheap: Result, truth: Result, layer: int, neurons: list[int]) -> pd.DataFrame:
    def part(r):
        df = r.table("scores")
        return df[(df.component == "neurons") & (df.layer == layer) & df.unit.isin(neurons)][["pair", "unit", "score"]]
    return part(cheap).merge(part(truth), on=["pair", "unit"], suffixes=("_p", "_a")).rename(
        columns={"score_p": "predicted", "score_a": "activation"})


def _corr(a: pd.Series, b: pd.Series, method: str) -> float | None:
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return None
    if method == "spearman":  # Pearson of the ranks (no scipy)
        a, b = a.rank(), b.rank()
    return float(a.corr(b))
