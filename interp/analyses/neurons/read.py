"""Reading the neurons' stored Results: the LM-head decoding (token -> neurons by raw score or by
specificity, one neuron's decoded tokens, the per-neuron summary) and the atlas (one neuron's statistics,
its firing sign and mass, its contexts, the neurons active on a text). Nothing outside ``neurons/`` opens a
``lm_head_decoding`` or ``neuron_atlas`` Result's tables; the card sections that show them are in
``sections``. The facade reaches the neurons' live computations (clamping, diffs, the card) through here too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor

from interp.analyses.neurons.atlas import CONTEXT_WIDTH, DENSITY_FRACTION
from interp.analyses.neurons.card import NeuronCard, neuron_card
from interp.analyses.neurons.clamping import clamped_generation, dose_response, next_token_table, sweep_values
from interp.analyses.neurons.diff import check_same_shape, diff_models
from interp.analyses.neurons.read_explanations import neuron_explanation, search_explanations
from interp.analyses.sections import Store
from interp.errors import InterpError
from interp.names import hook_name
from interp.result import Result
from interp.tracing import record
from interp.tracing.reducers import HIST_EDGES

__all__ = ["NeuronCard", "Store", "check_same_shape", "clamped_generation", "diff_models", "dose_response",
           "neuron_card", "neuron_explanation", "next_token_table", "search_explanations", "sweep_values"]

# --- the decoding ------------------------------------------------------------------------------------

RANKINGS = ("specificity", "raw")


def neurons_for(result: Result, token_id: int, k: int = 10, side: str = "out", by: str = "raw",
                typical: pd.DataFrame | None = None) -> pd.DataFrame:
    """Inverted index: with ``by="specificity"`` (output side only), ``specific_neurons``; with
    ``by="raw"``, the neurons with the highest raw ``side`` score for ``token_id`` -
    for ``out``, those whose output direction most promotes the token; for ``up`` /
    ``gate``, those whose input weights the token's embedding excites most."""
    if by not in RANKINGS:
        raise InterpError(f"unknown ranking {by!r}: choose specificity or raw")
    if by == "specificity":
        if side != "out":
            raise InterpError(f"the specificity ranking is for the output side, not {side!r}: use by='raw'")
        return specific_neurons(result, token_id, k, typical)
    key = f"{side}_promoters_neuron"
    if key not in result.tensors:
        raise InterpError(f"this decoding run has no {side!r} side; re-run with sides including {side!r}")
    d_mlp = int(result.metrics["d_mlp"])
    flat: Int[Tensor, " k"] = result.tensors[key][:k, token_id]
    return pd.DataFrame({
        "rank": range(len(flat)),
        "layer": (flat // d_mlp).numpy(),
        "neuron": (flat % d_mlp).numpy(),
        "score": result.tensors[f"{side}_promoters_score"][:k, token_id].numpy(),
    })


def neuron_tokens(result: Result, layer: int, neuron: int) -> pd.DataFrame:
    """All decoded rows of one neuron (every side, both signs)."""
    return neuron_rows(result, "decoded", layer, neuron).reset_index(drop=True)


OWN_TOP = 10  # a token is among a neuron's own promoted tokens when it ranks within this many
ACTIVE_SHARE = 0.2  # a side counts for a neuron when it carries at least this share of its firing mass


def typical_activation(atlas: Result | None) -> pd.DataFrame | None:
    """Per neuron of an atlas: its firing mass per sign (``mass_pos``, ``mass_neg``:
    ``firing_mass``), the sign that carries more (``sign``), and the root
    mean square of its activation (``rms``); None without an atlas. Computed once per atlas Result."""
    if atlas is None:
        return None
    cached = getattr(atlas, "_typical", None)
    if cached is not None:
        return cached
    stats = atlas.table("neurons")
    L = len(atlas.tensors["layers"])
    shape = (L, len(stats) // max(L, 1))
    top, bottom = (torch.tensor(stats[c].to_numpy(), device="cpu").view(shape) for c in ("max", "min"))
    pos, neg = firing_mass(atlas.tensors["hist"], top, bottom, int(atlas.metrics["tokens"]))
    pos, neg = pos.flatten().numpy(), neg.flatten().numpy()
    out = pd.DataFrame({"layer": stats.layer, "neuron": stats.neuron, "sign": np.where(neg > pos, -1, 1),
                        "mass_pos": pos, "mass_neg": neg, "rms": np.sqrt(stats["var"] + stats["mean"] ** 2)})
    atlas._typical = out
    return out


def specific_neurons(result: Result, token_id: int, k: int = 10, typical: pd.DataFrame | None = None) -> pd.DataFrame:
    """The neurons for which ``token_id`` is most specific: ranked first by whether the token is
    among the neuron's own top ``OWN_TOP`` promoted tokens (or the decoding's ``top_k``, if fewer),
    then by its weighted z-score.

    Promoted means on a side the neuron fires with: ``out+`` for its positive activations, ``out-``
    (the tokens its output direction scores lowest) for its negative ones. With an atlas
    (``typical = typical_activation(atlas)``) a side counts when it carries at least ``ACTIVE_SHARE``
    of the neuron's firing mass, and the z-score is weighted by that side's firing mass (over the
    median neuron's), so a neuron that never fires with a sign is not listed on that side, and one that
    barely fires ranks low. Without an atlas both sides count with weight 1. The z-score is the token's
    score within the neuron's own distribution over the vocabulary.

    Candidates: every neuron whose own top-k (the decoding's ``top_k``) holds the token on either side,
    exactly (from ``decoded``), and the ``top_k`` most specific neurons per side from the index.
    Columns: rank, layer, neuron, side, own_rank (NaN beyond top_k), z, weight, score (z x weight), raw."""
    if "out+_specific_neuron" not in result.tensors:
        raise InterpError("this decoding run has no specificity index (it predates it): run `interp decode` "
                          "again, or rank by the raw score (by='raw')")
    d_mlp = int(result.metrics["d_mlp"])
    decoded = result.table("decoded")
    own = decoded[(decoded.token_id == token_id) & decoded.side.isin(["out+", "out-"])]
    cand = {}
    for row in zip(own.layer.to_numpy(), own.neuron.to_numpy(), own.side.astype(str), own["rank"].to_numpy()):
        cand[(int(row[0]), int(row[1]), row[2])] = int(row[3])
    for sign in "+-":
        for flat in result.tensors[f"out{sign}_specific_neuron"][:, token_id].tolist():
            cand.setdefault((flat // d_mlp, flat % d_mlp, f"out{sign}"), None)
    columns = ["rank", "layer", "neuron", "side", "own_rank", "z", "weight", "score", "raw"]
    if not cand:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame([(l, n, s, np.nan if r is None else r) for (l, n, s), r in cand.items()],
                      columns=["layer", "neuron", "side", "own_rank"])
    summary = result.table("neurons").set_index(["layer", "neuron"])
    idx = pd.MultiIndex.from_frame(df[["layer", "neuron"]])
    mean, std = summary.out_mean.reindex(idx).to_numpy(), summary.out_std.reindex(idx).to_numpy()
    plus = (df.side == "out+").to_numpy()
    df["raw"] = _raw_scores(result, df, token_id)
    df["z"] = np.where(plus, 1, -1) * (df.raw - mean) / np.maximum(std, 1e-12)
    df["weight"] = 1.0
    if typical is not None:
        t = typical.set_index(["layer", "neuron"]).reindex(idx)
        covered = t["mass_pos"].notna().to_numpy()
        mass = np.where(plus, t["mass_pos"].to_numpy(), t["mass_neg"].to_numpy())
        total = (t["mass_pos"] + t["mass_neg"]).to_numpy()
        median = float(np.median(typical.mass_pos + typical.mass_neg)) or 1.0
        active = ~covered | (mass >= ACTIVE_SHARE * total)  # neurons outside the atlas's layers: both sides
        df["weight"] = np.where(covered, mass / median, 1.0)
        df = df[active]
    df["score"] = df.z * df.weight
    df = df.sort_values("score", ascending=False).drop_duplicates(["layer", "neuron"])  # each neuron's best side
    top_tier = (df.own_rank < min(OWN_TOP, int(result.config.top_k))).to_numpy()
    df = df.assign(_tier=~top_tier).sort_values(["_tier", "score"], ascending=[True, False]).drop(columns="_tier")
    df = df.head(k).reset_index(drop=True)
    df.insert(0, "rank", range(len(df)))
    return df[columns]


def _raw_scores(result: Result, df: pd.DataFrame, token_id: int) -> np.ndarray:
    """The raw out score of ``token_id`` for each (layer, neuron) of ``df``: from ``decoded`` where the
    token is in the neuron's lists, else from the z-score index (score = mean + z x std)."""
    d_mlp = int(result.metrics["d_mlp"])
    decoded = result.table("decoded")
    rows = decoded[(decoded.token_id == token_id) & decoded.side.isin(["out+", "out-"])]
    known = {(int(l), int(n)): float(s) for l, n, s in zip(rows.layer, rows.neuron, rows.score)}
    summary = result.table("neurons").set_index(["layer", "neuron"])
    index = {}
    for sign, factor in (("+", 1.0), ("-", -1.0)):
        flats = result.tensors[f"out{sign}_specific_neuron"][:, token_id].tolist()
        zs = result.tensors[f"out{sign}_specific_score"][:, token_id].tolist()
        for flat, z in zip(flats, zs):
            key = (flat // d_mlp, flat % d_mlp)
            row = summary.loc[key]
            index[key] = float(row.out_mean + factor * z * row.out_std)
    return np.array([known.get((l, n), index.get((l, n), np.nan)) for l, n in zip(df.layer, df.neuron)])


def neuron_summary(result: Result, layer: int, neuron: int) -> dict:
    """One neuron's row of the decoding's per-neuron summary: weight norms per side, its layer's median of
    each, and its top promoted token."""
    summary = result.table("neurons")
    rows = summary[summary.layer == layer]
    row = rows[rows.neuron == neuron].iloc[0]
    sides = [c.removesuffix("_norm") for c in summary.columns if c.endswith("_norm")]
    return {"norms": {s: float(row[f"{s}_norm"]) for s in sides},
            "layer_median": {s: float(rows[f"{s}_norm"].median()) for s in sides},
            "top_promoted": str(row["out_top"])}


def layer_summary(result: Result, layer: int, typical: pd.DataFrame | None = None) -> pd.DataFrame:
    """One layer's neurons by output-weight norm, with their top decoded tokens. With an atlas
    (``typical = typical_activation(atlas)``) covering the layer, ``fires`` says the sign that carries more
    of the neuron's firing mass and ``promotes`` is the top token on that side (``out_bottom`` when it fires
    negative: a negative activation writes ``-W_out``); without one, ``fires`` is "?" and ``promotes`` is
    ``out_top``."""
    summary = result.table("neurons")
    rows = summary[summary.layer == layer].sort_values("out_norm", ascending=False)
    sign = pd.Series(0, index=rows.index)
    if typical is not None:
        here = typical[typical.layer == layer].set_index("neuron")["sign"]
        sign = rows.neuron.map(here).fillna(0).astype(int)
    fires = sign.map({1: "+", -1: "−", 0: "?"})
    promotes = rows.out_top.where(sign >= 0, rows.out_bottom) if "out_bottom" in rows else rows.out_top
    front = ["layer", "neuron", "out_norm"]
    rows = rows.assign(fires=fires, promotes=promotes)
    return rows[front + ["fires", "promotes"] + [c for c in rows.columns if c not in front + ["fires", "promotes"]]]


# --- the atlas ---------------------------------------------------------------------------------------

def atlas_layers(atlas: Result) -> list[int]:
    return atlas.tensors["layers"].tolist()


def atlas_row(atlas: Result, layer: int, neuron: int) -> dict | None:
    """The atlas's statistics of one neuron (None when the atlas lacks its layer)."""
    if layer not in atlas_layers(atlas):
        return None
    stats = atlas.table("neurons")
    return stats[(stats.layer == layer) & (stats.neuron == neuron)].iloc[0].to_dict()


def stored_width(atlas: Result) -> int:
    """How many tokens either side of an example the atlas stored activations for (its contexts' width)."""
    return int(atlas.metrics.get("context_width", CONTEXT_WIDTH))


def histogram(atlas: Result, layer: int, neuron: int) -> dict:
    """The neuron's activation histogram, trimmed to its non-empty bins: counts, bin bounds and centres (the
    open outer bins drawn one edge-width beyond the last edge)."""
    slot = atlas_layers(atlas).index(layer)
    counts = atlas.tensors["hist"][slot, neuron].long()
    edges = atlas.tensors["hist_edges"].double()
    lo = torch.cat([edges[:1] - (edges[1] - edges[0]), edges])
    hi = torch.cat([edges, edges[-1:] + (edges[-1] - edges[-2])])
    nonzero = counts.nonzero().squeeze(1)
    first, last = (int(nonzero.min()), int(nonzero.max()) + 1) if len(nonzero) else (0, 0)
    return {"counts": counts[first:last].tolist(), "centers": ((lo + hi) / 2)[first:last].tolist(),
            "lo": lo[first:last].tolist(), "hi": hi[first:last].tolist()}


def neuron_rows(result: Result, table: str, layer: int, neuron: int) -> pd.DataFrame:
    """Every row of one neuron in a Result's ``table`` (the atlas's examples, a decoding's tokens), found through an
    index built once per Result and table (a sort by neuron; a card looked them up by boolean masks over all rows,
    millions, many times)."""
    indexes = result.__dict__.setdefault("_by_neuron", {})
    if table not in indexes:
        df = result.table(table)
        key = df.layer.to_numpy().astype(np.int64) << 32 | df.neuron.to_numpy().astype(np.int64)
        order = np.argsort(key, kind="stable")
        indexes[table] = (key[order], order)
    keys, order = indexes[table]
    want = np.int64(layer) << 32 | np.int64(neuron)
    lo, hi = np.searchsorted(keys, want, "left"), np.searchsorted(keys, want, "right")
    return result.table(table).iloc[order[lo:hi]]


def neuron_examples(atlas: Result, layer: int, neuron: int) -> pd.DataFrame:
    """Every stored example row of one neuron in the atlas."""
    return neuron_rows(atlas, "examples", layer, neuron)


def example_records(atlas: Result, layer: int, neuron: int) -> list[dict]:
    """The neuron's stored example rows as plain dicts, ordered by rank (a card reads them about ten times: kept
    for the last neuron asked)."""
    memo = atlas.__dict__.get("_records")
    if memo is None or memo[0] != (layer, neuron):
        rows = neuron_examples(atlas, layer, neuron).to_dict("records")
        memo = atlas.__dict__["_records"] = ((layer, neuron), sorted(rows, key=lambda r: r["rank"]))
    return memo[1]


def stored_contexts(atlas: Result, layer: int, neuron: int, which: str) -> int:
    """How many of the neuron's ``which`` examples the atlas stored per-token activations for (0: none)."""
    return sum(r["which"] == which and r.get("context", -1) >= 0 for r in example_records(atlas, layer, neuron))


def has_examples(atlas: Result, layer: int, neuron: int, which: str) -> bool:
    return any(r["which"] == which and r["window"] >= 0 for r in example_records(atlas, layer, neuron))


def firing_mass(hist, top, bottom, n: int) -> tuple:
    """Each neuron's firing mass per sign: the mean over positions of ``activation x [activation >= tau]``
    and of ``|activation| x [activation <= -tau]``, tau a tenth of its peak |activation| (the bins
    ``density`` counts, each at its midpoint; the open outer bins at their edge). It says with which sign
    a neuron fires and how strongly. The mean says less for GLU neurons: a gate closed on most tokens
    gives a bulk of small values of one sign while the neuron fires, rarely and strongly, with the other
    (or with both: SmolLM2's 29.808 fires positive on dogs and negative elsewhere)."""
    edges = HIST_EDGES.double()
    mid = (torch.cat([edges[:1], edges]) + torch.cat([edges, edges[-1:]])) / 2
    inf = torch.tensor([float("inf")], dtype=torch.float64, device="cpu")
    lo, hi = torch.cat([-inf, edges]), torch.cat([edges, inf])
    closest = torch.where(lo >= 0, lo, torch.where(hi <= 0, -hi, torch.zeros_like(lo)))
    tau = DENSITY_FRACTION * torch.maximum(top.abs(), bottom.abs()).double()
    strong = hist.double() * (closest >= tau[..., None]) / max(n, 1)
    return (strong * mid.clamp(min=0)).sum(-1), (strong * (-mid).clamp(min=0)).sum(-1)


@torch.no_grad()
def contexts(model, result: Result, layer: int, neuron: int, which: str = "top", k: int | None = None,
             width: int = 10) -> list[dict]:
    """The stored examples of a neuron (``which``: top, bottom, or a GLU quadrant such as ``g+u-``),
    each with the tokens and this neuron's per-token activations ``width`` tokens either side: read
    from the atlas where it stored them, else re-run exactly (one forward over at most k windows)."""
    rows = [r for r in example_records(result, layer, neuron) if r["which"] == which]
    if not rows:
        raise InterpError(f"the atlas has no neuron {layer}.{neuron} (layers {result.tensors['layers'].tolist()})")
    rows = [r for r in rows[: k or len(rows)] if r["window"] >= 0]
    tokens = result.tensors["tokens"]
    stored = result.tensors.get("context_acts")
    T, W = tokens.shape[1], int(result.metrics.get("context_width", -1))
    rerun = stored is None or width > W or not all(r.get("context", -1) >= 0 for r in rows)
    if rerun:  # not stored: one forward over the windows
        windows = sorted({int(r["window"]) for r in rows})
        site = hook_name("mlp_post", layer)
        with record(model, [site]) as acts:
            model(tokens[windows].long().to(model.device))
        act = acts[site][..., neuron].float().cpu()  # [n_windows, seq_len]
        slot = {w: i for i, w in enumerate(windows)}
    out = []
    for r in rows:
        p, w = int(r["pos"]), int(r["window"])
        lo, hi = max(0, p - width), min(T, p + width + 1)
        acts_ = (act[slot[w], lo:hi] if rerun else stored[int(r["context"]), W - (p - lo): W + (hi - p)])
        out.append({"rank": int(r["rank"]), "activation": float(r["activation"]), "window": w, "pos": p,
                    "tokens": [model.token_str(t) for t in tokens[w, lo:hi].tolist()], "acts": acts_.float().tolist(),
                    "center": p - lo})
    return out


@torch.no_grad()
def active_on_text(model, text: str, layers=None, k: int = 5, atlas: Result | None = None) -> pd.DataFrame:
    """For each token of ``text``, the ``k`` neurons (over ``layers``) that fire most.

    With an ``atlas``, neurons are ranked by activation relative to their own max
    |activation| on the atlas corpus (``relative``), so the few massive-activation
    neurons (thousands, on the first token) do not crowd out the rest. GLU neurons are
    ranked by |activation| (their sign is arbitrary: ``act(gate) * up`` fires either way);
    ReLU/GELU neurons by their signed activation. Tokens follow the model's BOS policy,
    the same as the atlas windows (``interp.datasets.corpus.token_windows``)."""
    layers = list(layers) if layers else list(range(model.n_layers))
    tokens = model.to_tokens(text)
    sites = [hook_name("mlp_post", model.check_layer(l)) for l in layers]
    with record(model, sites) as acts:
        model(tokens)
    stacked = torch.stack([acts[s][0] for s in sites], 1).float()  # [pos, layer, d_mlp]
    flat = stacked.flatten(1)
    scale = None
    if atlas is not None:
        stats = atlas.table("neurons").set_index(["layer", "neuron"])
        peak = stats[["max", "min"]].abs().max(axis=1)
        index = pd.MultiIndex.from_product([layers, range(model.d_mlp)], names=["layer", "neuron"])
        scale = torch.tensor(peak.reindex(index).fillna(float("inf")).to_numpy(), dtype=torch.float32,
                             device=flat.device)
    strength = flat.abs() if model.is_glu else flat
    top = (strength / scale.clamp(min=1e-6) if scale is not None else strength).topk(k, dim=1)
    rows = []
    for pos, (vals, idx) in enumerate(zip(top.values, top.indices)):
        for r, (v, i) in enumerate(zip(vals.tolist(), idx.tolist())):
            rows.append({"pos": pos, "token": model.token_str(int(tokens[0, pos])), "rank": r,
                         "layer": layers[i // model.d_mlp], "neuron": i % model.d_mlp,
                         "activation": float(flat[pos, i]), "relative": v if scale is not None else None})
    return pd.DataFrame(rows)


def token_labels(decoding: Result | None, model, neurons: list[tuple[int, int, float]]) -> dict[tuple[int, int], str]:
    """``(layer, neuron) -> "L.N 'token'"``: each neuron's top decoded output token on the side it fires with
    here (``neurons``: ``(layer, neuron, activation)``; a negative activation writes the suppressed side);
    the bare ids without a stored decoding."""
    labels = {(int(l), int(n)): f"{l}.{n}" for l, n, _ in neurons}
    if decoding is None or not neurons:
        return labels
    df = decoding.table("decoded")
    df = df[(df["rank"] == 0) & df.side.astype(str).isin(["out+", "out-"])]
    top = {(int(r.layer), int(r.neuron), str(r.side)): int(r.token_id) for r in df.itertuples()}
    for l, n, act in neurons:
        token = top.get((int(l), int(n), "out+" if act >= 0 else "out-"))
        if token is not None:
            labels[(int(l), int(n))] += f" {model.token_str(token)!r}"
    return labels
