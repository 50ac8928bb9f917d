"""Patching: a placeholder until its analysis lands."""

from components import placeholder

placeholder(
    'Patching',
    'RelP: Faithful and Efficient Circuit Discovery via Relevance Patching (2025)',
    [
        'activation, attribution and relevance patching heatmaps (layer × position, layer × head)',
        'the faithfulness scatter of each method against activation patching',
        'top neurons of a chosen MLP layer',
    ],
    'interp patch',
)
