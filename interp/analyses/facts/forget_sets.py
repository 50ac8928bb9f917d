"""The facts an unlearning run forgets and keeps, how the kept ones are split, and how every method is scored.

A method may use only part of the retain facts (``used``: trained on, or protected); the rest (``unseen``) are
the evaluation set it never sees, and the headline retain figure. The split is by subject (a subject's facts of
every relation go to the same side, so no fact and no subject is in both) and stratified by relation (each
relation is on both sides), seeded, and it does not depend on the model: both embedded models get the same split.
Facts a model does not answer before the edit are left out of each part afterwards (there is nothing to keep).
Perplexity is measured on corpus windows the methods never see either: the windows alternate between the
methods' text (second moments, KL) and the evaluation text.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from interp.datasets.jsonl import EmptyRecord, read_jsonl
from interp.datasets.prompts import DATA_DIR, Fact, SemEvalItem, resolve
from interp.metrics import lm_loss


@dataclass(frozen=True)
class Item:
    prompt: str
    answer: str
    subject: str = ""
    relation: str = ""


def load_items(source: str, split: str) -> list[Item]:
    """Facts JSONL (prompt/subject/answer/relation) or SemEval-2025 Task 4 JSONL
    (id/input/output/task/split; records of the other split are skipped)."""
    path = resolve(source, "unlearning") if str(source).startswith("builtin:") else resolve(source, "facts")
    first = read_jsonl(path, EmptyRecord, "record")[0]  # checks the file exists, is UTF-8 and holds JSON objects
    if "input" in first:
        recs = read_jsonl(path, SemEvalItem, "SemEval item")
        return [Item(r["input"], r["output"]) for r in recs if r.get("split", split) == split]
    recs = read_jsonl(path, Fact, "fact")
    return [Item(r["prompt"], r["answer"], r["subject"], r["relation"]) for r in recs]


def split_retain(items: list[Item], unseen: float, seed: int) -> tuple[list[Item], list[Item]]:
    """``(used, unseen)``: about ``unseen`` of each relation's subjects (at least one, and at least one left
    used, where the relation has two) go to the evaluation part, with every fact of theirs. A subject-less
    item (SemEval) is its own group."""
    groups: dict[str, list[Item]] = {}
    for it in items:
        groups.setdefault(it.subject or it.prompt, []).append(it)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    by_relation: dict[str, list[str]] = {}
    for k in keys:  # a subject is filed under its first fact's relation
        by_relation.setdefault(groups[k][0].relation, []).append(k)
    held = set()
    for ks in by_relation.values():
        n = round(unseen * len(ks))
        if 0 < unseen < 1 and len(ks) > 1:
            n = min(max(n, 1), len(ks) - 1)
        held.update(ks[:n])
    return ([it for it in items if (it.subject or it.prompt) not in held],
            [it for it in items if (it.subject or it.prompt) in held])


def split_table(parts: dict[str, list[Item]], known: dict[str, list[bool]]) -> pd.DataFrame:
    """One row per fact: its part (forget, used, unseen), and whether the model answered it before the edit."""
    return pd.DataFrame([{"part": part, "prompt": it.prompt, "subject": it.subject, "relation": it.relation,
                          "answer": it.answer, "known": bool(ok)}
                         for part, items in parts.items() for it, ok in zip(items, known[part])],
                        columns=["part", "prompt", "subject", "relation", "answer", "known"])


def encode_items(model, items: list[Item]):
    """Right-padded prompt+answer tokens, labels only on answer tokens (-100 elsewhere), and each
    item's first answer position."""
    rows, labels, first = [], [], []
    for it in items:
        p, a = model.encode(it.prompt), model.continuation(it.prompt, it.answer)  # the answer after the prompt
        rows.append(p + a)
        labels.append([-100] * len(p) + a)
        first.append(len(p) - 1)  # the logits there predict the first answer token
    width = max(map(len, rows))
    pad = model.tokenizer.pad_token_id or model.tokenizer.eos_token_id or 0
    tokens = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=model.device)
    lab = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels], device=model.device)
    return tokens, lab, torch.tensor(first, device=model.device)


def first_answer(logits: Tensor, labels: Tensor, first: Tensor) -> tuple[Tensor, Tensor]:
    """The logits that predict each item's first answer token, and that token."""
    rows = torch.arange(len(first), device=first.device)
    return logits[rows, first].float(), labels[rows, first + 1]


def evaluate(model, items: list[Item]) -> dict:
    """Top-1 accuracy and mean probability of the first answer token."""
    if not items:
        return {"acc": float("nan"), "p": float("nan"), "correct": []}
    tokens, labels, first = encode_items(model, items)
    with torch.no_grad():
        z, answer = first_answer(model(tokens), labels, first)
    rows = torch.arange(len(items), device=z.device)
    return {"acc": float((z.argmax(-1) == answer).float().mean()),
            "p": float(z.softmax(-1)[rows, answer].mean()), "correct": (z.argmax(-1) == answer).tolist()}


def paraphrase(items: list[Item]) -> list[Item]:
    templates = json.loads((DATA_DIR / "facts" / "paraphrases.json").read_text())
    return [Item(t.format(subject=it.subject), it.answer, it.subject, it.relation)
            for it in items for t in templates.get(it.relation, [])]


def report(model, sets: dict[str, list[Item]], windows: Tensor) -> dict:
    """Every figure of one model state: forget accuracy and probability, paraphrase accuracy, retain accuracy on
    the used and the unseen facts, perplexity on the evaluation windows."""
    acc = {k: evaluate(model, v) for k, v in sets.items()}
    return {"forget_acc": acc["forget"]["acc"], "forget_p": acc["forget"]["p"],
            "paraphrase_acc": acc["paraphrase"]["acc"], "retain_unseen_acc": acc["unseen"]["acc"],
            "retain_seen_acc": acc["used"]["acc"], "perplexity": math.exp(lm_loss(model, windows))}
