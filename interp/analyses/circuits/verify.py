"""Checking a neuron graph by interventions (``interp graph --verify``).

Every intervention is a ``Write`` of the one intervention primitive; each check is one batched
forward pass (a row per intervention).

(a) **Knock-outs.** Each of the ``verify_top`` most influential kept neurons is set, at its
    position, to its mean over a reference corpus and to zero, one per row. The measured change
    of the target metric is compared with the linear model's first-order prediction
    ``-(a - v) * d metric / d a`` (the total effect of the uncut linear model), and the measured
    change of every kept neuron downstream with what the graph's own edges predict (direct edges
    per unit of source activation, summed over the graph's paths). Pearson and sign agreement. A third
    row per node lowers it by ``NUDGE`` (10%) only: there the prediction is off only as far as the linear
    model (frozen patterns and norm scales) differs from the model's own gradient.
(b) **Faithfulness curve.** The neurons at every position of the prompt are ranked (the graph's
    kept neurons first, by influence; then the rest by the size of their total effect); the top
    x% stay free and the rest are mean-ablated; faithfulness is
    ``(m_x - m_none) / (m_clean - m_none)`` for x in ``CURVE`` and for the graph's own neurons.
(c) **Controls.** Random neuron sets with the same number per layer as each top-x% set, and
    ablating random halves of the neurons outside the graph (``HALVES`` draws; mean and spread).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from interp.datasets.corpus import window_tensor
from interp.metrics import correlation, precap_logit
from interp.names import hook_name
from interp.tracing.hooks import record
from interp.tracing.interventions import Write, intervene

CURVE = (1, 2, 5, 10, 20, 50, 100)
HALVES = 5
MODES = ("mean", "zero", "nudge")  # knock-outs, and a small step where the first-order prediction should hold
NUDGE = 0.1


@dataclass
class Checks:
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@torch.no_grad()
def reference_means(model, source: str, n_tokens: int, n_pos: int) -> Tensor:
    """``[n_layers, n_pos, d_mlp]``: each neuron's mean activation over a corpus's windows, at the first
    position from the windows' first positions (a sequence's first token is unlike any other: it has no left
    context and serves as the attention sink) and elsewhere from every later position."""
    windows = window_tensor(model, source, 64, n_tokens).to(model.device)
    sites = [hook_name("mlp_post", layer) for layer in range(model.n_layers)]
    first = torch.zeros(model.n_layers, model.d_mlp, dtype=torch.float64, device=model.device)
    rest = torch.zeros_like(first)
    for batch in windows.split(16):
        with record(model, sites) as acts:
            model(batch)
        first += torch.stack([acts[s][:, 0].double().sum(0) for s in sites])
        rest += torch.stack([acts[s][:, 1:].double().sum((0, 1)) for s in sites])
    n = windows.shape[0]
    out = (rest / (n * (windows.shape[1] - 1)))[:, None].expand(-1, n_pos, -1).clone()
    out[:, 0] = first / n
    return out.float().cpu()


@torch.no_grad()
def _metric(model, tokens, targets, writes=(), sites=()) -> tuple[Tensor, dict]:
    with intervene(model, list(writes)), record(model, list(sites)) as acts:
        logits = precap_logit(model, model(tokens)[:, -1].float())
    return (targets.values(logits) * targets.weights.to(logits.device)).sum(-1).cpu(), acts


def _pearson_sign(pred, meas) -> tuple[float, float]:
    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    if len(pred) < 3:
        return float("nan"), float("nan")
    big = np.abs(pred) > 1e-6 * max(np.abs(pred).max(), 1e-30)
    sign = float((np.sign(pred[big]) == np.sign(meas[big])).mean()) if big.any() else float("nan")
    return correlation(pred, meas), sign


def knockouts(model, tokens, targets, te, nodes: pd.DataFrame, edges: pd.DataFrame, means: Tensor,
              top: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    kept = nodes[nodes.kind == "neuron"].reset_index(drop=True)
    chosen = kept.sort_values("influence", ascending=False).head(top).reset_index(drop=True)
    n = len(chosen)
    # the graph's per-unit direct edges among kept neurons, and their path sums
    pos_of = {node: i for i, node in enumerate(kept.node)}
    W = torch.zeros(len(kept), len(kept), dtype=torch.float64, device="cpu")
    among = edges[edges.source.isin(pos_of) & edges.target.isin(pos_of)]
    acts = torch.tensor(kept.activation.to_numpy(), dtype=torch.float64, device="cpu")
    t = torch.tensor([pos_of[x] for x in among.target], dtype=torch.long, device="cpu")
    s = torch.tensor([pos_of[x] for x in among.source], dtype=torch.long, device="cpu")
    W[t, s] = torch.tensor(among.weight.to_numpy(), dtype=torch.float64, device="cpu") / acts[s]
    paths = torch.linalg.inv(torch.eye(len(kept), dtype=torch.float64, device="cpu") - W)  # sum over the graph's paths
    clean, clean_acts = _metric(model, tokens, targets, sites=[hook_name("mlp_post", l) for l in range(model.n_layers)])
    sites = [hook_name("mlp_post", l) for l in range(model.n_layers)]
    batch = tokens.expand(n, -1)
    rows, down = [], []
    for mode in MODES:
        values = [float(means[r.layer, r.position, r.neuron]) if mode == "mean" else 0.0 if mode == "zero" else
                  (1 - NUDGE) * r.activation for r in chosen.itertuples()]
        writes = [Write(hook_name("mlp_post", layer), rows=[i for i in range(n) if chosen.layer[i] == layer],
                        positions=[int(chosen.position[i]) for i in range(n) if chosen.layer[i] == layer],
                        units=[int(chosen.neuron[i]) for i in range(n) if chosen.layer[i] == layer],
                        value=torch.tensor([values[i] for i in range(n) if chosen.layer[i] == layer], device="cpu"))
                  for layer in sorted(set(chosen.layer))]
        measured, after = _metric(model, batch, targets, writes, sites)
        for i, r in enumerate(chosen.itertuples()):
            delta = r.activation - values[i]
            rows.append({"node": r.node, "layer": r.layer, "position": r.position, "neuron": r.neuron, "mode": mode,
                         "predicted": -delta / r.activation * r.total_effect,
                         "measured": float(measured[i] - clean[0])})
            effect = -delta * paths[:, pos_of[r.node]]
            for j, k in enumerate(kept.itertuples()):
                if k.layer <= r.layer or k.position < r.position:
                    continue
                got = after[hook_name("mlp_post", k.layer)][i, k.position, k.neuron]
                ref = clean_acts[hook_name("mlp_post", k.layer)][0, k.position, k.neuron]
                down.append({"source": r.node, "target": k.node, "mode": mode, "predicted": float(effect[j]),
                             "measured": float(got - ref)})
    return pd.DataFrame(rows), pd.DataFrame(down)


def _writes(model, masks: Tensor, means: Tensor) -> list[Write]:
    """Mean-ablate, row by row, every neuron-position where ``masks`` ([rows, layer, pos, d_mlp]) is False."""
    return [Write(hook_name("mlp_post", layer), value=means[layer].to(model.device),
                  where=~masks[:, layer].to(model.device)) for layer in range(model.n_layers)]


def curve(model, tokens, targets, te, nodes: pd.DataFrame, means: Tensor, seed: int) -> pd.DataFrame:
    L, P, D = te["acts"].shape
    score = te["effect"].abs().clone()
    kept = nodes[nodes.kind == "neuron"]
    graph = torch.zeros(L, P, D, dtype=torch.bool, device="cpu")
    graph[tuple(torch.tensor(kept[c].to_numpy().copy(), device="cpu") for c in ("layer", "position", "neuron"))] = True
    score[graph] = score.max() + 1 + torch.tensor(kept.influence.to_numpy(), dtype=score.dtype, device="cpu")
    order = score.flatten().argsort(descending=True)
    gen = torch.Generator().manual_seed(seed)
    masks = [torch.ones(L, P, D, dtype=torch.bool, device="cpu"), torch.zeros(L, P, D, dtype=torch.bool, device="cpu")]
    labels = [("clean", 100), ("none", 0)]
    for x in CURVE:
        k = math.ceil(x / 100 * L * P * D)
        top = torch.zeros(L * P * D, dtype=torch.bool, device="cpu")
        top[order[:k]] = True
        top = top.view(L, P, D)
        masks.append(top)
        labels.append(("top", x))
        rand = torch.zeros(L, P * D, dtype=torch.bool, device="cpu")
        for layer in range(L):  # the same number per layer, chosen at random
            m = int(top[layer].sum())
            rand[layer, torch.randperm(P * D, generator=gen, device="cpu")[:m]] = True
        masks.append(rand.view(L, P, D))
        labels.append(("random", x))
    masks.append(graph)
    labels.append(("graph", round(100 * int(graph.sum()) / (L * P * D), 4)))
    outside = torch.nonzero(~graph.flatten()).flatten()
    for h in range(HALVES):  # ablate a random half of the neurons outside the graph
        keep = torch.ones(L * P * D, dtype=torch.bool, device="cpu")
        keep[outside[torch.randperm(len(outside), generator=gen, device="cpu")[: len(outside) // 2]]] = False
        masks.append(keep.view(L, P, D))
        labels.append(("half", h))
    stacked = torch.stack(masks)
    m, _ = _metric(model, tokens.expand(len(masks), -1), targets, _writes(model, stacked, means))
    m_clean, m_none = float(m[0]), float(m[1])
    span = m_clean - m_none
    return pd.DataFrame([{"kind": kind, "x": x, "kept": int(mask.sum()), "metric": float(v),
                          "faithfulness": (float(v) - m_none) / span if abs(span) > 1e-12 else float("nan")}
                         for (kind, x), mask, v in zip(labels, masks, m)])


def verify(model, tokens, targets, te, nodes, edges, config) -> Checks:
    out = Checks()
    means = reference_means(model, config.reference, config.reference_tokens, tokens.shape[1])
    ko, down = knockouts(model, tokens, targets, te, nodes, edges, means, config.verify_top)
    fc = curve(model, tokens, targets, te, nodes, means, config.seed)
    out.tables = {"knockouts": ko, "downstream": down, "faithfulness": fc}
    knocked = ko["mode"] != "nudge"
    for name, df in (("knockout", ko[knocked]), ("downstream", down[down["mode"] != "nudge"]),
                     ("nudge", ko[~knocked]), ("nudge_downstream", down[down["mode"] == "nudge"])):
        r, sign = _pearson_sign(df.predicted, df.measured) if len(df) else (float("nan"), float("nan"))
        if not (np.isfinite(r) and np.isfinite(sign)):  # e.g. nothing measurable moved (bfloat16 rounding)
            out.notes.append(f"{name.replace('_', ' ')}: no correlation (fewer than 3 rows, or the measured or "
                             "predicted changes are all equal); left out of the metrics")
            continue
        out.metrics[f"{name}_pearson"] = r
        out.metrics[f"{name}_sign_agreement"] = sign
    half = fc[fc.kind == "half"].faithfulness
    out.metrics.update({
        "faithfulness_graph": float(fc[fc.kind == "graph"].faithfulness.iloc[0]),
        "faithfulness_halves_mean": float(half.mean()), "faithfulness_halves_std": float(half.std()),
        "curve_top": {int(r.x): float(r.faithfulness) for r in fc[fc.kind == "top"].itertuples()},
        "curve_random": {int(r.x): float(r.faithfulness) for r in fc[fc.kind == "random"].itertuples()},
    })
    if out.metrics.get("knockout_pearson", 0.0) < 0.5:
        out.notes.append(f"weak verification: the knock-outs' measured effects correlate with the linear "
                         f"prediction at Pearson {out.metrics['knockout_pearson']:.2f} only")
    return out
