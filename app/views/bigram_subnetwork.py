"""Bigram subnetwork: a placeholder until its analysis lands."""

from components import placeholder

placeholder(
    'Bigram subnetwork',
    'Chang & Bergen (2025): Bigram Subnetworks',
    [
        'kept parameters per layer and matrix',
        'sufficiency and necessity against random subnetworks',
        'the residual-geometry curve, and a next-token comparison box',
    ],
    'interp bigram',
)
