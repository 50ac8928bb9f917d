"""Neuron explanations with honest scores: what each neuron does, offline, and how much that is worth.

For every neuron of the chosen layers, from the atlas (version 4: examples sampled across the activation
range, windows split into train and held-out):

- **Token statistics** (no LLM). Input side: the tokens on which the neuron fires, from the train split's
  top and sampled examples (each token's mean firing value, normalised by the neuron's peak on the side it
  fires with), and token pairs (previous, current) where the pair fires clearly more than its last token
  alone (back-off: a pair, else its token, else 0). Output side: the tokens its decoding promotes on that
  side, and, for a sample of neurons, the tokens whose log-probability rises most when it is clamped to
  its peak on train contexts (TokenChange). The label is rendered from these: token statistics, not prose.
- **An LLM** (``--llm``): an OpenAI-compatible endpoint or the embedded SmolLM2-135M-Instruct writes a
  phrase from the same train examples (``interp.analyses.neurons.llm``), for a sample of neurons.

Every score uses only the held-out split (windows the explanations never read):

- ``iid_corr``: Pearson correlation of the simulated with the true firing value on every token of
  ``heldout_windows`` held-out windows (run once, densely);
- ``auprc``: AUPRC of the simulation for "fires" (at least ``DENSITY_FRACTION`` of the peak) on those tokens;
- ``top_random_corr``: correlation on the held-out top examples plus ``RANDOM_K`` random held-out tokens
  (comparable in spirit with OpenAI's top-and-random score; ours is per token position, not per snippet);
- ``detection_auroc``: held-out activating contexts (top and sampled examples that fire) against held-out
  contexts where it fires nowhere, a context being a token and the ``DETECT_LEFT`` tokens before it, scored
  by the simulation's maximum over it;
- ``output_precision``: the share of the explanation's predicted output tokens (its decoding's top
  ``OUTPUT_K`` promoted, and its train TokenChange's) among the top ``OUTPUT_TOP`` tokens that clamping it
  actually promotes on held-out contexts.

Each score sits beside the same score for a random explanation (another neuron's, a fixed derangement)
and for shuffled tokens (the held-out tokens permuted against the activations); a neuron whose
``iid_corr`` does not beat the random explanations' 95th percentile is flagged. With ``random_weights``
the whole pipeline (atlas, explanations, scores) runs again on the same architecture with random weights:
its score distribution is the third baseline.

The simulator of a token-statistics explanation is a deterministic look-up; an LLM explanation is
simulated by the LLM-free proxy (the tokens that spell its words).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from interp.analyses.base import cached_run, estimator, register
from interp.analyses.neurons.atlas import AtlasConfig, atlas_of_tokens
from interp.analyses.neurons.llm import check_llm, clean, endpoint, explanation_tokens, local, messages, vocab_words
from interp.analyses.neurons.read import atlas_layers, typical_activation
from interp.analyses.neurons.simulate import (
    METRICS,
    RANDOM_K,
    Heldout,
    dense_activations,
    derangement,
    example_rows,
    reassigned,
    render_label,
    score,
    shuffled,
    split_windows,
    token_change,
    token_entries,
)
from interp.errors import InterpError
from interp.progress import bar
from interp.result import Config, Result, option, provenance
from interp.scale import preflight
from interp.storage import load_result, newest_run, resolve_run

OUTPUT_METRICS = ("output_precision_decoding", "output_precision_tokenchange")
PRIMARY = "iid_corr"
OUTPUT_K = 5  # predicted output tokens per explanation
CONTEXT_LEN = 24  # tokens of a clamping context
FLAG_QUANTILE = 0.95  # a neuron is flagged unless it beats this quantile of the random explanations


@dataclass(frozen=True)
class ExplainConfig(Config):
    VERSION = 1
    layers: tuple[int, ...] = option((), "e.g. 0-3,29 (default: every layer of the atlas)", min=0)
    atlas: str = option("", "the atlas run, id or path (default: the model's newest that covers --layers)")
    top_tokens: int = option(8, "tokens in each explanation (plus up to half as many token pairs)", min=1, max=64)
    heldout_windows: int = option(16, "held-out windows run densely for the i.i.d. scores", min=1, max=4096)
    token_change: int = option(4, "neurons per layer clamped for TokenChange and output precision "
                                  "(-1: every neuron, 0: none)", min=-1)
    contexts: int = option(2, "contexts each of those neurons is clamped on, per split", min=1, max=16)
    llm: str = option("", "also explain with an LLM: an OpenAI-compatible endpoint (http://host:port/v1) or "
                          "'local' (the embedded SmolLM2-135M-Instruct)")
    llm_model: str = option("", "the model name the endpoint serves (vLLM and ollama need it)")
    llm_neurons: int = option(16, "neurons per layer the LLM explains (a random sample: it is slow)", min=1)
    random_weights: bool = option(True, "also run everything on the same architecture with random weights")
    seed: int = option(0, "seed of the samples, the random explanations and the random weights")
    NOT_IDENTITY = ()


def find_atlas(model, config: ExplainConfig) -> Result:
    """The atlas to explain from (``config.atlas`` or the newest covering the layers), version 4 or later."""
    wanted = set(config.layers)
    if config.atlas:
        atlas = load_result(resolve_run(config.atlas, "neuron_atlas"))
    else:
        path = newest_run("neuron_atlas", model.weights_hash,
                          where=lambda c: not wanted or not c.get("layers") or wanted <= set(c["layers"]))
        if path is None:
            raise InterpError(f"no neuron atlas of {model.spec} to explain from: build one with "
                              f"`interp atlas -m {model.spec}` (add --layers to cover only some)")
        atlas = load_result(path)
    examples = atlas.table("examples")
    if "split" not in examples.columns or not (examples.which == "sample").any():
        raise InterpError(f"the atlas {atlas.path} has no sampled examples and no train/held-out split (it is "
                          f"older than atlas version 4): rebuild it with `interp atlas -m {model.spec}` "
                          f"(its corpus was {atlas.config.corpus!r}, {atlas.config.n_tokens} tokens)")
    missing = sorted(wanted - set(atlas_layers(atlas)))
    if missing:
        raise InterpError(f"the atlas {atlas.path} has no layer {missing}: it covers {atlas_layers(atlas)}; "
                          f"build one that does with `interp atlas -m {model.spec} --layers ...`")
    return atlas


def firing(atlas: Result, layers: list[int]) -> pd.DataFrame:
    """Per neuron: the sign it fires with (``typical_activation``) and its peak on that side."""
    stats = atlas.table("neurons")[["layer", "neuron", "max", "min"]]
    typical = typical_activation(atlas)[["layer", "neuron", "sign"]]
    out = stats.merge(typical, on=["layer", "neuron"])
    out = out[out.layer.isin(layers)].reset_index(drop=True)
    out["peak"] = np.where(out.sign > 0, out["max"], -out["min"]).clip(min=1e-6)
    return out[["layer", "neuron", "sign", "peak"]]






def promoted_tokens(model, fire: pd.DataFrame) -> pd.DataFrame:
    """Each neuron's top ``OUTPUT_K`` promoted tokens on the side it fires with (its LM-head decoding)."""
    layers = sorted(set(fire.layer.tolist()))
    stored = newest_run("lm_head_decoding", model.weights_hash,
                        where=lambda c: not c.get("layers") or set(layers) <= set(c["layers"]))
    decoding = load_result(stored) if stored else cached_run(
        "lm_head_decoding", model, layers=() if len(layers) == model.n_layers else tuple(layers))
    decoded = decoding.table("decoded")
    decoded = decoded[decoded["rank"] < OUTPUT_K][["layer", "neuron", "side", "rank", "token_id"]]
    want = fire.assign(side=np.where(fire.sign > 0, "out+", "out-"))[["layer", "neuron", "side"]]
    out = decoded.merge(want, on=["layer", "neuron", "side"]).sort_values(["layer", "neuron", "rank"])
    return out.groupby(["layer", "neuron"]).token_id.agg(list).rename("promoted").reset_index()


def prepare(model, atlas: Result, layers: list[int], config: ExplainConfig):
    """(fire, train examples, Heldout) for ``layers`` of ``atlas``."""
    fire = firing(atlas, layers)
    train = example_rows(atlas, fire, "train")
    held_ex = example_rows(atlas, fire, "heldout")
    tokens = atlas.tensors["tokens"].long()
    windows = tokens[split_windows(tokens, "heldout", config.heldout_windows)]
    acts = dense_activations(model, windows, layers)  # [N, L, d]
    order = {l: i for i, l in enumerate(layers)}
    li = torch.tensor([order[int(l)] for l in fire.layer], device="cpu")
    y = acts[:, li, torch.tensor(fire.neuron.to_numpy(), dtype=torch.long, device="cpu")]
    y = y * torch.tensor((fire.sign / fire.peak).to_numpy(), device="cpu").float()
    flat = windows.flatten()
    prev = torch.cat([torch.full((len(windows), 1), -1, device=windows.device), windows[:, :-1]], 1).flatten()
    g = torch.Generator().manual_seed(config.seed)
    random_rows = torch.randperm(len(flat), generator=g, device="cpu")[:RANDOM_K]
    return fire, train, Heldout(flat, prev, y, windows.shape[1], held_ex, random_rows)


def explain_and_score(model, atlas: Result, layers: list[int], config: ExplainConfig,
                      baselines: bool = True) -> dict:
    """Token-statistics explanations and their scores (and, with ``baselines``, the random-explanation
    and shuffled-token scores) for ``layers``: a dict of tables."""
    fire, train, held = prepare(model, atlas, layers, config)
    entries = token_entries(train, config.top_tokens)
    scores = score(entries, fire, held, model.d_mlp).assign(explainer="tokens")
    out = {"fire": fire, "entries": entries, "scores": scores, "held": held, "train": train}
    if baselines:
        g = torch.Generator().manual_seed(config.seed + 1)
        rand = score(reassigned(entries, fire, derangement(len(fire), g)), fire, held, model.d_mlp)
        toks, prev, ex = shuffled(held, g)
        shuf = score(entries, fire, held, model.d_mlp, toks, prev, ex)
        for m in METRICS:
            scores[f"{m}_random"] = rand[m].to_numpy()
            scores[f"{m}_shuffled"] = shuf[m].to_numpy()
    return out


def _sample_neurons(fire: pd.DataFrame, per_layer: int, seed: int) -> pd.DataFrame:
    if per_layer < 0:
        return fire.copy()
    shuffled_rows = fire.sample(frac=1.0, random_state=seed)
    return shuffled_rows.groupby("layer").head(per_layer).sort_values(["layer", "neuron"]).reset_index(drop=True)


def output_scores(model, atlas: Result, fire: pd.DataFrame, promoted: pd.DataFrame,
                  config: ExplainConfig) -> pd.DataFrame:
    """TokenChange on train contexts (the explanation's) and held-out contexts (the score's) for a sample
    of neurons, and the output precision of the decoding's and of the train TokenChange's tokens."""
    chosen = _sample_neurons(fire, config.token_change, config.seed).merge(promoted, on=["layer", "neuron"],
                                                                             how="left")
    chosen["value"] = chosen.sign * chosen.peak
    tokens = atlas.tensors["tokens"].long()
    ctx = {s: tokens[split_windows(tokens, s, config.contexts)][:, :CONTEXT_LEN] for s in ("train", "heldout")}
    train_top = token_change(model, chosen, ctx["train"], desc="TokenChange (train contexts)")
    held_top = token_change(model, chosen, ctx["heldout"], desc="TokenChange (held-out contexts)")
    chosen["token_change"] = [t[:OUTPUT_K] for t in train_top]
    chosen["heldout_change"] = held_top

    def precision(pred, actual):
        pred = list(pred) if isinstance(pred, (list, np.ndarray)) else []
        return len(set(pred) & set(actual)) / len(pred) if pred else np.nan

    perm = derangement(len(chosen), torch.Generator().manual_seed(config.seed + 2))
    for name, col in (("decoding", "promoted"), ("tokenchange", "token_change")):
        chosen[f"output_precision_{name}"] = [precision(p, a) for p, a in zip(chosen[col], chosen.heldout_change)]
        chosen[f"output_precision_{name}_random"] = [precision(p, a) for p, a in
                                                     zip(chosen[col].iloc[perm], chosen.heldout_change)]
    return chosen.drop(columns=["value", "sign", "peak"])


def llm_explanations(model, atlas: Result, out: dict, config: ExplainConfig) -> pd.DataFrame:
    """A sample of neurons explained by the LLM and scored by the proxy simulator, with the random-explanation
    baseline (another sampled neuron's LLM explanation)."""
    fire, train = out["fire"], out["train"]
    chosen = _sample_neurons(fire, config.llm_neurons, config.seed)
    if config.llm == "local":
        from interp.models.loading import load_model

        explainer_model = model if model.spec == "smollm2-135m" else load_model("smollm2-135m")
        explain, name = local(explainer_model), "SmolLM2-135M-Instruct (local)"
    else:
        explain, name = endpoint(config.llm, config.llm_model), config.llm_model or config.llm
    vocab = model.vocab
    spelled = vocab_words(vocab)
    tokens = atlas.tensors["tokens"]
    texts, hits = [], 0
    tops = train[train.which == "top"].sort_values("y", ascending=False)
    grouped = dict(tuple(tops.groupby(["layer", "neuron"])))
    for row in tqdm(chosen.itertuples(), total=len(chosen), desc=f"explaining with {name}", file=sys.stderr):
        ex = grouped.get((row.layer, row.neuron), tops.iloc[:0]).head(5)
        contexts = []
        for e in ex.itertuples():
            w = tokens[e.window].tolist()
            left = model.tokenizer.decode(w[max(0, e.pos - 12):e.pos])
            contexts.append(f"{left}<<{vocab[w[e.pos]]}>>{model.tokenizer.decode(w[e.pos + 1:e.pos + 4])}"
                            .replace("\n", " "))
        frequent = [vocab[int(t)] for t in ex.token_id.value_counts().index[:5]]
        answer, cached = explain(messages(contexts, frequent))
        hits += cached
        texts.append(clean(answer))
    chosen["explanation"] = texts
    rows = []
    for (layer, neuron), text in zip(zip(chosen.layer, chosen.neuron), texts):
        for t in explanation_tokens(text, spelled):
            rows.append((layer, neuron, -1, t, 1.0, 1, 1.0))
    entries = pd.DataFrame(rows, columns=["layer", "neuron", "prev_id", "token_id", "weight", "support", "mass"])
    sub = fire.merge(chosen[["layer", "neuron"]], on=["layer", "neuron"])
    held = out["held"]
    keep = fire.reset_index().merge(sub[["layer", "neuron"]], on=["layer", "neuron"])["index"].to_numpy().copy()
    sub_held = Heldout(held.tokens, held.prev, held.y[:, keep], held.seq_len,
                       held.examples.merge(sub[["layer", "neuron"]], on=["layer", "neuron"]), held.random_rows)
    scores = score(entries, sub, sub_held, model.d_mlp)
    rand = score(reassigned(entries, sub, derangement(len(sub), torch.Generator().manual_seed(config.seed + 3))),
                 sub, sub_held, model.d_mlp)
    for m in METRICS:
        scores[f"{m}_random"] = rand[m].to_numpy()
    scores = scores.merge(chosen[["layer", "neuron", "explanation"]], on=["layer", "neuron"])
    scores["explainer"] = f"llm:{name}"
    scores.attrs["cache_hits"] = hits
    return scores


def flag(scores: pd.DataFrame) -> pd.Series:
    """Whether each neuron's primary score fails to beat the random explanations' 95th percentile."""
    threshold = np.nanquantile(scores[f"{PRIMARY}_random"], FLAG_QUANTILE) if len(scores) else np.nan
    return ~(scores[PRIMARY] > threshold)


def summary(scores: pd.DataFrame, metrics=METRICS) -> dict:
    """Per metric: the median, the median of each baseline present, and the share above the random
    explanations' 95th percentile."""
    out = {}
    for m in metrics:
        if m not in scores or scores[m].notna().sum() == 0:
            continue
        s = {"median": float(np.nanmedian(scores[m])), "n": int(scores[m].notna().sum())}
        for base in ("random", "shuffled"):
            col = f"{m}_{base}"
            if col in scores and scores[col].notna().any():
                s[f"median_{base}"] = float(np.nanmedian(scores[col]))
        if f"{m}_random" in scores and scores[f"{m}_random"].notna().any():
            bar_ = np.nanquantile(scores[f"{m}_random"], FLAG_QUANTILE)
            s["share_above_random"] = float((scores[m] > bar_).mean())
        if m in ("iid_corr", "top_random_corr"):
            s["share_at_least_0.8"] = float((scores[m] >= 0.8).mean())
        out[m] = s
    return out


def _random_weights(model, atlas: Result, layers: list[int], config: ExplainConfig) -> tuple[dict, str]:
    """The pipeline on random weights: an atlas of the same windows and layers, then the scores."""
    from interp.models.loading import random_weights

    rnd = random_weights(model, config.seed)
    if rnd.weights_hash == model.weights_hash:
        raise InterpError("the random-weights model has the same weights as the model")  # a guard, never expected
    atlas_cfg = AtlasConfig.from_dict({**atlas.config.to_dict(), "layers": tuple(layers), "workers": 1,
                                       "checkpoint_every": 0})
    tqdm.write("random-weights baseline: an atlas of the same architecture with random weights, over the same "
               "windows", file=sys.stderr)
    rnd_atlas = atlas_of_tokens(rnd, atlas.tensors["tokens"].long(), atlas_cfg)
    done = explain_and_score(rnd, rnd_atlas, layers, config, baselines=True)
    return done, rnd.weights_hash


@estimator("neuron_explanations")
def estimate(model, config: ExplainConfig, calibrate: bool) -> preflight.Estimate:
    """Forwards: the held-out windows, the TokenChange clamps and, with random weights, one more atlas."""
    layers = model.check_layers(config.layers)
    n = len(layers) * model.d_mlp if config.token_change < 0 else len(layers) * config.token_change
    clamps = -(-2 * n * config.contexts // 32)
    held = -(-config.heldout_windows // 8)
    est = preflight.Estimate(
        "neuron_explanations", str(model.device), forwards=held + clamps + 2, units=len(layers),
        work=f"{len(layers) * model.d_mlp:,} neurons; {config.heldout_windows} held-out windows; "
             f"{2 * n * config.contexts:,} "
             f"clamped contexts" + ("; plus an atlas of random weights" if config.random_weights else ""),
        memory={**preflight.held(model), "held-out activations": config.heldout_windows * 128 * len(layers)
                * model.d_mlp * 4 * 3},
        available=preflight.available_memory(model.device),
        remedy="fewer --layers or --heldout-windows")
    if config.random_weights:
        est.notes.append("the random-weights baseline runs an atlas of the same size again (about the atlas's time)")
    return est


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, np.ndarray)) else []


@register("neuron_explanations", ExplainConfig)
def run(model, config: ExplainConfig) -> Result:
    """Explain every neuron from token statistics (and optionally an LLM), scored on held-out data."""
    if config.llm:
        check_llm(config.llm)
    model.check_layers(config.layers)
    atlas = find_atlas(model, config)
    layers = list(config.layers) or atlas_layers(atlas)
    steps = bar(total=4, desc="explaining neurons", unit="step")
    done = explain_and_score(model, atlas, layers, config)
    steps.update()
    fire, entries, scores = done["fire"], done["entries"], done["scores"]
    promoted = promoted_tokens(model, fire)
    vocab = model.vocab
    by_neuron = dict(tuple(entries.groupby(["layer", "neuron"])))
    prom = {(r.layer, r.neuron): r.promoted for r in promoted.itertuples()}
    empty = entries.iloc[:0]
    labels = [render_label(vocab, by_neuron.get((l, n), empty), list(prom.get((l, n), [])))
              for l, n in zip(fire.layer, fire.neuron)]
    explanations = fire.assign(explainer="tokens", label=labels).merge(promoted, on=["layer", "neuron"], how="left")
    explanations["promoted"] = explanations.promoted.apply(_as_list)
    scores["flagged"] = flag(scores).to_numpy()
    steps.update()
    outputs = output_scores(model, atlas, fire, promoted, config) if config.token_change else pd.DataFrame()
    steps.update()
    tables = {"explanations": explanations, "entries": entries, "scores": scores}
    metrics = {"layers": len(layers), "neurons": len(fire), "atlas": str(atlas.path),
               "heldout_tokens": len(done["held"].tokens), "train_examples": len(done["train"]),
               "heldout_examples": len(done["held"].examples), "tokens": summary(scores)}
    notes = ["every score is on the atlas's held-out windows, which the explanations never read; the labels are "
             "token statistics (a look-up table), not prose",
             f"flagged: iid_corr not above the {FLAG_QUANTILE:.0%} quantile of random explanations' "
             f"({int(scores.flagged.sum()):,} of {len(scores):,} neurons)"]
    if len(outputs):
        tables["outputs"] = outputs.assign(promoted=outputs.promoted.apply(_as_list))
        metrics["outputs"] = summary(outputs, [f"{m}" for m in OUTPUT_METRICS])
        metrics["token_change_neurons"] = len(outputs)
    if config.llm:
        llm_scores = llm_explanations(model, atlas, done, config)
        llm_scores["flagged"] = flag(llm_scores).to_numpy()
        tables["llm"] = llm_scores
        metrics["llm"] = summary(llm_scores) | {"explainer": llm_scores.explainer.iloc[0] if len(llm_scores) else "",
                                                "cache_hits": llm_scores.attrs.get("cache_hits", 0)}
    if config.random_weights:
        rnd, rnd_hash = _random_weights(model, atlas, layers, config)
        tables["random_weights"] = rnd["scores"]
        metrics["random_weights"] = summary(rnd["scores"]) | {"weights_hash": rnd_hash}
    steps.update()
    steps.close()
    return Result(analysis="neuron_explanations", config=config, provenance=provenance(model, config),
                  tables=tables, metrics=metrics, notes=notes)
