"""Facts: factual-recall decomposition, the suppression fix, unlearning."""
