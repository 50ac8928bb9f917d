"""The spine: a technique registers its analysis and its card section from its own module, and the card (text,
HTML, JSON), the facade and the registry pick them up without any edit to the card or the facade."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

import interp
from interp.analyses import base
from interp.analyses.base import register
from interp.analyses.neurons.card import neuron_card, section_keys
from interp.analyses.sections import CardContext, Section, card_section, unregister_section
from interp.errors import InterpError
from interp.result import CONFIGS, Config, Result, option, provenance
from interp.viz.card import card_html
from interp.workbench import Workbench
from tests.unit.cli.helpers import run_cli


@dataclass(frozen=True)
class ToyConfig(Config):
    scale: float = option(2.0, "how much of the neuron's index to store")


@pytest.fixture
def toy_technique():
    """A toy technique, defined here and nowhere in interp/: an analysis that stores one number per neuron of
    layer 0, and a card section that reads it back."""

    @register("toy_scores", ToyConfig)
    def run(model, config: ToyConfig) -> Result:
        import pandas as pd

        table = pd.DataFrame({"neuron": range(model.d_mlp), "score": [config.scale * n for n in range(model.d_mlp)]})
        return Result(analysis="toy_scores", config=config, provenance=provenance(model, config),
                      tables={"scores": table}, metrics={"n": model.d_mlp})

    @card_section("toy", "Toy technique", order=85)
    def toy(ctx: CardContext) -> Section:
        section = Section("toy", "Toy technique", missing="`interp run toy_scores`")
        stored = ctx.store.newest("toy_scores")
        if stored is not None and ctx.neuron.layer == 0:
            scores = stored.table("scores").set_index("neuron").score
            section.data, section.sources = {"score": float(scores[ctx.neuron.index])}, [str(stored.path)]
        return section

    toy.html(lambda section, nid: f"<p class='toy'>toy score <b>{section.data['score']:g}</b></p>")
    toy.text(lambda d: f"toy score {d['score']:g}")
    toy.export(lambda d: {"toyScore": d["score"]})
    yield
    unregister_section("toy")
    base.REGISTRY.pop("toy_scores", None)
    CONFIGS.pop("toy_scores", None)


def test_a_new_technique_shows_on_the_card_without_editing_it(toy_technique, tiny_llama, capsys, monkeypatch):
    assert "toy" in section_keys() and section_keys().index("toy") == section_keys().index("bigram") + 1
    card = neuron_card(tiny_llama, "0.3")
    assert not card["toy"].available and card.text("toy") == "not computed yet: `interp run toy_scores`"
    interp.run("toy_scores", tiny_llama, scale=2.5)
    card = neuron_card(tiny_llama, "0.3")
    assert card["toy"].data == {"score": 7.5} and card.text("toy") == "toy score 7.5"
    page = card_html(card)
    assert "<h2 id='toy'>Toy technique</h2>" in page and "toy score <b>7.5</b>" in page
    data = json.loads(card.to_json())
    assert data["toyScore"] == 7.5 and data["sections"]["toy"]["data"] == {"score": 7.5}
    code, stdout, _ = run_cli(capsys, monkeypatch, "card", "0.3", "-m", "tiny-llama")
    assert code == 0 and "Toy technique: toy score 7.5" in stdout
    code, stdout, _ = run_cli(capsys, monkeypatch, "card", "0.3", "-m", "tiny-llama", "--json")
    assert code == 0 and json.loads(stdout)["toyScore"] == 7.5


def test_a_name_registers_once(toy_technique):
    with pytest.raises(InterpError, match="registered twice"):
        register("toy_scores", ToyConfig)(lambda model, config: None)
    with pytest.raises(InterpError, match="registered twice"):
        card_section("toy", "Again", order=1)(lambda ctx: None)



def test_an_unknown_section_is_named(tiny_llama):
    with pytest.raises(InterpError, match="unknown card section 'no-such-section'"):
        neuron_card(tiny_llama, "0.0", sections=["no-such-section"])


def test_the_registry_says_what_changes_weights_and_the_facade_obeys(tiny_llama):
    flagged = {name for name, a in base.discover().items() if a.mutates_weights}
    assert flagged == {"unlearning", "bigram_subnetworks", "bigram_surprisal"}
    wb = Workbench("tiny-llama", dtype=str(tiny_llama.dtype).removeprefix("torch."), model=tiny_llama)
    seen = {}

    @register("toy_mutating", ToyConfig, mutates_weights=True)
    def mutating(model, config):
        seen["model"] = model
        raise InterpError("stop here")

    try:
        job = wb.submit("toy_mutating")
        job.wait()
        assert seen["model"] is not tiny_llama and seen["model"].weights_hash == tiny_llama.weights_hash
    finally:
        base.REGISTRY.pop("toy_mutating", None)
        CONFIGS.pop("toy_mutating", None)
