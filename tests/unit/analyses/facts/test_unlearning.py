from __future__ import annotations

import json

import pytest
import torch

import interp
from interp.analyses.facts.unlearning import Item, evaluate, trainable_names
from interp.errors import InterpError
from interp.models import load_model
from interp.models.loading import save_edit

PROMPTS = ["The capital of Abc is", "Home of Qrs: the", "Zed lives in", "Where is Wuv? In", "Tal is near",
           "Mox rules over", "Pim sits in", "Ro is in"]


def known_items(model) -> list[Item]:
    """Facts the random model 'knows': each answer is its own top prediction."""
    items = []
    for p in PROMPTS:
        with torch.no_grad():
            top = int(model(model.to_tokens(p))[0, -1].argmax())
        items.append(Item(p, model.token_str(top), p.split()[0], "r"))
    return items


def write(path, items):
    path.write_text("\n".join(json.dumps({"prompt": i.prompt, "subject": i.prompt.split()[0], "answer": i.answer,
                                          "relation": "r"}) for i in items) + "\n")
    return str(path)


@pytest.fixture
def sets(tmp_path):
    model = load_model("tiny-llama")
    items = known_items(model)
    assert evaluate(model, items)["acc"] == 1.0
    return model, write(tmp_path / "forget.jsonl", items[:3]), write(tmp_path / "retain.jsonl", items[3:])


def test_only_chosen_mlps_change_and_the_model_is_restored(sets):
    model, forget, retain = sets
    original = {n: p.detach().clone() for n, p in model.hf_params.items()}
    result = interp.run("unlearning", model, forget=forget, retain=retain, layers=[1], steps=3, lr=1e-2,
                        target_forget_acc=0.0, corpus_tokens=256, seq_len=32)
    assert all(torch.equal(p, original[n]) for n, p in model.hf_params.items())  # the original is untouched
    names = set(trainable_names(model, [1]))
    assert names and all(".layers.1.mlp." in n for n in names)
    edited = load_model(result.metrics["constrained"]["edit"])
    changed = {n for n, p in edited.hf_params.items() if not torch.equal(p, original[n])}
    assert changed and changed <= names  # frozen parameters are bit-identical
    assert set(result.table("summary").run) == {"before", "constrained", "unconstrained", "npo", "rank_one"}
    npo = load_model(result.metrics["npo"]["edit"])
    assert {n for n, p in npo.hf_params.items() if not torch.equal(p, original[n])} <= names
    unconstrained = load_model(result.metrics["unconstrained"]["edit"])
    assert any(".layers.0." in n for n, p in unconstrained.hf_params.items() if not torch.equal(p, original[n]))


def test_edit_round_trips(tmp_path):
    model = load_model("tiny-llama")
    name = trainable_names(model, [0])[0]
    tokens = model.to_tokens("round trip")
    base_hash = model.weights_hash
    with torch.no_grad():
        before = model(tokens)
        model.hf_params[name].add_(0.1)
        edited_logits = model(tokens)
    path = save_edit(model, tmp_path / "edit", [name], base_hash)
    loaded = load_model(str(path))
    with torch.no_grad():
        assert torch.equal(loaded(tokens), edited_logits) and not torch.equal(before, edited_logits)
    assert loaded.weights_hash != load_model("tiny-llama").weights_hash


def test_bad_input(sets, tmp_path):
    model, forget, retain = sets
    with pytest.raises(InterpError, match="share 3 prompt"):
        interp.run("unlearning", model, forget=forget, retain=forget, layers=[0])
    with pytest.raises(InterpError, match="out of range"):
        interp.run("unlearning", model, forget=forget, retain=retain, layers=[7])
    unknown = write(tmp_path / "unknown.jsonl", [Item("Zzz is", "\x00", "Zzz", "r")])
    with pytest.raises(InterpError, match="nothing to forget"):
        interp.run("unlearning", model, forget=unknown, retain=retain, layers=[0])


def test_semeval_format(tmp_path):
    from interp.analyses.facts.unlearning import load_items

    path = tmp_path / "task.jsonl"
    path.write_text('{"id": "1", "input": "Who wrote X?", "output": " Bob", "task": "t", "split": "forget"}\n'
                    '{"id": "2", "input": "Who wrote Y?", "output": " Ann", "task": "t", "split": "retain"}\n')
    assert [i.prompt for i in load_items(str(path), "forget")] == ["Who wrote X?"]
    assert [i.answer for i in load_items(str(path), "retain")] == [" Ann"]


def planted(tmp_path, forget_n: int = 1):
    """A tiny model's own top predictions as facts: ``forget_n`` to forget, the rest unrelated ones to keep."""
    model = load_model("tiny-llama")
    items = known_items(model)
    return model, write(tmp_path / "f.jsonl", items[:forget_n]), write(tmp_path / "r.jsonl", items[forget_n:])


def test_npo_forgets_the_planted_fact_and_keeps_the_unrelated_ones(tmp_path):
    model, forget, retain = planted(tmp_path)
    r = interp.run("unlearning", model, forget=forget, retain=retain, layers=[0, 1], methods=("npo",),
                   baseline=False, steps=40, npo_lr=3e-3, target_forget_acc=0.0, corpus_tokens=256, seq_len=32)
    m = r.metrics["npo"]
    assert m["forget_acc"] == 0.0 and m["retain_kept"] >= 0.8
    log = r.table("log")
    assert set(log.run) == {"npo"} and log.forget_ce.iloc[-1] > log.forget_ce.iloc[0]


def test_rank_one_edit_changes_only_w_out_of_the_chosen_layer_by_exactly_rank_one(tmp_path):
    from interp.analyses.facts.rank_one import out_param_name

    model, forget, retain = planted(tmp_path)
    original = {n: p.detach().clone() for n, p in model.hf_params.items()}
    r = interp.run("unlearning", model, forget=forget, retain=retain, layers=[1], methods=("rank_one",),
                   baseline=False, steps=60, rank_lr=0.1, target_forget_acc=0.0, corpus_tokens=256, seq_len=32)
    m = r.metrics["rank_one"]
    assert m["forget_acc"] == 0.0 and m["retain_kept"] >= 0.8
    assert all(torch.equal(p, original[n]) for n, p in model.hf_params.items())  # restored
    edited = load_model(m["edit"])
    changed = {n for n, p in edited.hf_params.items() if not torch.equal(p, original[n])}
    target = out_param_name(model, 1)
    assert changed == {target}
    diff = (edited.hf_params[target] - original[target]).double()
    s = torch.linalg.svdvals(diff)
    assert s[0] > 0 and s[1] / s[0] < 1e-5  # exactly rank one, up to float32 rounding of the baked weight


def test_rank_one_direction_is_unit_on_its_key_and_small_on_other_keys():
    from interp.analyses.facts.rank_one import directions

    gen = torch.Generator().manual_seed(0)
    acts = torch.randn(500, 16, generator=gen)
    moment = (acts.T @ acts / len(acts))[None]
    keys = acts[:3][None]
    u = directions(keys, moment, reg=0.01)
    assert torch.allclose((u * keys).sum(-1), torch.ones(1, 3), atol=1e-5)
    others = acts[3:] @ u[0].T  # [497, 3]: other tokens' activations move the edit far less
    assert others.abs().mean() < 0.3


def test_protected_keys_get_no_part_of_the_edit():
    from interp.analyses.facts.rank_one import directions

    gen = torch.Generator().manual_seed(1)
    acts = torch.randn(400, 16, generator=gen)
    moment = (acts.T @ acts / len(acts))[None]
    keys, protect = acts[:2][None], acts[2:6][None]
    u = directions(keys, moment, reg=0.01, protect=protect)
    assert torch.allclose((u * keys).sum(-1), torch.ones(1, 2), atol=1e-5)
    assert (protect[0] @ u[0].T).abs().max() < 1e-5  # the retain keys see nothing of it
