"""Prompt sets: facts and clean/corrupt pairs, as JSONL users can bring themselves.

- Facts: ``{"prompt", "subject", "answer", "relation"}``; the subject must occur in
  the prompt, and the answer is what follows the prompt (usually with a leading
  space, e.g. ``" Paris"``).
- Pairs (IOI and other patching data): ``{"clean", "corrupt", "answer", "wrong"}``.

Answers of several tokens: ``policy="single"`` refuses them with the tokenization
shown; ``policy="first"`` scores the first token (what a next-token metric can see).
Built-in sets are named ``builtin:NAME`` and live in ``data/``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from interp.datasets.jsonl import read_jsonl
from interp.errors import InterpError

DATA_DIR = Path(__file__).resolve().parents[2] / "data"


class Record:
    """A JSONL record type: its dataclass fields are the schema (``interp.datasets.jsonl``)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, rec: dict):
        """The record's own fields (extra JSONL fields are ignored)."""
        return cls(**{f.name: rec[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class Fact(Record):
    prompt: str
    subject: str
    answer: str
    relation: str


@dataclass(frozen=True)
class Pair(Record):
    clean: str
    corrupt: str
    answer: str
    wrong: str


@dataclass(frozen=True)
class SemEvalItem(Record):
    """A SemEval-2025 Task 4 record (its ``id``, ``task`` and ``split`` fields are optional here)."""

    input: str
    output: str


def resolve(source: str | Path, folder: str) -> Path:
    """``builtin:NAME`` -> ``data/<folder>/NAME.jsonl``; anything else is a path."""
    text = str(source)
    if text.startswith("builtin:"):
        name = text.removeprefix("builtin:")
        path = DATA_DIR / folder / f"{name}.jsonl"
        if not path.is_file():
            have = sorted(p.stem for p in (DATA_DIR / folder).glob("*.jsonl"))
            raise InterpError(f"no built-in set {name!r}: choose one of {have}")
        return path
    return Path(text)


def load_facts(source: str | Path) -> list[Fact]:
    path = resolve(source, "facts")
    facts = []
    for number, rec in enumerate(read_jsonl(path, Fact, "fact"), start=1):
        if rec["subject"] not in rec["prompt"]:
            raise InterpError(f"{path}: fact {number}: subject {rec['subject']!r} "
                              f"is not in the prompt {rec['prompt']!r}")
        facts.append(Fact.from_record(rec))
    return facts


def unique_facts(facts: list[Fact]) -> tuple[list[Fact], int]:
    """The facts with repeated (prompt, answer) dropped (first kept), and how many were dropped:
    a fact must never land on both sides of a train/held-out split."""
    seen, out = set(), []
    for f in facts:
        if (f.prompt, f.answer) not in seen:
            seen.add((f.prompt, f.answer))
            out.append(f)
    return out, len(facts) - len(out)


def load_pairs(source: str | Path) -> list[Pair]:
    path = resolve(source, "pairs")
    return [Pair.from_record(rec) for rec in read_jsonl(path, Pair, "pair")]


def subject_positions(model, prompt: str, subject: str, prepend_bos: bool | None = None) -> list[int]:
    """Token positions of ``subject`` in ``prompt`` (by character offsets)."""
    start = prompt.find(subject)
    if start < 0:
        raise InterpError(f"subject {subject!r} is not in the prompt {prompt!r}; "
                          f"its tokens are {model.to_str_tokens(prompt, prepend_bos)}")
    end = start + len(subject)
    enc = model.tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    offset = 1 if (model.prepends_bos if prepend_bos is None else prepend_bos) else 0
    hits = [i + offset for i, (a, b) in enumerate(enc["offset_mapping"]) if a < end and b > start]
    if not hits:
        raise InterpError(f"subject {subject!r} covers no whole token of {prompt!r}: "
                          f"{model.to_str_tokens(prompt, prepend_bos)}")
    return hits


PAIR_FIELDS = ["clean", "corrupt", "answer", "wrong"]


def pairs_hash(pairs) -> str:
    """The identity of a run's pairs (a DataFrame with ``pair`` and the ``Pair`` fields): a hash of their text,
    in order. Two patching runs are comparable only on the same pairs."""
    rows = pairs.sort_values("pair")[PAIR_FIELDS].to_dict("records")
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]
