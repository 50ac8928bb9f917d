"""Causal tracing & unlearning: a placeholder until its analysis lands."""

from components import placeholder

placeholder(
    'Causal tracing & unlearning',
    'SHA256 at SemEval-2025 Task 4: Selective Amnesia; ROME causal tracing',
    [
        'ROME-style indirect-effect heatmaps, per fact and averaged',
        'constrained vs unconstrained unlearning: forget, retain and perplexity',
        'the edited model beside the original',
    ],
    'interp trace / interp unlearn',
)
