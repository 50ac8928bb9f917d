"""Prompt sets (facts, pairs) and corpora, with validation that names file and line."""

from interp.datasets.corpus import Corpus, load_corpus, token_windows
from interp.datasets.prompts import Fact, Pair, load_facts, load_pairs, subject_positions

__all__ = ["Corpus", "Fact", "Pair", "load_corpus", "load_facts", "load_pairs", "subject_positions",
           "token_windows"]
