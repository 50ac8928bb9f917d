from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import interp
from interp.analyses.facts.forget_sets import Item, evaluate
from interp.analyses.facts.unlearn_methods import trainable_names
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
    result = interp.run("unlearning", model, forget=forget, retain=retain, layers=[0], steps=3, lr=1e-2,
                        target_forget_acc=0.0, corpus_tokens=256, seq_len=32)
    assert all(torch.equal(p, original[n]) for n, p in model.hf_params.items())  # the original is untouched
    names = set(trainable_names(model, [0]))
    assert names and all(".layers.0.mlp." in n for n in names)
    edited = load_model(result.metrics["constrained"]["edit"])
    changed = {n for n, p in edited.hf_params.items() if not torch.equal(p, original[n])}
    assert changed and changed <= names  # frozen parameters are bit-identical
    assert set(result.table("summary").run) == {"before", "constrained", "unconstrained", "npo", "rank_one",
                                                   "memit", "memit_protect", "rmu"}
    for variant in ("npo", "rmu"):
        trained = load_model(result.metrics[variant]["edit"])
        assert {n for n, p in trained.hf_params.items() if not torch.equal(p, original[n])} <= names
    unconstrained = load_model(result.metrics["unconstrained"]["edit"])
    assert any(".layers.1." in n for n, p in unconstrained.hf_params.items() if not torch.equal(p, original[n]))


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
    from interp.analyses.facts.forget_sets import load_items

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
    # the used retain prompts' keys are projected out of the edit, so they are kept by construction; on this random
    # model the unseen ones share directions with the forget fact and are not (the figure the split exists for)
    assert m["forget_acc"] == 0.0 and m["retain_kept_seen"] == 1.0
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


def test_the_stored_split_never_shares_a_fact_or_a_subject_between_used_and_unseen(tmp_path):
    model = load_model("tiny-llama")
    items = known_items(model)
    forget = write(tmp_path / "f.jsonl", items[:2])
    retain = tmp_path / "r.jsonl"  # each subject twice (two relations), so a subject-blind split would leak it
    retain.write_text("".join(json.dumps({"prompt": p, "subject": i.prompt.split()[0], "answer": i.answer,
                                          "relation": rel}) + "\n"
                              for i in items[2:] for p, rel in ((i.prompt, "r"), (i.prompt + " so", "s"))))
    r = interp.run("unlearning", model, forget=forget, retain=str(retain), layers=[0], methods=("npo",),
                   baseline=False, steps=2, corpus_tokens=256, seq_len=32)
    split = interp.load_result(r.path).table("split")
    used, unseen = split[split.part == "used"], split[split.part == "unseen"]
    assert len(used) and len(unseen) and len(used) + len(unseen) == 12
    assert not set(used.subject) & set(unseen.subject) and not set(used.prompt) & set(unseen.prompt)
    assert set(split[split.part == "forget"].prompt) == {i.prompt for i in items[:2]}
    assert r.metrics["n_retain"] == int(unseen.known.sum())  # the headline is over the unseen facts it knew


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.sampled_from(["r", "s", "t"])), min_size=1, max_size=30,
                unique=True), st.floats(0.05, 0.9), st.integers(0, 5))
def test_split_retain_is_by_subject_and_covers_each_relation(facts, share, seed):
    from interp.analyses.facts.forget_sets import split_retain

    items = [Item(f"{s} {r}", " x", s, r) for s, r in facts]
    used, unseen = split_retain(items, share, seed)
    assert sorted(used + unseen, key=str) == sorted(items, key=str)
    assert not {i.subject for i in used} & {i.subject for i in unseen}
    assert split_retain(items, share, seed) == (used, unseen)  # seeded
    firsts: dict[str, str] = {}
    for s, r in facts:
        firsts.setdefault(s, r)
    for rel in set(firsts.values()):
        filed = [s for s, r in firsts.items() if r == rel]
        if len(filed) > 1:  # a relation with two subjects has one on each side
            assert {i.subject for i in unseen} & set(filed) and {i.subject for i in used} & set(filed)


def test_a_method_that_memorises_its_retain_prompts_is_caught_by_the_unseen_figure(tmp_path, monkeypatch):
    """A planted method breaks the model's last MLP and writes a look-up table into it: each used retain
    prompt's last-token key -> its answer's unembedding. It keeps every fact it was given and few others."""
    from interp.analyses.facts import rank_one as r1
    from interp.analyses.facts import unlearning
    from interp.tracing.rank_update import rank_updates

    def memorise(model, variant, forget, used, layers, fit, config):
        last = model.n_layers - 1
        with torch.no_grad():
            r1.out_module(model, last).weight.zero_()
        keys = r1.acts_at(model, [it.prompt for it in used], [last])[0]  # [fact, d_mlp]
        dual = torch.linalg.solve(keys @ keys.T, keys)  # dual[i] . keys[j] = (i == j)
        w_u = model.weights.W_U_normed().detach()
        answers = [model.continuation(it.prompt, it.answer)[0] for it in used]
        write_ = torch.stack([1e3 * w_u[:, a] / w_u[:, a].norm() for a in answers])
        with rank_updates([r1.out_module(model, last)], [dual], [write_]):
            pass
        return [r1.out_param_name(model, last)], []

    monkeypatch.setattr(unlearning, "edit", memorise)
    model = load_model("tiny-llama")
    items = known_items(model)
    forget, retain = write(tmp_path / "f.jsonl", items[:1]), write(tmp_path / "r.jsonl", items[1:])
    m = interp.run("unlearning", model, forget=forget, retain=retain, layers=[0], methods=("npo",), baseline=False,
                   corpus_tokens=256, seq_len=32).metrics["npo"]
    assert m["retain_kept_seen"] == 1.0  # what the old report called "retain kept"
    assert m["retain_kept"] <= 0.5 and not m["goals_met"]["retain_kept"]


def test_memit_forgets_by_editing_only_w_out_and_its_protected_keys_see_none_of_it(tmp_path):
    from interp.analyses.facts import rank_one as r1
    from interp.analyses.facts.memit import memit_edit
    from interp.analyses.facts.unlearning import UnlearnConfig
    from interp.datasets.corpus import window_tensor

    model = load_model("tiny-llama")
    # the subject is the prompt's last word, so its last token is the last prompt token: on a random 2-layer model
    # a write at an earlier token barely reaches the answer
    items = [Item(i.prompt, i.answer, i.prompt.split()[-1], "r") for i in known_items(model)]
    forget, keep = items[:1], items[1:4]
    windows = window_tensor(model, "stdlib-docs", 32, 256)
    original = {n: p.detach().clone() for n, p in model.hf_params.items()}
    keys_before = r1.subject_keys(model, [i.prompt for i in items], [i.subject for i in items], [0])[0]
    names, log = memit_edit(model, forget, [0], windows, UnlearnConfig(memit_keep=1e6, memit_rounds=5), keep=keep)
    assert names == [r1.out_param_name(model, 0)] and log[-1]["forget_acc"] == 0.0
    changed = {n for n, p in model.hf_params.items() if not torch.equal(p, original[n])}
    assert changed == set(names)
    dw = (model.hf_params[names[0]] - original[names[0]]).double()
    writes = (dw @ keys_before.double().T).norm(dim=0)  # what the edit adds at each fact's subject key
    assert writes[1:4].max() < 1e-3 * writes[0]  # the kept facts' keys: nothing
    with pytest.raises(InterpError, match="only a block after layer 1"):
        memit_edit(model, forget, [1], windows, UnlearnConfig())


def test_memit_maps_its_wish_back_through_an_rms_post_norm():
    """Gemma's MLP output passes an RMS norm: the raw change ``through_post_norm`` returns turns the post-normed
    output into ``y + wish`` rescaled to the norm's fixed size, and nothing changes without a post-norm."""
    from interp.analyses.facts.memit import through_post_norm
    from interp.names import hook_name
    from interp.tracing import record

    model = load_model("tiny-gemma3")
    tokens = model.to_tokens("The capital of Abc is")
    subj = torch.tensor([3])
    layer = 0
    norm = model.weights.mlp_post_norm[layer]
    with torch.no_grad(), record(model, [hook_name("mlp_raw_out", layer), hook_name("mlp_out", layer)]) as acts:
        model(tokens)
    raw = acts[hook_name("mlp_raw_out", layer)][0, 3].float()
    y = acts[hook_name("mlp_out", layer)][0, 3].float()
    gain = norm.weight.float()
    assert torch.allclose(gain * raw * norm.scale(raw), y, atol=1e-4)  # the norm as the model computes it
    wish = 0.3 * y.norm() * torch.randn(y.shape, generator=torch.Generator().manual_seed(0)) / y.shape[0] ** 0.5
    new = raw + through_post_norm(model, tokens, layer, subj, wish[None])[0]
    out = gain * new * norm.scale(new)
    assert torch.cosine_similarity(out, y + wish, dim=0) > 0.9999  # the wished direction
    size = lambda v: (v / gain).pow(2).mean().sqrt()  # noqa: E731
    assert abs(size(out) - size(y)) < 1e-3 * size(y)  # at the size the norm allows
    plain = load_model("tiny-llama")
    assert torch.equal(through_post_norm(plain, plain.to_tokens("x y"), 0, torch.tensor([1]), wish[None]), wish[None])
