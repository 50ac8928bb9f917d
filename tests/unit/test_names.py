import pytest

from interp.errors import InterpError
from interp.names import NeuronId, hook_name


def test_neuron_id_round_trips_through_text():
    nid = NeuronId(12, 345)
    assert str(nid) == "12.345"
    assert NeuronId.parse("12.345") == nid == NeuronId.parse(" 12/345 ")
    assert nid.hook == "blocks.12.mlp.hook_post"


def test_hook_names():
    assert hook_name("mlp_out", 3) == "blocks.3.hook_mlp_out"
    assert hook_name("embed") == "hook_embed"
    with pytest.raises(InterpError, match="unknown site"):
        hook_name("mlp_postt", 0)
    with pytest.raises(InterpError, match="needs a layer"):
        hook_name("mlp_post")
