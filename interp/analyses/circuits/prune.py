"""Pruning a neuron graph by influence on its targets, and its replacement and completeness scores.

The definitions are circuit-tracer's (Ameisen et al., 2025), with "other" nodes in the place of
its error nodes: the adjacency (rows: targets, columns: sources) is made non-negative and
row-normalised; a node's influence is its weight in ``w A + w A^2 + ...`` with ``w`` the logit
weights; nodes are kept up to ``node_threshold`` of the total influence, edges up to
``edge_threshold`` of the edge scores (normalised edge times its target's influence plus logit
weight). Unlike circuit-tracer, a neuron that is pruned is folded into the other node of its
(layer, position), so a kept target's incoming edges still sum to its activation.

- replacement: the share of the targets' influence that reaches the embeddings rather than the
  other nodes (1: every path from the targets ends at a token through kept neurons);
- completeness: the share of each node's incoming edge mass that comes from kept nodes and
  embeddings, weighted by the node's influence on the targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor


def normalise(A: Tensor) -> Tensor:
    """Rows of ``|A|`` summing to 1 (a zero row stays zero)."""
    a = A.abs()
    return a / a.sum(1, keepdim=True).clamp(min=1e-10)


def influence(A_norm: Tensor, w: Tensor, max_iter: int = 1000) -> Tensor:
    """``w A + w A^2 + ...`` for a nilpotent ``A`` (a graph ordered by layer)."""
    step = w @ A_norm
    total = step.clone()
    for _ in range(max_iter):
        step = step @ A_norm
        if not bool(step.any()):
            return total
        total += step
    raise RuntimeError("influence did not converge: the graph has a cycle")


def cut_at(scores: Tensor, share: float) -> float:
    """The smallest score kept when keeping the largest scores up to ``share`` of their sum."""
    s = scores.flatten().sort(descending=True).values
    s = s[s > 0]
    if not len(s):
        return float("inf")
    cum = s.cumsum(0) / s.sum()
    at = torch.searchsorted(cum, torch.tensor(share, dtype=cum.dtype, device=cum.device))
    return float(s[min(int(at), len(s) - 1)])


def edge_scores(A: Tensor, w: Tensor) -> Tensor:
    norm = normalise(A)
    return norm * (influence(norm, w) + w)[:, None]


@dataclass
class Layout:
    """Node order: expanded neurons, other (layer, position), embeddings (position), logit targets."""
    n_neurons: int
    n_layers: int
    n_pos: int
    n_logits: int

    @property
    def other(self) -> int:
        return self.n_neurons

    @property
    def embed(self) -> int:
        return self.n_neurons + self.n_layers * self.n_pos

    @property
    def logit(self) -> int:
        return self.embed + self.n_pos

    @property
    def size(self) -> int:
        return self.logit + self.n_logits

    def other_of(self, layer, pos):
        return self.other + layer * self.n_pos + pos


@dataclass
class Pruned:
    A: Tensor  # [N, N] after folding pruned neurons into other nodes
    keep: Tensor  # [N] bool
    shown: Tensor  # [N, N] bool: edges kept by the edge threshold
    influence: Tensor  # [N]
    layout: Layout
    cand: Tensor  # [n_neurons, 3] layer, position, index of the expanded neurons
    bias: list[float]  # per node row (logits, then expanded neurons)
    values: list[float]
    replacement: float
    completeness: float

    def tables(self, model, tokens, targets, te) -> tuple[pd.DataFrame, pd.DataFrame]:
        lay, L, P = self.layout, self.layout.n_layers, self.layout.n_pos
        strs = [model.token_str(int(t)) for t in tokens[0]]
        rows = []
        K = lay.n_logits
        for i in range(lay.size):
            if not bool(self.keep[i]):
                continue
            if i < lay.other:
                layer, pos, index = (int(x) for x in self.cand[i])
                rows.append(dict(node=f"n{layer}.{index}@{pos}", kind="neuron", layer=layer, position=pos,
                                 neuron=index, activation=float(te["acts"][layer, pos, index]),
                                 total_effect=float(te["effect"][layer, pos, index]), bias=self.bias[K + i]))
            elif i < lay.embed:
                layer, pos = divmod(i - lay.other, P)
                rows.append(dict(node=f"o{layer}@{pos}", kind="other", layer=layer, position=pos, neuron=-1,
                                 activation=float("nan"), total_effect=float("nan"), bias=0.0))
            elif i < lay.logit:
                pos = i - lay.embed
                rows.append(dict(node=f"e@{pos}", kind="embed", layer=-1, position=pos, neuron=-1,
                                 activation=float("nan"), total_effect=float(te["embed"][pos]), bias=0.0))
            else:
                k = i - lay.logit
                rows.append(dict(node=f"logit:{targets.labels[k]}", kind="logit", layer=L, position=P - 1,
                                 neuron=-1, activation=self.values[k], total_effect=float("nan"),
                                 bias=self.bias[k]))
            rows[-1]["influence"] = float(self.influence[i])
            rows[-1]["token"] = strs[rows[-1]["position"]]
            rows[-1]["token_id"] = int(targets.tokens[i - lay.logit][0]) if i >= lay.logit else \
                int(tokens[0, rows[-1]["position"]])
            rows[-1]["index"] = i
        nodes = pd.DataFrame(rows)
        ids = dict(zip(nodes["index"], nodes.node))
        t, s = torch.nonzero(self.A, as_tuple=True)
        ok = self.keep[t] & self.keep[s]
        t, s = t[ok], s[ok]
        edges = pd.DataFrame({"source": [ids[int(i)] for i in s], "target": [ids[int(i)] for i in t],
                              "weight": self.A[t, s].numpy(), "shown": self.shown[t, s].numpy()})
        return nodes.drop(columns="index"), edges


def adjacency(rows, cand: Tensor, n_expand: int, n_logits: int) -> tuple[Tensor, Layout]:
    """The dense adjacency over the graph's nodes from the expanded rows (``graph.Rows``)."""
    _, L, P = rows.shape
    lay = Layout(n_expand, L, P, n_logits)
    A = torch.zeros(lay.size, lay.size, dtype=torch.float64, device="cpu")
    unexpanded = cand[n_expand:]
    other_cols = lay.other_of(unexpanded[:, 0], unexpanded[:, 1])
    for r in range(len(rows.cand)):
        node = lay.logit + r if r < n_logits else r - n_logits
        c = rows.cand[r].double()
        A[node, :n_expand] = c[:n_expand]
        A[node, lay.other:lay.embed] = rows.rest[r].double().flatten()
        A[node].index_add_(0, other_cols, c[n_expand:])
        A[node, lay.embed:lay.logit] = rows.embed[r].double()
    return A, lay


def _fold(A: Tensor, lay: Layout, cand: Tensor, drop: Tensor) -> None:
    """Move the dropped neurons' outgoing edges into their other nodes and clear their rows."""
    idx = torch.nonzero(drop[:lay.n_neurons]).flatten()
    if not len(idx):
        return
    cols = lay.other_of(cand[idx, 0], cand[idx, 1])
    A.index_add_(1, cols, A[:, idx])
    A[:, idx] = 0
    A[idx] = 0


def prune(rows, cand: Tensor, n_expand: int, targets, te, node_threshold: float, edge_threshold: float) -> Pruned:
    K = len(targets.labels)
    A, lay = adjacency(rows, cand, n_expand, K)
    w = torch.zeros(lay.size, dtype=torch.float64, device="cpu")
    w[lay.logit:] = targets.weights.double()
    node_inf = influence(normalise(A), w)
    keep = torch.ones(lay.size, dtype=torch.bool, device="cpu")
    keep[:lay.n_neurons] = node_inf[:lay.n_neurons] >= cut_at(node_inf[:lay.n_neurons], node_threshold)
    _fold(A, lay, cand, ~keep)
    for _ in range(lay.n_layers + 2):  # dangling neurons go (each removal can leave another dangling)
        scores = edge_scores(A, w)
        shown = (scores >= cut_at(scores, edge_threshold)) & (A != 0)
        alive = keep.clone()
        alive[:lay.n_neurons] &= shown[:, :lay.n_neurons].any(0) & shown[:lay.n_neurons].any(1)
        if bool((alive == keep).all()):
            break
        _fold(A, lay, cand, keep & ~alive)
        keep = alive
    norm = normalise(A)
    inf = influence(norm, w)
    embed_inf = float(inf[lay.embed:lay.logit].sum())
    other_inf = float(inf[lay.other:lay.embed].sum())
    replacement = embed_inf / max(embed_inf + other_inf, 1e-30)
    has_rows = A.abs().sum(1) > 0
    outside = 1 - norm[:, lay.other:lay.embed].sum(1)
    weight = (inf + w) * has_rows
    completeness = float((outside * weight).sum() / weight.sum().clamp(min=1e-30))
    return Pruned(A.float(), keep, shown, inf.float(), lay, cand[:n_expand], rows.bias, rows.value,
                  replacement, completeness)
