"""Factual recall: a placeholder until its analysis lands."""

from components import placeholder

placeholder(
    'Factual recall',
    'Lv et al. (2024): Interpreting Key Mechanisms of Factual Recall in Transformer-Based LMs',
    [
        'direct logit attribution by layer',
        'argument-passing heads and their attention to the subject',
        "the deciding MLP's top neurons, and the final-layer anti-overconfidence",
    ],
    'interp factual',
)
