"""LM-head neuron decoding: every neuron's weights read in token space, with no data.

Papers: "Decoding specialised feature neurons in LLMs with the final projection
layer" (2025) reads each neuron's up-projection row through the LM head; Geva et al.
(2022) read its output column ``W_out[:, n]`` ("value vector") through the
unembedding. Both are offered, for every neuron of every layer, as batched matrix
products (chunks of neurons x the whole vocabulary, then ``topk`` both ways):

- side ``out``: ``W_out[l][:, n] . W_U`` - the tokens the neuron promotes (top-k) and
  suppresses (bottom-k) when its activation is positive (a negative activation,
  common in GLU neurons, swaps the two lists);
- sides ``up`` / ``gate`` (``gate`` only for GLU): ``W_in[l][n] . W_E[t]`` and
  ``W_gate[l][n] . W_E[t]`` - the tokens whose embeddings most excite (top-k) or
  inhibit (bottom-k) that projection. With SmolLM2's tied embeddings ``W_E = W_U^T``,
  so the ``up`` side is exactly the decoding paper's up-projection read through the LM head.

Norms, exactly: with ``fold_norm=True`` (the default) the final norm's weight ``w_f`` is
folded into the output side (``W_out[:, n] . (w_f * W_U[:, t])``) and the MLP-input
norm's weight ``w_2`` into the input sides (``(w_2 * W_in[n]) . W_E[t]``). The norms'
scales (``1/rms(x)``) depend on the input and are left out: they rescale all of a
position's scores equally, so they do not change a ranking. Norm biases (GPT-2) are
left out too. ``fold_norm=False`` decodes the raw weights; the ranking differs.

Outputs: a long table ``decoded`` (layer, neuron, side, rank, token_id, token, score;
side is ``out+``/``out-``/``up+``/...), a per-neuron ``neurons`` table (weight norms and
top tokens, and each output side's mean and standard deviation over the vocabulary), and two
inverted indexes ("which neurons for token T", neuron = layer*d_mlp+index, ``[k, d_vocab]``):

- raw, per side: ``{side}_promoters_neuron`` / ``{side}_promoters_score``, the largest raw scores.
  It favours high-norm and massive-activation neurons, and it keeps positive scores only.
- specificity, on the output side, both signs: ``out+_specific_*`` / ``out-_specific_*``, the
  neurons in whose own distribution over the vocabulary the token stands out most, as the
  z-score ``(score - mean) / std`` of the row (``out-``: of the negated row, for neurons that
  promote through a negative activation). ``specific_neurons`` joins it with the ``decoded``
  rows (every neuron whose own top-k holds the token, exactly) and with the atlas's typical
  sign and size of each neuron's activation.
The decoding is a pure function of the weights, so ``cached_run`` reuses a stored
Result with the same config and weights hash.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from interp.analyses.base import estimator, register
from interp.errors import InterpError
from interp.progress import bar
from interp.result import Config, Result, option, provenance
from interp.scale import preflight

SIDES = ("out", "up", "gate")


@dataclass(frozen=True)
class DecodingConfig(Config):
    VERSION = 3  # 2: the out side reads W_write (post-norm gains), centred under a final LayerNorm; 3: specificity
    top_k: int = option(20, "tokens kept per neuron and side", flags=("-k",), min=1)
    layers: tuple[int, ...] = option((), "e.g. 0-3,29 (default: all)", min=0)
    sides: tuple[str, ...] = option(SIDES, "out, up, gate", choices=SIDES, nonempty=True)
    fold_norm: bool = option(True, "fold the norms' weights in (see docs)")


def side_vectors(model, layer: int, side: str, fold_norm: bool) -> Float[Tensor, "d_mlp d_model"]:
    """The per-neuron vectors of one side, as rows (norm weight folded if asked)."""
    w = model.weights
    if side == "out":  # what the neuron writes into the residual (through a post-norm's gain, Gemma/OLMo 2)
        out = (w.W_write(layer) if fold_norm else w.W_out[layer]).T
        if fold_norm and w.final_norm.kind == "layer":  # LayerNorm centres what it reads
            out = out - out.mean(1, keepdim=True)
        return out
    vectors = w.W_in[layer] if side == "up" else w.W_gate[layer]
    norm_w = w.mlp_norm_w[layer]
    return vectors * norm_w if fold_norm and norm_w is not None else vectors


def side_basis(model, side: str, fold_norm: bool) -> Float[Tensor, "d_model d_vocab"]:
    if side == "out":
        return model.weights.W_U_normed() if fold_norm else model.weights.W_U
    return model.weights.W_E.T


BLOCK = 64  # vocabulary block width for the top-k prefilter
CALIBRATE_ROWS = 384  # neurons timed by the preflight (a quarter of a SmolLM2 layer)
CHUNK = 1536  # neurons per matrix product: one SmolLM2 layer (300 MB of scores); larger GEMMs run faster


def top_bottom_k(scores: Float[Tensor, "n d_vocab"], k: int):
    """Exact top-k and bottom-k of each row, with a blockwise prefilter.

    Any block of ``BLOCK`` tokens that holds one of a row's top-k values has a block
    maximum at least the k-th value, so it is among the k blocks with the largest
    maxima: top-k over those k blocks' tokens is exact (likewise for the bottom).
    This reads the scores twice instead of running two full top-k passes.
    """
    n, v = scores.shape
    if v % BLOCK or v // BLOCK < k:
        return scores.topk(k, dim=1), scores.topk(k, dim=1, largest=False)
    blocks = scores.view(n, v // BLOCK, BLOCK)
    offsets = torch.arange(BLOCK, device=scores.device)

    def pick(block_score: Tensor, largest: bool):
        chosen = block_score.topk(k, dim=1, largest=largest).indices  # [n, k] block ids
        cand = blocks.gather(1, chosen[..., None].expand(-1, -1, BLOCK)).flatten(1)  # [n, k*BLOCK]
        best = cand.topk(k, dim=1, largest=largest)
        token = (chosen[..., None] * BLOCK + offsets).flatten(1).gather(1, best.indices)
        return best.values, token

    return pick(blocks.amax(-1), True), pick(blocks.amin(-1), False)


def _merge_promoters(promoters: tuple[Tensor, Tensor], scores: Tensor, first: int) -> None:
    """Update the running top-k neurons per token with a chunk of scores.

    Only tokens where some neuron of the chunk beats the current k-th best are
    touched, so after the first chunks most of the vocabulary is skipped."""
    best_s, best_n = promoters
    k = best_s.shape[0]
    hit = (scores > best_s[-1]).any(0).nonzero().squeeze(1)  # tokens that can change
    if hit.numel() == 0:
        return
    sub = scores[:, hit]
    col = sub.topk(min(k, sub.shape[0]), dim=0)
    merged_s = torch.cat([best_s[:, hit], col.values])
    merged_n = torch.cat([best_n[:, hit], col.indices + first])
    top = merged_s.topk(k, dim=0)
    best_s[:, hit] = top.values
    best_n[:, hit] = merged_n.gather(0, top.indices)


@torch.no_grad()
def decode_block(vectors: Float[Tensor, "neuron d_model"], basis: Float[Tensor, "d_model d_vocab"], k: int,
                 chunk: int = CHUNK, promoters: tuple[Tensor, Tensor] | None = None, offset: int = 0,
                 specific: tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None):
    """Top-k and bottom-k tokens of each vector, in chunks of ``chunk`` vectors.

    Returns ``(top_score, top_id, bottom_score, bottom_id, mean, std)``; the first four are
    ``[neuron, k]``, ``mean``/``std`` are each row's over the vocabulary. If
    ``promoters=(score [k, d_vocab], neuron [k, d_vocab])`` is given (scores sorted
    descending, starting at -inf), it is updated in place with the running top-k
    neurons per token (neuron ids start at ``offset``). ``specific=(plus, minus)``, two
    more such pairs, are updated with the rows' z-scores and negated z-scores.
    """
    tops, top_ids, bots, bot_ids, means, stds = [], [], [], [], [], []
    basis = basis.to(vectors.dtype)  # once, not per chunk (a no-op when they match)
    for start in range(0, vectors.shape[0], chunk):
        scores = vectors[start:start + chunk] @ basis  # [chunk, d_vocab]
        (ts, ti), (bs, bi) = top_bottom_k(scores, k)
        tops.append(ts), top_ids.append(ti), bots.append(bs), bot_ids.append(bi)
        std, mean = torch.std_mean(scores, dim=1, keepdim=True)
        means.append(mean[:, 0]), stds.append(std[:, 0])
        if promoters is not None:
            _merge_promoters(promoters, scores, offset + start)
        if specific is not None:
            z = scores.sub_(mean).div_(std.clamp(min=1e-12))  # in place: the scores are not needed after this
            _merge_promoters(specific[0], z, offset + start)
            _merge_promoters(specific[1], z.neg_(), offset + start)
    return (torch.cat(tops), torch.cat(top_ids), torch.cat(bots), torch.cat(bot_ids), torch.cat(means),
            torch.cat(stds))


def _running(k: int, d_vocab: int, device) -> tuple[Tensor, Tensor]:
    """An empty running top-k per token: (score [k, d_vocab] at -inf, neuron [k, d_vocab])."""
    return (torch.full((k, d_vocab), -torch.inf, device=device),
            torch.zeros((k, d_vocab), dtype=torch.long, device=device))


def _long_rows(layer: int, side: str, sign: str, scores: Tensor, ids: Tensor) -> dict[str, np.ndarray]:
    n, k = scores.shape
    return {
        "layer": np.full(n * k, layer, dtype=np.int32),
        "neuron": np.repeat(np.arange(n, dtype=np.int32), k),
        "side": np.full(n * k, side + sign, dtype=object),
        "rank": np.tile(np.arange(k, dtype=np.int32), n),
        "token_id": ids.flatten().cpu().numpy().astype(np.int32),
        "score": scores.flatten().float().cpu().numpy(),
    }


def _sides(model, config: DecodingConfig) -> list[str]:
    sides = [s for s in config.sides if s != "gate" or model.is_glu]
    if not sides:
        raise InterpError(f"{model.spec} has no gate side (not a GLU model): choose sides among out, up")
    if config.top_k > model.d_vocab:
        raise InterpError(f"top_k (--top-k) must be at most the vocabulary size, {model.d_vocab}")
    return sides


@estimator("lm_head_decoding")
def estimate(model, config: DecodingConfig, calibrate: bool) -> preflight.Estimate:
    """No forward passes: one ``[d_mlp, d_model] x [d_model, d_vocab]`` product per layer and side.
    Memory from the shapes (the long table is host memory); time from one layer-side decoded."""
    layers, sides = model.check_layers(config.layers), _sides(model, config)
    units, k, V = len(layers) * len(sides), config.top_k, model.d_vocab
    rows = units * model.d_mlp * 2 * k
    est = preflight.Estimate(
        "lm_head_decoding", str(model.device), forwards=0, units=units,
        work=f"{units} layer-sides of {model.d_mlp:,} neurons x {V:,} tokens "
             f"({2 * units * model.d_mlp * model.d_model * V / 1e12:.2f} TFLOP)",
        memory={**preflight.held(model), "bases": len(sides) * model.d_model * V * 4,
                "scores": CHUNK * V * 4 * 3, "index": len(sides) * k * V * 12, "tops": rows * 12},
        available=preflight.available_memory(model.device), remedy="fewer --layers or --sides, or a smaller --top-k")
    table = rows * 48  # the long table in pandas: ~48 bytes a row
    if model.device.type == "cpu":
        est.memory["table"] = table
    else:
        est.notes.append(f"host memory: the long table takes about {preflight.size(table)}")
    if calibrate:
        basis = side_basis(model, sides[0], config.fold_norm).float()
        vectors = side_vectors(model, layers[0], sides[0], config.fold_norm).float()
        rows = min(CALIBRATE_ROWS, len(vectors))  # a slice of a layer, scaled: a dashboard shows it while waiting
        scratch = (torch.full((k, V), -torch.inf, device=model.device),
                   torch.zeros((k, V), dtype=torch.long, device=model.device))
        seconds, est.measured_peak = preflight.time_once(
            model, lambda: decode_block(vectors[:rows], basis, k, CHUNK, scratch))
        seconds *= len(vectors) / rows
        if "out" in sides:  # the specificity index: two more running merges on the out side
            seconds *= 1 + 0.6 / len(sides)
        est.seconds = seconds * units
        est.calibration = f"{rows} neurons of one layer-side timed, scaled to the layer: {seconds:.2f} s"
    return est


@register("lm_head_decoding", DecodingConfig)
def run(model, config: DecodingConfig) -> Result:
    """Decode every neuron's output and input weights into token space."""
    layers, sides = model.check_layers(config.layers), _sides(model, config)
    k = config.top_k
    parts: list[dict] = []
    summary: dict[str, list] = {"layer": [], "neuron": []}
    on = {"device": model.device}  # the index is built where the scores are
    promoters = {side: _running(k, model.d_vocab, on["device"]) for side in sides}
    specific = tuple(_running(k, model.d_vocab, model.device) for _ in "+-")
    bases = {side: side_basis(model, side, config.fold_norm).float() for side in sides}  # once, not per layer
    progress = bar(total=len(layers) * len(sides), desc="decoding neurons", unit="layer-side")
    for layer in layers:
        summary["layer"].append(np.full(model.d_mlp, layer, dtype=np.int32))
        summary["neuron"].append(np.arange(model.d_mlp, dtype=np.int32))
        for side in sides:
            vectors = side_vectors(model, layer, side, config.fold_norm).float()
            top_s, top_i, bot_s, bot_i, mean, std = decode_block(
                vectors, bases[side], k, CHUNK, promoters[side], offset=layer * model.d_mlp,
                specific=specific if side == "out" else None)
            parts.append(_long_rows(layer, side, "+", top_s, top_i))
            parts.append(_long_rows(layer, side, "-", bot_s, bot_i))
            summary.setdefault(f"{side}_norm", []).append(vectors.norm(dim=1).cpu().numpy())
            summary.setdefault(f"{side}_top", []).append(top_i[:, 0].cpu().numpy())
            summary.setdefault(f"{side}_bottom", []).append(bot_i[:, 0].cpu().numpy())
            if side == "out":
                summary.setdefault("out_mean", []).append(mean.cpu().numpy())
                summary.setdefault("out_std", []).append(std.cpu().numpy())
            progress.update()
    progress.close()
    vocab = np.array(model.vocab, dtype=object)
    decoded = pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in parts[0]})
    decoded.insert(5, "token", pd.Categorical(vocab[decoded.token_id.to_numpy()]))
    decoded["side"] = decoded.side.astype("category")
    neurons = pd.DataFrame({c: np.concatenate(v) for c, v in summary.items()})
    for col in [c for c in neurons.columns if c.endswith(("_top", "_bottom"))]:
        neurons[col] = vocab[neurons[col].to_numpy()]
    tensors = {}
    for side, (score, neuron) in promoters.items():
        tensors[f"{side}_promoters_score"], tensors[f"{side}_promoters_neuron"] = score.cpu(), neuron.cpu()
    if "out" in sides:
        for sign, (score, neuron) in zip("+-", specific):
            tensors[f"out{sign}_specific_score"] = score.cpu()
            tensors[f"out{sign}_specific_neuron"] = neuron.to(torch.int32).cpu()
    return Result(
        analysis="lm_head_decoding",
        config=config,
        provenance=provenance(model, config),
        tables={"decoded": decoded, "neurons": neurons},
        tensors=tensors,
        metrics={"n_neurons": len(layers) * model.d_mlp, "layers": len(layers), "sides": sides,
                 "d_mlp": model.d_mlp},
    )
