"""The simulators and scorers behind ``explain``: look-up explanations built from train examples, their
simulated activations (per example row, and dense over held-out tokens), the four activation scores against
the held-out truth, the baselines' re-assignments (another neuron's explanation, shuffled tokens), and the
forwards the scores need (dense held-out activations, TokenChange clamps)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from interp.analyses.neurons.atlas import DENSITY_FRACTION
from interp.analyses.neurons.scoring import auroc, average_precision, pearson
from interp.errors import InterpError
from interp.names import hook_name
from interp.result import Result
from interp.tracing import record
from interp.tracing.interventions import Write, intervene
from interp.tracing.reducers import heldout

METRICS = ("iid_corr", "auprc", "top_random_corr", "detection_auroc")
RANDOM_K = 64  # random held-out tokens beside the top examples (top-and-random)
DETECT_LEFT = 3  # tokens before an example that count as its context in detection
OUTPUT_TOP = 10  # promoted tokens a clamp must put the predicted output tokens among
PAIR_MARGIN = 0.1  # a pair enters when it fires this much (of the peak) above its last token alone


def with_prev(rows: pd.DataFrame, tokens: torch.Tensor, left: int = 1) -> pd.DataFrame:
    """``rows`` with ``prev_id`` (-1 at a window's first token) and, for detection, the ``left`` tokens before."""
    T = tokens.shape[1]
    flat = tokens.flatten().numpy()
    at = rows.window.to_numpy().astype(np.int64) * T + rows.pos.to_numpy()
    for o in range(1, left + 1):
        rows[f"prev{o}"] = np.where(rows.pos.to_numpy() >= o, flat[np.maximum(at - o, 0)], -1)
    return rows.rename(columns={"prev1": "prev_id"})


def token_entries(train: pd.DataFrame, top_tokens: int) -> pd.DataFrame:
    """Each neuron's explanation as look-up entries: (``prev_id``, ``token_id``, ``weight``), ``prev_id``
    -1 for a single token. A token's weight is its mean firing value over the neuron's train examples; the
    ``top_tokens`` kept are those that fire (mean at least ``DENSITY_FRACTION``) with the largest summed
    firing value (strength times support). Pairs: seen twice or more among firing examples and firing
    ``PAIR_MARGIN`` above their token's weight; up to half as many."""
    keys = ["layer", "neuron"]
    tok = train.groupby(keys + ["token_id"], observed=True).y.agg(["mean", "size"]).reset_index()
    fired = train[train.y >= DENSITY_FRACTION].groupby(keys + ["token_id"], observed=True).y.sum()
    tok = tok.merge(fired.rename("mass").reset_index(), on=keys + ["token_id"], how="left").fillna({"mass": 0.0})
    tok = tok[(tok["mean"] >= DENSITY_FRACTION) & (tok.mass > 0)]
    tok = tok.sort_values(keys + ["mass"], ascending=[True, True, False]).groupby(keys).head(top_tokens)
    tok = tok.rename(columns={"mean": "weight", "size": "support"}).assign(prev_id=-1)
    firing_rows = train[(train.y >= DENSITY_FRACTION) & (train.prev_id >= 0)]
    pairs = firing_rows.groupby(keys + ["prev_id", "token_id"]).y.agg(["mean", "size"]).reset_index()
    pairs = pairs[pairs["size"] >= 2].merge(tok[keys + ["token_id", "weight"]], on=keys + ["token_id"], how="left")
    pairs = pairs[pairs["mean"] >= pairs.weight.fillna(0) + PAIR_MARGIN]
    pairs = pairs.sort_values(keys + ["mean"], ascending=[True, True, False])
    pairs = pairs.groupby(keys).head(max(1, top_tokens // 2))
    pairs = pairs.drop(columns="weight").rename(columns={"mean": "weight", "size": "support"}).assign(
        mass=lambda d: d.weight * d.support)
    cols = keys + ["prev_id", "token_id", "weight", "support", "mass"]
    out = pd.concat([tok[cols], pairs[cols]], ignore_index=True)
    return out.astype({"prev_id": np.int64, "token_id": np.int64, "weight": np.float32, "support": np.int32})


def _lookup(entries: pd.DataFrame, rows: pd.DataFrame, token_col: str = "token_id", prev_col: str = "prev_id"):
    """The look-up simulator on rows (``layer``, ``neuron``, tokens): a pair's weight, else its token's, else 0."""
    keys = ["layer", "neuron"]
    frame = rows[keys].copy()
    frame["token_id"], frame["prev_id"] = rows[token_col].to_numpy(), rows[prev_col].to_numpy()
    single = entries[entries.prev_id < 0][keys + ["token_id", "weight"]]
    pair = entries[entries.prev_id >= 0][keys + ["prev_id", "token_id", "weight"]].rename(columns={"weight": "pw"})
    frame = frame.merge(single, on=keys + ["token_id"], how="left")
    if len(pair):
        frame = frame.merge(pair, on=keys + ["prev_id", "token_id"], how="left")
        return frame.pw.fillna(frame.weight).fillna(0.0).to_numpy()
    return frame.weight.fillna(0.0).to_numpy()


def predict_rows(entries: pd.DataFrame, rows: pd.DataFrame, left: int = 0) -> np.ndarray:
    """Simulated firing at each row (``left``: the maximum over the row and that many tokens before it)."""
    best = _lookup(entries, rows)
    for o in range(1, left + 1):
        shifted = rows.assign(cur=rows[f"prev{o}" if o > 1 else "prev_id"],
                              before=rows[f"prev{o + 1}"] if o + 1 <= DETECT_LEFT else -1)
        vals = _lookup(entries, shifted, "cur", "before")
        best = np.maximum(best, np.where(shifted.cur.to_numpy() >= 0, vals, 0.0))
    return best


def predict_dense(entries: pd.DataFrame, layer: int, d_mlp: int, tokens: torch.Tensor,
                  prev: torch.Tensor) -> torch.Tensor:
    """Simulated firing of every neuron of ``layer`` at every token: ``[tokens, d_mlp]``."""
    e = entries[entries.layer == layer]
    uniq, inv = torch.unique(tokens, return_inverse=True)
    table = torch.zeros(len(uniq), d_mlp, device="cpu")
    single = e[(e.prev_id < 0) & e.token_id.isin(uniq.numpy())]
    where = torch.searchsorted(uniq, torch.tensor(single.token_id.to_numpy(), device="cpu"))
    weights = torch.tensor(single.weight.to_numpy().astype(np.float32), device="cpu")
    table[where, torch.tensor(single.neuron.to_numpy(), device="cpu").long()] = weights
    pred = table[inv]
    pair = e[e.prev_id >= 0]
    if len(pair):
        V = int(max(int(tokens.max()), int(pair.token_id.max())) + 1)
        code = prev.long().clamp(min=-1) * V + tokens.long()
        pcode = torch.tensor((pair.prev_id.to_numpy() * V + pair.token_id.to_numpy()).astype(np.int64), device="cpu")
        hit = torch.isin(code, pcode)
        if hit.any():
            puniq, pinv = torch.unique(pcode, return_inverse=True)
            ptable = torch.full((len(puniq), d_mlp), torch.nan, device="cpu")
            pweights = torch.tensor(pair.weight.to_numpy().astype(np.float32), device="cpu")
            ptable[pinv, torch.tensor(pair.neuron.to_numpy(), device="cpu").long()] = pweights
            rows = hit.nonzero().squeeze(1)
            vals = ptable[torch.searchsorted(puniq, code[rows]).clamp(max=len(puniq) - 1)]
            pred[rows] = torch.where(vals.isnan(), pred[rows], vals)
    return pred


def render_label(vocab: list[str], entries: pd.DataFrame, promoted: list[int]) -> str:
    """One neuron's label from its entries and promoted tokens, e.g. ``fires on ' France' ' Paris' | after
    ' of'+' France' | promotes ' French'``."""
    def show(ids):
        return " ".join(repr(vocab[int(i)]) for i in ids)

    single = entries[entries.prev_id < 0].sort_values("mass", ascending=False)
    pairs = entries[entries.prev_id >= 0].sort_values("weight", ascending=False)
    parts = [f"fires on {show(single.token_id[:5])}" if len(single) else "fires on no clear token"]
    if len(pairs):
        parts.append("in " + ", ".join(f"{vocab[int(p)]!r}+{vocab[int(t)]!r}"
                                       for p, t in zip(pairs.prev_id[:2], pairs.token_id[:2])))
    if promoted:
        parts.append(f"promotes {show(promoted[:3])}")
    return " | ".join(parts)


def split_windows(tokens: torch.Tensor, split: str, n: int) -> torch.Tensor:
    """The first ``n`` windows of a split (by ``heldout``)."""
    held = heldout(torch.arange(len(tokens), device="cpu"))
    ids = (held if split == "heldout" else ~held).nonzero().squeeze(1)[:n]
    if not len(ids):
        raise InterpError(f"the atlas has no {split} window: build it over more tokens (--tokens)")
    return ids


@torch.no_grad()
def dense_activations(model, tokens: torch.Tensor, layers: list[int], batch_size: int = 8) -> torch.Tensor:
    """Every neuron of ``layers`` at every token of ``tokens`` (``[windows, seq]``): ``[tokens, layers, d_mlp]``."""
    sites = [hook_name("mlp_post", l) for l in layers]
    out = torch.empty(tokens.numel(), len(layers), model.d_mlp, device="cpu")
    T = tokens.shape[1]
    for start in range(0, len(tokens), batch_size):
        batch = tokens[start:start + batch_size]
        with record(model, sites) as acts:
            model(batch.to(model.device))
        rows = slice(start * T, (start + len(batch)) * T)
        for i, site in enumerate(sites):
            out[rows, i] = acts[site].float().flatten(0, 1).cpu()
    return out


@torch.no_grad()
def token_change(model, neurons: pd.DataFrame, contexts: torch.Tensor, k: int = OUTPUT_TOP,
                 batch_size: int = 32, desc: str = "TokenChange") -> list[list[int]]:
    """For each neuron (``layer``, ``neuron``, ``value``): the ``k`` tokens whose log-probability at the last
    position rises most, averaged over ``contexts``, when it is clamped to ``value`` there."""
    C = len(contexts)
    clean = model(contexts.to(model.device))[:, -1].float().log_softmax(-1).cpu()  # [C, vocab]
    rows = [(i, c) for i in range(len(neurons)) for c in range(C)]
    layer, index, value = (neurons[c].to_numpy() for c in ("layer", "neuron", "value"))
    delta = torch.zeros(len(neurons), model.d_vocab, device="cpu")
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, file=sys.stderr, leave=False):
        chunk = rows[start:start + batch_size]
        who = np.array([i for i, _ in chunk])
        ctx = torch.tensor([c for _, c in chunk], device="cpu")
        writes = []
        for l in np.unique(layer[who]):
            sel = np.flatnonzero(layer[who] == l)
            writes.append(Write(hook_name("mlp_post", int(l)), rows=sel.tolist(), positions=-1,
                                units=index[who[sel]].tolist(),
                                value=torch.tensor(value[who[sel]], dtype=torch.float32, device="cpu")))
        with intervene(model, writes):
            logp = model(contexts[ctx].to(model.device))[:, -1].float().log_softmax(-1).cpu()
        delta.index_add_(0, torch.tensor(who, device="cpu"), (logp - clean[ctx]) / C)
    return delta.topk(k, dim=1).indices.tolist()


@dataclass
class Heldout:
    """What the scores read: the dense held-out tokens and activations, and the held-out examples."""
    tokens: torch.Tensor  # [N] token ids
    prev: torch.Tensor  # [N] the token before (-1 at a window's start)
    y: torch.Tensor  # [N, n_neurons] firing value (sign * activation / peak), neurons in ``fire``'s order
    seq_len: int
    examples: pd.DataFrame  # held-out examples with y, prev tokens
    random_rows: torch.Tensor  # [RANDOM_K] rows of the dense tokens for top-and-random


def _dense_context_max(pred: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Each token's simulated maximum over it and ``DETECT_LEFT`` tokens before it in its window."""
    p = pred.view(-1, seq_len, pred.shape[-1])
    out = p.clone()
    for o in range(1, DETECT_LEFT + 1):
        out[:, o:] = torch.maximum(out[:, o:], p[:, :-o])
    return out.view_as(pred)


def _padded(df: pd.DataFrame, col: str, index: pd.MultiIndex) -> tuple[torch.Tensor, torch.Tensor]:
    """``df[col]`` per neuron as ``[n_neurons, max_count]`` with a mask, neurons in ``index``'s order."""
    code = index.get_indexer(pd.MultiIndex.from_frame(df[["layer", "neuron"]]))
    df = df.assign(_code=code)[code >= 0]
    slot = df.groupby("_code").cumcount().to_numpy(copy=True)
    width = int(slot.max()) + 1 if len(slot) else 1
    vals = torch.zeros(len(index), width, dtype=torch.float64, device="cpu")
    mask = torch.zeros(len(index), width, dtype=torch.bool, device="cpu")
    vals[df._code.to_numpy(copy=True), slot] = torch.tensor(df[col].to_numpy().astype(np.float64), device="cpu")
    mask[df._code.to_numpy(copy=True), slot] = True
    return vals, mask


def score(entries: pd.DataFrame, fire: pd.DataFrame, held: Heldout, d_mlp: int,
          tokens: torch.Tensor | None = None, prev: torch.Tensor | None = None,
          examples: pd.DataFrame | None = None) -> pd.DataFrame:
    """The four activation scores of every neuron in ``fire`` for the explanations ``entries``. ``tokens``,
    ``prev`` and ``examples`` replace the held-out ones (the shuffled-tokens baseline)."""
    tokens = held.tokens if tokens is None else tokens
    prev = held.prev if prev is None else prev
    examples = held.examples if examples is None else examples
    index = pd.MultiIndex.from_frame(fire[["layer", "neuron"]])
    out = {m: np.full(len(fire), np.nan, dtype=np.float32) for m in METRICS}
    ex = examples.assign(pred=predict_rows(entries, examples), ctx=predict_rows(entries, examples, left=DETECT_LEFT))
    top = ex[ex.which == "top"]
    fires = ex[ex.y >= DENSITY_FRACTION]
    for layer in fire.layer.unique():
        cols = np.flatnonzero(fire.layer.to_numpy() == layer)
        neurons = fire.neuron.to_numpy()[cols]
        pred = predict_dense(entries, int(layer), d_mlp, tokens, prev)[:, neurons]
        y = held.y[:, cols]
        out["iid_corr"][cols] = pearson(pred, y).numpy()
        out["auprc"][cols] = average_precision(pred, y >= DENSITY_FRACTION).numpy()
        sub = index[cols]
        tv, tm = _padded(top.assign(p=top.pred), "p", sub)
        ty, _ = _padded(top, "y", sub)
        rp, ry = pred[held.random_rows].T.double(), y[held.random_rows].T.double()
        both_p, both_y = torch.cat([tv, rp], 1), torch.cat([ty, ry], 1)
        mask = torch.cat([tm, torch.ones_like(rp, dtype=torch.bool)], 1)
        out["top_random_corr"][cols] = pearson(both_p.T, both_y.T, mask.T).numpy()
        pv, pm = _padded(fires, "ctx", sub)
        ctx = _dense_context_max(pred, held.seq_len).T
        quiet = _dense_context_max(y, held.seq_len) < DENSITY_FRACTION  # a context where it fires nowhere
        out["detection_auroc"][cols] = auroc(pv, pm, ctx, quiet.T).numpy()
    return pd.DataFrame({"layer": fire.layer.to_numpy(), "neuron": fire.neuron.to_numpy(), **out})


def derangement(n: int, generator: torch.Generator) -> np.ndarray:
    """A random cyclic shift of ``n`` items: nobody keeps its own (for n > 1)."""
    shift = int(torch.randint(1, max(n, 2), (1,), generator=generator, device="cpu")) if n > 1 else 0
    return (np.arange(n) + shift) % max(n, 1)


def reassigned(entries: pd.DataFrame, fire: pd.DataFrame, perm: np.ndarray) -> pd.DataFrame:
    """Each neuron given the explanation of neuron ``perm[i]`` (both in ``fire``'s order)."""
    source = fire.iloc[perm][["layer", "neuron"]].reset_index(drop=True)
    target = fire[["layer", "neuron"]].reset_index(drop=True)
    mapping = pd.DataFrame({"layer": source.layer, "neuron": source.neuron,
                            "to_layer": target.layer, "to_neuron": target.neuron})
    moved = entries.merge(mapping, on=["layer", "neuron"])
    return moved.drop(columns=["layer", "neuron"]).rename(columns={"to_layer": "layer", "to_neuron": "neuron"})


def shuffled(held: Heldout, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, pd.DataFrame]:
    """The held-out tokens permuted against their activations (pairs stay pairs), and the examples' tokens
    permuted among the examples."""
    perm = torch.randperm(len(held.tokens), generator=generator, device="cpu")
    ex = held.examples.copy()
    order = torch.randperm(len(ex), generator=generator, device="cpu").numpy()
    cols = ["token_id", "prev_id"] + [f"prev{o}" for o in range(2, DETECT_LEFT + 1)]
    ex[cols] = ex[cols].to_numpy()[order]
    return held.tokens[perm], held.prev[perm], ex


def example_rows(atlas: Result, fire: pd.DataFrame, split: str) -> pd.DataFrame:
    """The atlas's top, bottom and sampled examples of one split, with ``y``: the firing value (the
    activation times the neuron's sign, over its peak) and the token before each."""
    ex = atlas.table("examples")
    ex = ex[(ex.split == split) & ex.which.isin(["top", "bottom", "sample"]) & (ex.window >= 0)
            & ex.activation.notna()]
    ex = ex[["layer", "neuron", "which", "activation", "window", "pos", "token_id"]].merge(fire, on=["layer", "neuron"])
    ex["y"] = ex.activation * ex.sign / ex.peak
    ex = ex.drop_duplicates(["layer", "neuron", "window", "pos"])  # a top example can be drawn as a sample too
    return with_prev(ex.reset_index(drop=True), atlas.tensors["tokens"], left=DETECT_LEFT)
