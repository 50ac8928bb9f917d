from __future__ import annotations

import pytest
import torch

import interp
from interp.analyses.base import Config, get_analysis
from interp.errors import InterpError


def _brute_force_dla(model, prompt: str, target: int) -> torch.Tensor:
    """Each neuron's DLA at the last position, written out from the weights and two recorded hooks (no
    ``interp.metrics``): ``act_n * s * (W_out[:, n] . (w_f * W_U[:, t]))``, with ``s`` the final norm's scale
    (LayerNorm: ``W_out`` columns and the residual centred first)."""
    from interp.names import hook_name
    from interp.tracing import record

    w = model.weights
    sites = [hook_name("mlp_post", l) for l in range(model.n_layers)] + [hook_name("final_in")]
    with torch.no_grad(), record(model, sites) as acts:
        model(model.to_tokens(prompt))
    x = acts[hook_name("final_in")][0, -1].double()
    layer_norm = w.final_norm.kind == "layer"
    if layer_norm:
        x = x - x.mean()
    eps = w.final_norm.eps
    s = 1 / torch.sqrt((x * x).mean() + eps)
    gain = w.final_norm.weight.double() if w.final_norm.weight is not None else 1.0
    direction = gain * w.W_U[:, target].double()
    out = []
    for l in range(model.n_layers):
        W = w.W_out[l].double()
        if layer_norm:
            W = W - W.mean(0, keepdim=True)
        out.append(acts[hook_name("mlp_post", l)][0, -1].double() * s * (W.T @ direction))
    return torch.stack(out)  # [layer, d_mlp]


def test_top_neurons_matches_a_brute_force_dla_and_saves(tiny):
    result = interp.run("top_neurons", tiny, prompt="hello there", top_k=5)
    table = result.table("neurons")
    assert len(table) == tiny.n_layers * tiny.d_mlp
    target = tiny.token_id(result.metrics["target"])
    brute = _brute_force_dla(tiny, "hello there", target)
    stored = torch.tensor(table.sort_values(["layer", "neuron"]).dla.values, dtype=torch.float64).view(
        tiny.n_layers, tiny.d_mlp)
    torch.testing.assert_close(stored, brute, atol=1e-4, rtol=1e-4)
    planted = brute.clone()
    planted[0, 0] += 1e-2  # a defect the comparison must see
    assert not torch.allclose(stored, planted, atol=1e-4, rtol=1e-4)
    top = result.table("top")
    assert top.dla.abs().is_monotonic_decreasing and len(top) == 5
    best = brute.flatten().abs().topk(5).indices.tolist()
    assert {(int(l), int(n)) for l, n in zip(top.layer, top.neuron)} == {divmod(i, tiny.d_mlp) for i in best}
    assert result.path is not None and interp.load_result(result.path).metrics == result.metrics
    assert interp.list_runs("top_neurons").path.tolist() == [str(result.path)]


def test_unknown_option_and_analysis(tiny_llama):
    with pytest.raises(InterpError, match="unknown option"):
        interp.run("top_neurons", tiny_llama, promt="typo")
    with pytest.raises(InterpError, match="unknown analysis"):
        get_analysis("nope")


def test_config_round_trip():
    cfg = get_analysis("top_neurons").config(prompt="x", top_k=3)
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
    assert isinstance(cfg, Config) and len(cfg.digest()) == 8
