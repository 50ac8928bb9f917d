"""The bigram paper's headline measure: how well a (sub)network's per-token surprisal tracks bigram surprisal.

Chang & Bergen (2025) correlate the subnetwork's surprisal ``-log2 p(w_t | w_<t)`` with the bigram
surprisal ``-log2 P(w_t | w_t-1)`` on held-out text. The bigram estimate here is the maximum-likelihood
one from the run's own counts (``c(x, y) / c(x)``, no smoothing), so a bigram never seen in the counted
corpus has infinite surprisal. Both treatments are reported: those tokens dropped, and their surprisal
replaced by the largest finite one. Rows: the full model, the subnetwork, and random subnetworks of the
same size (``random_seeds``).

Held-out text: the corpus's tokens after the ``corpus_tokens`` the run counted and trained on (the
evaluation windows of a bigram run are inside the counted text, so they are not used here).

``interp bigram-surprisal`` computes it for a stored bigram run; new bigram runs include it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.analyses.base import register
from interp.analyses.subnetworks.read import stored_mask, stored_subnetwork, stored_table
from interp.datasets.bigrams import BigramTable
from interp.datasets.corpus import load_corpus, token_windows
from interp.errors import InterpError
from interp.metrics import pearson
from interp.progress import bar
from interp.result import Config, Result, option, provenance
from interp.tracing.masks import masked, random_like

LN2 = float(np.log(2))


def bigram_surprisal(table: BigramTable, windows: Int[Tensor, "window pos"]) -> Float[Tensor, "window next"]:
    """``-log2 c(x, y) / c(x)`` for each consecutive pair of ``windows`` (inf where the pair was never counted)."""
    V = table.d_vocab
    cur = torch.repeat_interleave(torch.arange(V, device="cpu"), table.row_ptr[1:] - table.row_ptr[:-1])
    keys = cur * V + table.next.long()  # sorted: count_bigrams groups by context, then by next token
    x, y = windows[:, :-1].long().cpu(), windows[:, 1:].long().cpu()
    want = (x * V + y).flatten()
    at = torch.searchsorted(keys, want).clamp(max=len(keys) - 1)
    count = torch.where(keys[at] == want, table.counts[at].double(), 0.0)
    context = table.context[x.flatten()].double()
    p = torch.where(context > 0, count / context.clamp(min=1), torch.zeros_like(count))
    return (-torch.log2(p)).view(x.shape)  # log2(0) = -inf: an unseen bigram


@torch.no_grad()
def model_surprisal(model, windows: Int[Tensor, "window pos"], batch: int = 8,
                    desc: str = "surprisal") -> Float[Tensor, "window next"]:
    """``-log2 p(w_t | w_<t)`` of the model as it is now (masks as set), for every next token."""
    out = []
    for i in bar(range(0, len(windows), batch), desc=desc, unit="batch", leave=False):
        w = windows[i: i + batch].to(model.device)
        logp = model(w).float().log_softmax(-1)[:, :-1]
        out.append(-logp.gather(-1, w[:, 1:, None])[..., 0].double().cpu() / LN2)
    return torch.cat(out)


def fit(surprisal: Tensor, bigram: Tensor) -> dict:
    """Pearson r of the two surprisals with infinite bigram surprisals dropped and replaced by the maximum."""
    s, b = surprisal.flatten().numpy(), bigram.flatten().numpy()
    finite = np.isfinite(b)
    if finite.sum() < 3:
        return {"pearson_dropped": float("nan"), "pearson_max": float("nan"), "n_tokens": len(b),
                "n_infinite": int((~finite).sum())}
    replaced = np.where(finite, b, b[finite].max())
    return {"pearson_dropped": pearson(s[finite], b[finite]), "pearson_max": pearson(s, replaced), "n_tokens": len(b),
            "n_infinite": int((~finite).sum())}


def heldout_windows(model, corpus: str, counted_tokens: int, n_tokens: int, seq_len: int) -> Tensor:
    """``seq_len`` windows of the corpus after its first ``counted_tokens`` tokens (in the same windowing)."""
    source = load_corpus(corpus, model)
    skip = len(list(token_windows(model, source, seq_len, counted_tokens)))
    windows = [w for w in list(token_windows(model, source, seq_len, counted_tokens + n_tokens))[skip:]
               if len(w) == seq_len]
    if not windows:
        raise InterpError(f"corpus {corpus!r} has no text after its first {counted_tokens:,} tokens to hold out; "
                          "give a longer corpus or fewer --corpus-tokens")
    return torch.tensor(windows, dtype=torch.long, device="cpu")


def surprisal_rows(model, masks, hard: dict[str, Tensor], windows: Tensor, table: BigramTable,
                   random_seeds: int) -> pd.DataFrame:
    """The fit for the full model, the subnetwork ``hard`` and ``random_seeds`` random subnetworks of its size
    (``masks`` attached; left off)."""
    bigram = bigram_surprisal(table, windows)
    fraction = sum(int(k.sum()) for k in hard.values()) / sum(k.numel() for k in hard.values())
    rows = []
    masks.set("off")
    rows.append({"model": "full", "seed": -1, **fit(model_surprisal(model, windows, desc="surprisal (full)"), bigram)})
    masks.set_fixed(hard)
    sub = model_surprisal(model, windows, desc="surprisal (subnetwork)")
    rows.append({"model": "subnetwork", "seed": -1, **fit(sub, bigram)})
    for seed in range(random_seeds):
        masks.set_fixed(random_like(hard, fraction, seed))
        rand = model_surprisal(model, windows, desc=f"surprisal (random {seed})")
        rows.append({"model": "random subnetwork", "seed": seed, **fit(rand, bigram)})
    masks.set("off")
    return pd.DataFrame(rows)


def surprisal_metrics(rows: pd.DataFrame) -> dict:
    mean = rows.groupby("model")[["pearson_dropped", "pearson_max"]].mean()
    return {m: {k: float(v) for k, v in mean.loc[m].items()} for m in mean.index}


@dataclass(frozen=True)
class SurprisalConfig(Config):
    subnetwork: str = option("", "the bigram_subnetworks run (id or directory); default: the newest on this model")
    heldout_tokens: int = option(8192, "held-out tokens (after the run's counted corpus)", min=64)
    random_seeds: int = option(3, "random subnetworks of the same size", min=0)


@register("bigram_surprisal", SurprisalConfig, mutates_weights=True)
def run(model, config: SurprisalConfig) -> Result:
    """Correlate the subnetwork's per-token surprisal with bigram surprisal on held-out text."""
    source = stored_subnetwork(model, config.subnetwork)
    c = source.config
    windows = heldout_windows(model, c.corpus, c.corpus_tokens, config.heldout_tokens, c.seq_len)
    with masked(model, c.params, c.init) as masks:
        rows = surprisal_rows(model, masks, stored_mask(source, model), windows, stored_table(source),
                              config.random_seeds)
    metrics = {"subnetwork_run": source.run_id, "kept_fraction": source.metrics["kept_fraction"],
               **surprisal_metrics(rows)}
    sub, full = metrics["subnetwork"], metrics["full"]
    inf = rows.n_infinite.iloc[0] / rows.n_tokens.iloc[0]
    notes = [f"Held-out: {rows.n_tokens.iloc[0]:,} next tokens of {c.corpus!r} after its first {c.corpus_tokens:,}; "
             f"{inf:.1%} of them form a bigram never counted (infinite bigram surprisal).",
             f"Pearson r with bigram surprisal (infinite dropped / replaced by the max): subnetwork "
             f"{sub['pearson_dropped']:.3f} / {sub['pearson_max']:.3f}, full model {full['pearson_dropped']:.3f} / "
             f"{full['pearson_max']:.3f}"]
    rand = metrics.get("random subnetwork")
    if rand:
        notes[-1] += f", random subnetworks {rand['pearson_dropped']:.3f} / {rand['pearson_max']:.3f}"
    notes[-1] += "."
    return Result(analysis="bigram_surprisal", config=config, provenance=provenance(model, config),
                  tables={"surprisal": rows}, metrics=metrics, notes=notes)
