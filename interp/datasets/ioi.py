"""Indirect-object-identification (IOI) pairs, generated from the project's own words.

A clean prompt names two people and then has one of them (S) give something to the
other (IO): "When Mary and John went to the store, John gave a drink to" -> " Mary".
Its corrupted twin is the ABC version (Wang et al., 2022): the giver is a third
name C, so nothing in the context singles out the indirect object.

- ``answer`` is IO, ``wrong`` is S; the metric is ``logit[IO] - logit[S]``.
- Only names, places and objects that are one token (with their leading space) for
  this model's tokenizer are used, so clean and corrupt prompts have equal length.
- Words and templates live in ``data/ioi/vocab.json``; its ``fresh_templates`` (dataset ``ioi-fresh``) are a
  second pair set, written apart from the first, for checking a figure against the template set.
"""

from __future__ import annotations

import json
import random

from interp.datasets.prompts import DATA_DIR, Pair
from interp.errors import InterpError

VOCAB = DATA_DIR / "ioi" / "vocab.json"


def single_token_words(model, words: list[str]) -> list[str]:
    """The words that encode to exactly one token."""
    return [w for w in words if len(model.encode(w, prepend_bos=False)) == 1]


def ioi_pairs(model, n: int = 16, seed: int = 0, templates: list[str] | None = None,
              template_set: str = "templates") -> list[Pair]:
    """``n`` ABC-corrupted IOI pairs for ``model``, drawn under ``seed``, from ``templates`` or the vocabulary's
    ``template_set`` (``templates``, the builtin eight; ``fresh_templates``, eight written later as a second set)."""
    if n < 1:
        raise InterpError(f"need at least one IOI pair, got n={n}")
    vocab = json.loads(VOCAB.read_text())
    templates = templates or vocab[template_set]
    words = {k: single_token_words(model, vocab[k]) for k in ("names", "places", "objects")}
    if len(words["names"]) < 3 or not words["places"] or not words["objects"]:
        raise InterpError(
            f"model {model.spec!r} tokenizes too few IOI words as single tokens "
            f"({ {k: len(v) for k, v in words.items()} }); IOI needs >= 3 names, 1 place, 1 object. "
            "Bring your own pairs as JSONL with clean, corrupt, answer, wrong.")
    rng = random.Random(seed)
    pairs: list[Pair] = []
    for attempt in range(20 * n):
        if len(pairs) == n:
            break
        io, s, c = rng.sample(words["names"], 3)
        fill = {"PLACE": rng.choice(words["places"]), "OBJECT": rng.choice(words["objects"]), "IO": io, "S": s}
        template = templates[attempt % len(templates)]
        clean, corrupt = template.format(S2=s, **fill), template.format(S2=c, **fill)
        # a name may merge with its neighbour; keep only pairs of equal token length
        if len(model.encode(clean)) == len(model.encode(corrupt)):
            pairs.append(Pair(clean=clean, corrupt=corrupt, answer=io, wrong=s))
    if len(pairs) < n:
        raise InterpError(f"could only build {len(pairs)} of {n} equal-length IOI pairs for {model.spec!r}")
    return pairs
