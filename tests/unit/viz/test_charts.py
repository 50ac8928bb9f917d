"""Charts that draw what they mean: neuron ids on categorical axes, one bar per token id."""

from __future__ import annotations

import pandas as pd

from interp.result import Result
from interp.viz.decoding import token_bars
from interp.viz.factual import top_neurons_bar


def test_factual_top_neurons_axis_is_categorical():
    table = pd.DataFrame({"layer": [29, 29], "neuron": [1512, 15], "mean_dla": [0.5, -0.2]})
    r = Result(analysis="factual_recall", config={}, provenance={}, tables={"neurons": table},
               metrics={"mlp_layer": 29, "top_neurons_share": 0.5})
    fig = top_neurons_bar(r)
    assert fig.layout.yaxis.type == "category"
    assert list(fig.data[0].y) == ["29.1512", "29.15"]


def test_tokens_that_print_alike_keep_their_own_bars():
    rows = pd.DataFrame({"side": ["out+"] * 3, "rank": [0, 1, 2], "token": ["\ufffd", "\ufffd", " a"],
                         "token_id": [300, 301, 64], "score": [3.0, 2.0, 1.0]})
    fig = token_bars(rows, "out+")
    assert len(set(fig.data[0].y)) == 3 and fig.layout.yaxis.type == "category"
