"""Neuron graph: an attribution graph over the raw MLP neurons of one prompt.

Nodes are the token embeddings (one per position), MLP neurons ``(layer, position, neuron)``
with their activation (``hook_post``), the logit targets, and one *other* node per
(layer, position) holding the summed contribution of every neuron there that is not kept.
An edge is a direct effect in the model linearised around this prompt
(``interp.tracing.linear``): norm scales and attention patterns frozen, each target neuron
linear in its input (a GLU gate frozen at its value; a plain MLP's local slope), and every
MLP between source and target cut. An edge is the source's activation times the gradient
of the target's activation (or logit) through that path, so a target's incoming edges from
every source sum to its activation (plus the biases, which models like Llama do not have).

Few backward passes: one backward in the uncut linear model gives every neuron's total
effect on the targets (``act * grad``); the ``candidates`` largest by size are the only
neurons the graph may keep. Targets are expanded best-first by that total effect, a batch
of them per backward pass over one batch-expanded forward (each row of the batch is its own
copy of the prompt, so one backward gives every row's target its edges from every earlier
source at once). Memory stays bounded: a row keeps its edges from the candidates, the
embeddings and one sum per (layer, position). Pruning follows circuit-tracer: nodes up to
``node_threshold`` of the influence on the targets (abs, row-normalised adjacency), edges up
to ``edge_threshold``, then nodes left without an incoming or outgoing edge go, and every
neuron that goes is folded into its (layer, position)'s other node, so conservation still
holds on the stored graph. ``--verify`` checks the graph by interventions
(``interp.analyses.circuits.verify``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from interp.analyses.base import estimator, register
from interp.analyses.circuits.prune import prune
from interp.errors import InterpError
from interp.metrics import precap_logit
from interp.result import Config, Result, option, provenance
from interp.scale import preflight
from interp.tracing.linear import linearised

MAX_LOGITS = 10


@dataclass(frozen=True)
class GraphConfig(Config):
    VERSION = 1
    prompt: str = option("The capital of France is", "the prompt", flags=("-p",), split=False, nonempty=True)
    target: str = option("", "answer token, e.g. ' Paris' (default: the top prediction)", flags=("-t",),
                         split=False)
    wrong: str = option("", "a wrong token: the target becomes logit(target) - logit(wrong)", split=False)
    top_logits: bool = option(False, "targets: the top logits up to 0.95 cumulative probability (at most 10)")
    max_nodes: int = option(800, "neurons expanded (their incoming edges computed)", min=1)
    candidates: int = option(4096, "neurons the graph may keep: the largest total effects", min=1)
    batch_size: int = option(64, "targets per backward pass", min=1)
    node_threshold: float = option(0.8, "keep nodes up to this share of the influence", min=0.0, max=1.0)
    edge_threshold: float = option(0.98, "keep edges up to this share of the influence", min=0.0, max=1.0)
    verify: bool = option(False, "check the graph by knock-outs, a faithfulness curve and random controls")
    verify_top: int = option(20, "nodes knocked out one by one (with --verify)", min=1)
    reference: str = option("stdlib-docs", "corpus whose mean activations mean-ablation writes (with --verify)")
    reference_tokens: int = option(2048, "tokens of the reference corpus", min=64)
    seed: int = option(0, "random seed (the random controls)")


@dataclass
class Targets:
    labels: list[str]
    tokens: list[list[int]]  # per target: [token] or [target, wrong]
    weights: Tensor  # [n_targets]: how each counts in the influence (probabilities, or 1)
    probs: list[float]

    def values(self, logits: Float[Tensor, "batch d_vocab"]) -> Float[Tensor, "batch n_targets"]:
        cols = [logits[:, t[0]] - (logits[:, t[1]] if len(t) > 1 else 0) for t in self.tokens]
        return torch.stack(cols, -1)


def pick_targets(model, logits: Float[Tensor, " d_vocab"], config: GraphConfig) -> Targets:
    """The logit targets: the answer (default: the top prediction), a difference, or the top logits."""
    probs = logits.float().softmax(-1)
    if config.top_logits:
        order = probs.argsort(descending=True)[:MAX_LOGITS]
        cum = probs[order].cumsum(0)
        n = min(MAX_LOGITS, int((cum < 0.95).sum()) + 1)
        ids = [int(t) for t in order[:n]]
        p = torch.tensor([float(probs[t]) for t in ids], device="cpu")
        return Targets([model.token_str(t) for t in ids], [[t] for t in ids], p / p.sum(), p.tolist())
    answer = model.token_id(config.target) if config.target else int(logits.argmax())
    if config.wrong:
        wrong = model.token_id(config.wrong)
        if wrong == answer:
            raise InterpError(f"--wrong {config.wrong!r} is the predicted target token itself: give a different "
                              "token (or name the --target)")
        label = f"{model.token_str(answer)} - {model.token_str(wrong)}"
        return Targets([label], [[answer, wrong]], torch.ones(1, device="cpu"), [float(probs[answer])])
    return Targets([model.token_str(answer)], [[answer]], torch.ones(1, device="cpu"), [float(probs[answer])])


def total_effects(model, tokens, config: GraphConfig) -> tuple[Targets, dict]:
    """One forward and one backward in the uncut linear model: the targets (picked from this forward's own
    logits), each neuron's activation and its total effect on the weighted targets (``act * d metric / d act``),
    and the embeddings' (per position)."""
    L = model.n_layers
    with linearised(model, cut=False) as lin:
        logits = precap_logit(model, model(tokens)[:, -1].float())
        targets = pick_targets(model, logits[0].detach(), config)
        metric = (targets.values(logits)[0] * targets.weights.to(logits.device)).sum()
        posts = [lin.post[layer] for layer in range(L)]
        grads = torch.autograd.grad(metric, [lin.embed, *posts])
    acts = torch.stack([p[0].detach().float() for p in posts])  # [layer, pos, d_mlp]
    effect = torch.stack([(p[0] * g[0]).detach().float() for p, g in zip(posts, grads[1:])])
    embed = (lin.embed[0] * grads[0][0]).sum(-1).detach().float()
    return targets, {"acts": acts, "effect": effect, "embed": embed, "metric": metric.item()}


class Rows:
    """The expanded targets' incoming edges: from each candidate, each embedding, and one sum per
    (layer, position) of every non-candidate neuron; plus each target's value and its bias remainder."""

    def __init__(self, n_candidates: int, n_layers: int, n_pos: int):
        self.cand: list[Tensor] = []  # [C] per row
        self.embed: list[Tensor] = []  # [P]
        self.rest: list[Tensor] = []  # [L, P]
        self.value: list[float] = []
        self.bias: list[float] = []
        self.shape = (n_candidates, n_layers, n_pos)

    def add(self, cand: Tensor, embed: Tensor, rest: Tensor, value: float) -> None:
        self.cand.append(cand)
        self.embed.append(embed)
        self.rest.append(rest)
        self.value.append(value)
        self.bias.append(value - float(cand.double().sum() + embed.double().sum() + rest.double().sum()))


def expand(model, tokens, cand: Tensor, rows: list[tuple], targets: Targets, batch_size: int,
           bar: tqdm | None = None) -> tuple[Rows, int]:
    """Incoming edges of each row target: ``("logit", k)`` or ``("neuron", layer, pos, index)``.

    One forward of ``batch_size`` copies of the prompt in the cut linear model; then one backward per
    batch of targets (row ``b`` of the batch carries target ``b``), retaining the forward's graph."""
    L, P = model.n_layers, tokens.shape[1]
    out = Rows(len(cand), L, P)
    cl, cp, ci = cand[:, 0], cand[:, 1], cand[:, 2]
    passes = 0
    with linearised(model, cut=True) as lin:
        width = min(batch_size, len(rows))
        logits = precap_logit(model, model(tokens.expand(width, -1))[:, -1].float())
        values = targets.values(logits)  # [width, n_targets]
        for start in range(0, len(rows), width):
            chunk = rows[start:start + width]
            picked, top = [], 0
            for b, row in enumerate(chunk):
                if row[0] == "logit":
                    picked.append(values[b, row[1]])
                    top = L
                else:
                    _, layer, pos, index = row
                    picked.append(lin.value[layer][b, pos, index])
                    top = max(top, layer)
            leaves = [lin.embed, *[lin.post[layer] for layer in range(top)]]
            picked = torch.stack(picked)
            grads = torch.autograd.grad(picked.sum(), leaves, retain_graph=True, allow_unused=True)
            picked = picked.detach().double().tolist()
            passes += 1
            n = len(chunk)
            emb = (lin.embed[:n] * grads[0][:n]).sum(-1).detach().float() if grads[0] is not None else \
                torch.zeros(n, P, device=tokens.device)
            contrib = torch.zeros(n, L, P, model.d_mlp, device=tokens.device)
            for layer in range(top):
                g = grads[1 + layer]
                if g is not None:
                    contrib[:, layer] = (lin.post[layer][:n] * g[:n]).detach().float()
            at_cand = contrib[:, cl, cp, ci]  # [n, C]
            rest = contrib.sum(-1)
            rows_n = torch.arange(n, device=tokens.device)[:, None].expand(n, len(cand))
            rest.index_put_((rows_n, cl[None].expand(n, -1), cp[None].expand(n, -1)), -at_cand, accumulate=True)
            for b in range(n):
                out.add(at_cand[b].cpu(), emb[b].cpu(), rest[b].cpu(), picked[b])
            if bar is not None:
                bar.update(n)
            del grads, contrib
    return out, passes


def _check(model, tokens, config: GraphConfig) -> None:
    """Every check that needs no forward pass, before any work."""
    if tokens.shape[1] > model.n_ctx:
        raise InterpError(f"the prompt has {tokens.shape[1]} tokens, more than {model.spec}'s context of "
                          f"{model.n_ctx}: shorten --prompt")
    if tokens.shape[1] < 2:
        raise InterpError("the prompt needs at least two tokens: give a longer --prompt")
    if config.top_logits and (config.target or config.wrong):
        raise InterpError("--top-logits picks its own targets: leave out --target and --wrong")
    answer = model.token_id(config.target) if config.target else None
    if config.wrong and model.token_id(config.wrong) == answer:
        raise InterpError(f"--wrong {config.wrong!r} is the target token itself: give a different token")


@register("neuron_graph", GraphConfig)
def run(model, config: GraphConfig) -> Result:
    """Attribution graph over MLP neurons for one prompt: direct effects in the linearised model, pruned."""
    started = time.perf_counter()
    tokens = model.to_tokens(config.prompt)
    _check(model, tokens, config)
    targets, te = total_effects(model, tokens, config)
    L, P, D = te["acts"].shape
    flat = te["effect"].abs().flatten()
    n_cand = min(config.candidates, int((flat > 0).sum()))
    if n_cand == 0:
        raise InterpError(f"no neuron has any effect on {targets.labels} in {config.prompt!r}: nothing to graph "
                          "(is the target reachable? try another prompt or target)")
    order = flat.argsort(descending=True)[:n_cand]
    cand = torch.stack([order // (P * D), (order // D) % P, order % D], -1)  # [C, 3]: layer, pos, index
    n_expand = min(config.max_nodes, n_cand)
    rows = [("logit", k) for k in range(len(targets.labels))]
    rows += [("neuron", int(c[0]), int(c[1]), int(c[2])) for c in cand[:n_expand]]
    with tqdm(total=len(rows), desc="graph: edges", unit="target", leave=False) as bar:
        got, passes = expand(model, tokens, cand, rows, targets, config.batch_size, bar)
    graph = prune(got, cand, n_expand, targets, te, config.node_threshold, config.edge_threshold)
    nodes, edges = graph.tables(model, tokens, targets, te)
    if not (nodes.kind == "neuron").any():
        raise InterpError(f"no neuron survived pruning of the graph for {targets.labels} (of {n_expand} expanded): "
                          "raise --node-threshold, --edge-threshold or --max-nodes")
    seconds = time.perf_counter() - started
    metrics = {
        "targets": targets.labels, "target_probs": targets.probs, "metric": te["metric"],
        "n_tokens": P, "n_layers": L, "prompt_tokens": model.to_str_tokens(config.prompt),
        "n_candidates": n_cand, "n_expanded": n_expand,
        "n_neurons_kept": int((nodes.kind == "neuron").sum()), "n_nodes": len(nodes),
        "n_edges": int(edges.shown.sum()), "replacement": graph.replacement, "completeness": graph.completeness,
        "candidate_share": float(flat[order].sum() / flat.sum()),
        "max_bias": max(abs(b) for b in got.bias), "backward_passes": passes + 1, "seconds": seconds,
    }
    tables = {"nodes": nodes, "edges": edges}
    notes = []
    if config.verify:
        from interp.analyses.circuits.verify import verify

        checks = verify(model, tokens, targets, te, nodes, edges, config)
        tables.update(checks.tables)
        metrics.update(checks.metrics)
        notes += checks.notes
    return Result(analysis="neuron_graph", config=config, provenance=provenance(model, config),
                  tables=tables, metrics=metrics, notes=notes)


@estimator("neuron_graph")
def _estimate(model, config: GraphConfig, calibrate: bool) -> preflight.Estimate:
    """Passes and memory from the shapes; time from one batch-expanded forward and one backward."""
    tokens = model.to_tokens(config.prompt)
    _check(model, tokens, config)
    n = tokens.shape[1]
    width = min(config.batch_size, config.max_nodes + MAX_LOGITS)
    backwards = 1 + math.ceil((min(config.max_nodes, config.candidates) + 1) / width)
    b = 4  # the contributions are float32
    memory = {**preflight.held(model), "forward": preflight.forward_bytes(model, width, n, grad=True),
              "edges": float(width * n * model.n_layers * model.d_mlp * b * 3)}
    targets = min(config.max_nodes, config.candidates) + 1
    est = preflight.Estimate("neuron_graph", device=str(model.device), forwards=2 + (3 if config.verify else 0),
                             backwards=backwards, units=targets, memory=memory,
                             work=f"{min(config.max_nodes, config.candidates):,} targets, {width} per backward "
                                  f"pass over {n} tokens",
                             available=preflight.available_memory(model.device),
                             remedy="a smaller --batch-size, or --dtype bfloat16")
    if calibrate:  # one real batch of targets (the last layer's, the deepest backward) on random candidates
        L, P = model.n_layers, tokens.shape[1]
        gen = torch.Generator().manual_seed(0)
        cand = torch.stack([torch.randint(0, hi, (min(config.candidates, 4096),), generator=gen, device="cpu")
                            for hi in (L, P, model.d_mlp)], -1)
        rows = [("neuron", L - 1, P - 1, i % model.d_mlp) for i in range(width)]
        targets = Targets(["?"], [[0]], torch.ones(1, device="cpu"), [1.0])

        def forward():
            with torch.no_grad():
                model(tokens.expand(width, -1))

        fwd, _ = preflight.time_once(model, forward)
        one, est.measured_peak = preflight.time_once(model, lambda: expand(model, tokens, cand, rows, targets, width),
                                                     warmup=False)
        est.seconds = fwd + one + (backwards - 1) * max(one - fwd, 0.0)
        est.calibration = f"one batch of {width} targets, timed"
    return est
