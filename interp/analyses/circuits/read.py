"""Reading stored neuron graphs: their shown subgraph, circuit-tracer's graph JSON, and the card's section.

The export follows circuit-tracer's graph files (``metadata``, ``qParams``, ``nodes``, ``links``): a
neuron is a node of the new feature type ``"mlp neuron"`` (``node_id`` ``"{layer}_{neuron}_{pos}"``, as
circuit-tracer names a feature), an other node is its ``"mlp reconstruction error"`` (what the graph
does not itemise at that layer and position), embeddings are ``"embedding"`` and the targets ``"logit"``.
"""

from __future__ import annotations

import pandas as pd

from interp.analyses.sections import CardContext, Section, card_section
from interp.render import esc, note, table_html
from interp.result import Result


def shown(result: Result, min_weight: float = 0.0, others: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The graph as drawn: nodes, and the edges kept by the edge threshold with ``|weight| >= min_weight``
    (with ``others=False``, without the other nodes); only nodes that keep an edge (and the targets)."""
    nodes, edges = result.table("nodes"), result.table("edges")
    edges = edges[edges.shown & (edges.weight.abs() >= min_weight)]
    if not others:
        drop = set(nodes.node[nodes.kind == "other"])
        edges = edges[~edges.source.isin(drop) & ~edges.target.isin(drop)]
    used = set(edges.source) | set(edges.target) | set(nodes.node[nodes.kind == "logit"])
    return nodes[nodes.node.isin(used)].reset_index(drop=True), edges.reset_index(drop=True)


def conservation(result: Result) -> pd.DataFrame:
    """Per target node (kept neurons and logits): its activation, the sum of its incoming edges (every
    stored edge, shown or not, the other nodes included) plus its bias remainder, and the gap."""
    nodes, edges = result.table("nodes"), result.table("edges")
    incoming = edges.groupby("target").weight.sum()
    t = nodes[nodes.kind.isin(["neuron", "logit"])].set_index("node")
    out = pd.DataFrame({"activation": t.activation, "edges": incoming.reindex(t.index).fillna(0.0) + t.bias})
    out["gap"] = out.activation - out.edges
    return out


def _ct_id(row, n_layers: int) -> tuple[str, str, int]:
    """circuit-tracer's ``node_id``, ``feature_type`` and ``feature`` for one of our nodes."""
    if row.kind == "neuron":
        return f"{row.layer}_{row.neuron}_{row.position}", "mlp neuron", int(row.neuron)
    if row.kind == "other":
        return f"{row.layer}_-1_{row.position}", "mlp reconstruction error", -1
    if row.kind == "embed":
        return f"E_{row.token_id}_{row.position}", "embedding", int(row.position)
    return f"{n_layers + 1}_{row.token_id}_{row.position}", "logit", int(row.token_id)


def to_graph_json(result: Result, labels: dict[tuple[int, int], str] | None = None) -> dict:
    """The graph in circuit-tracer's graph-file format (shown edges only). ``labels`` maps
    ``(layer, neuron)`` to a label (``clerp``), e.g. an explanation."""
    nodes, edges = shown(result)
    n_layers = int(result.metrics.get("n_layers", nodes.layer.max() - 1))
    ids, out = {}, []
    probs = dict(zip(result.metrics["targets"], result.metrics["target_probs"]))
    for row in nodes.itertuples():
        node_id, kind, feature = _ct_id(row, n_layers)
        ids[row.node] = node_id
        clerp = (labels or {}).get((int(row.layer), int(row.neuron)), "") if row.kind == "neuron" else ""
        if row.kind == "logit":
            clerp = f"Output {row.node.removeprefix('logit:')!r} (p={probs.get(row.node[6:], 0.0):.3f})"
        out.append({"node_id": node_id, "feature": feature, "layer": "E" if row.kind == "embed" else str(
            n_layers + 1 if row.kind == "logit" else row.layer), "ctx_idx": int(row.position),
            "feature_type": kind, "token_prob": float(probs.get(row.node[6:], 0.0)) if row.kind == "logit" else 0.0,
            "is_target_logit": row.kind == "logit", "run_idx": 0,
            "reverse_ctx_idx": int(result.metrics["n_tokens"] - 1 - row.position), "jsNodeId": node_id,
            "clerp": clerp, "influence": float(row.influence),
            "activation": None if pd.isna(row.activation) else float(row.activation)})
    links = [{"source": ids[e.source], "target": ids[e.target], "weight": float(e.weight)} for e in edges.itertuples()]
    c = result.config
    meta = {"slug": f"interp-{result.run_id or 'graph'}", "scan": result.provenance.get("model", ""),
            "transcoder_list": [], "prompt_tokens": result.metrics["prompt_tokens"], "prompt": c.prompt,
            "node_threshold": c.node_threshold, "schema_version": 1,
            "info": {"creator_name": "interp", "generator": {"name": "interp neuron_graph", "version": c.VERSION},
                     "feature_type": "raw MLP neurons (hook_post)"}}
    q = {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""}
    return {"metadata": meta, "qParams": q, "nodes": out, "links": links}


def neuron_rows(result: Result, layer: int, neuron: int, k: int = 3) -> list[dict]:
    """Where a neuron sits in one graph: per position, its influence and its strongest kept neighbours. The
    small nodes table is read first; the edges only for a graph that keeps the neuron (the card asks every
    stored graph)."""
    nodes = result.table("nodes")
    mine = nodes[(nodes.kind == "neuron") & (nodes.layer == layer) & (nodes.neuron == neuron)]
    if mine.empty:
        return []
    edges = result.table("edges")
    edges = edges[edges.shown]  # a kept neuron always keeps a shown edge each way (no dangling node survives)
    out = []
    for row in mine.itertuples():
        up = edges[edges.target == row.node].sort_values("weight", key=abs, ascending=False).head(k)
        down = edges[edges.source == row.node].sort_values("weight", key=abs, ascending=False).head(k)
        out.append({"prompt": result.config.prompt, "targets": result.metrics["targets"],
                    "position": int(row.position), "token": row.token, "activation": float(row.activation),
                    "influence": float(row.influence),
                    "upstream": [{"node": e.source, "weight": float(e.weight)} for e in up.itertuples()],
                    "downstream": [{"node": e.target, "weight": float(e.weight)} for e in down.itertuples()],
                    "path": result.path and str(result.path)})
    return out


@card_section("graphs", "In stored graphs", order=65)
def graphs_section(ctx: CardContext) -> Section:
    """The stored neuron graphs that keep this neuron: where, how influential, and its neighbours."""
    nid = ctx.neuron
    section = Section("graphs", "In stored graphs",
                      missing=f"`interp graph{ctx.spec_flag} --prompt '...'` (an attribution graph over neurons)")
    rows = []
    for path in ctx.store.paths("neuron_graph")[:50]:
        found = neuron_rows(ctx.store.load(path), nid.layer, nid.index)
        if found:
            section.sources.append(path)
            rows += found
    if rows:
        section.data = {"graphs": rows}
    return section


def _names(items: list[dict]) -> str:
    return ", ".join(f"{i['node']} ({i['weight']:+.2f})" for i in items)


@graphs_section.html
def _graphs_html(section: Section, nid) -> str:
    rows = [{"prompt": r["prompt"], "token": f"{r['token']!r} @{r['position']}", "activation": r["activation"],
             "influence": r["influence"], "upstream": _names(r["upstream"]), "downstream": _names(r["downstream"])}
            for r in section.data["graphs"]]
    return table_html(rows, ["prompt", "token", "activation", "influence", "upstream", "downstream"]) + note(
        "influence: the neuron's share of the graph's influence on its targets; upstream/downstream: its "
        f"strongest kept edges (direct effects in the linearised model). {esc(len(rows))} appearance(s).")


@graphs_section.text
def _graphs_text(d: dict) -> str:
    rows = d["graphs"]
    best = max(rows, key=lambda r: r["influence"])
    return (f"kept in {len({r['path'] for r in rows})} stored graph(s); most influential on {best['prompt']!r} at "
            f"{best['token']!r} (influence {best['influence']:.3f})")
