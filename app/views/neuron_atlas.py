"""Neuron atlas: a placeholder until its analysis lands."""

from components import placeholder

placeholder(
    'Neuron atlas',
    "Anchors: Neuroscope, OpenAI's neuron-explainer, Neuronpedia",
    [
        'top-activating contexts per neuron, streamed over a corpus',
        'activation histograms, quantiles and density',
        'neurons most active on a pasted text',
    ],
    'interp atlas',
)
