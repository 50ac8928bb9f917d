"""Reading stored factual-recall, factual-fix and unlearning Results, the one-fact decomposition the
dashboard asks for, and the card's "Factual recall" and "Unlearning edits" sections. Nothing outside
``facts/`` opens these Results' tables."""

from __future__ import annotations

import pandas as pd

from interp.analyses.facts.factual_recall import FactualConfig
from interp.analyses.facts.factual_recall import run as decompose
from interp.analyses.sections import CardContext, Section, card_section
from interp.datasets.prompts import Fact
from interp.render import esc, table_html
from interp.result import Result


def decompose_fact(model, prompt: str, subject: str, answer: str) -> Result:
    """The factual-recall decomposition of one fact (not stored)."""
    config = FactualConfig(only_correct=False, top_heads=5, batch_size=1)
    return decompose(model, config, facts=[Fact(prompt, subject, answer, "custom")])


def _fact(known: pd.DataFrame, dla, i: int) -> dict:
    return {"prompt": str(known.prompt.iloc[i]), "answer": str(known.answer.iloc[i]), "dla": float(dla[i])}


@card_section("factual", "Factual recall", order=50)
def factual_section(ctx: CardContext) -> Section:
    """The neuron's mean DLA on each stored decomposition of its layer (one per facts set, newest), its rank,
    the facts it pushes and suppresses most; the factual fix's effect where its layer was fixed."""
    store, nid = ctx.store, ctx.neuron
    section = Section("factual", "Factual recall", missing=f"`interp factual{ctx.spec_flag} --layer {nid.layer}`")
    sets, other_layers, seen = [], [], set()
    for path in store.paths("factual_recall"):  # newest first: one entry per facts set
        r = store.load(path)
        if r.config.facts in seen:
            continue
        if int(r.metrics["mlp_layer"]) != nid.layer:
            other_layers.append(int(r.metrics["mlp_layer"]))
            continue
        dla = r.tensors["neuron_dla"].float()  # [fact, d_mlp]
        facts = r.table("facts")
        known = facts[facts.correct] if r.config.only_correct else facts
        mean = dla.mean(0)
        entry = {"facts": r.config.facts, "n_facts": int(dla.shape[0]), "mean_dla": float(mean[nid.index]),
                 "rank": int((mean > mean[nid.index]).sum()) + 1, "of": int(dla.shape[1]), "path": path}
        if len(known) == dla.shape[0]:
            col = dla[:, nid.index]
            order = col.argsort(descending=True).tolist()
            entry["pushes"] = [_fact(known, col, i) for i in order[:3]]
            entry["suppresses"] = [_fact(known, col, i) for i in order[::-1][:3]]
        sets.append(entry)
        seen.add(r.config.facts)
        section.sources.append(path)
    fixes = []
    for path in store.paths("factual_fix"):
        r = store.load(path)
        if int(r.metrics.get("layer", -1)) != nid.layer or "train_effects" not in r.tables:
            continue
        eff = r.table("train_effects").set_index("neuron").mean_effect
        fixes.append({"mean_effect": float(eff.get(nid.index, float("nan"))),
                      "rank": int((eff.abs() > abs(eff.get(nid.index, 0.0))).sum()) + 1,
                      "chosen": str(nid) in r.metrics.get("neurons", []), "path": path})
        section.sources.append(path)
    if sets or fixes:
        section.data = {"sets": sets, "fixes": fixes}
    elif other_layers:
        section.missing = (f"the stored decompositions are of layer {sorted(set(other_layers))}; "
                           f"`interp factual{ctx.spec_flag} --layer {nid.layer}` decomposes this one")
    return section


@factual_section.html
def _factual_html(section: Section, nid) -> str:
    out = []
    for e in section.data["sets"]:
        out.append(f"<p><code>{esc(e['facts'])}</code>: mean DLA <b>{e['mean_dla']:+.4f}</b>, rank "
                   f"{e['rank']} of {e['of']} in layer {nid.layer} over {e['n_facts']} facts</p>")
        if "pushes" in e:
            out.append('<div style="display:flex;gap:24px;flex-wrap:wrap"><div><b>Pushes most</b>'
                       + table_html(e["pushes"], ["prompt", "answer", "dla"]) + "</div><div><b>Suppresses most"
                       "</b>" + table_html(e["suppresses"], ["prompt", "answer", "dla"]) + "</div></div>")
    out += [f"<p>Factual fix: mean effect on the answer {f['mean_effect']:+.4f} (rank {f['rank']}); "
            f"{'one of' if f['chosen'] else 'not among'} the neurons the fix scales.</p>"
            for f in section.data["fixes"]]
    return "".join(out)


@factual_section.text
def _factual_text(d: dict) -> str:
    return "; ".join(f"mean DLA {e['mean_dla']:+.4f} (rank {e['rank']}/{e['of']})" for e in d["sets"]) or \
        f"factual fix effect {d['fixes'][0]['mean_effect']:+.4f}"


@card_section("unlearning", "Unlearning edits", order=70)
def unlearning_section(ctx: CardContext) -> Section:
    """Per stored edit: the change of the neuron's gate row, up row and down column, and of its activation on
    the forget and the retain facts."""
    nid = ctx.neuron
    section = Section("unlearning", "Unlearning edits", missing=f"`interp unlearn{ctx.spec_flag}`")
    rows, old = [], []
    for path in ctx.store.paths("unlearning"):
        r = ctx.store.load(path)
        if "neuron_changes" not in r.tables:
            old.append(path)
            continue
        ch = r.table("neuron_changes")
        mine = ch[(ch.layer == nid.layer) & (ch.neuron == nid.index)]
        for row in mine.to_dict("records"):
            kept = r.metrics.get(row["variant"], {}).get("retain_kept")
            rows.append({**row, "kept": kept, "layers": r.metrics.get("layers"), "forget": r.config.forget,
                         "retain": r.config.retain, "run": r.run_id, "path": path})
        section.sources.append(path)
    if rows:
        section.data = {"edits": rows}
    elif section.sources:
        section.missing = (f"the stored edits record no change in layer {nid.layer}; "
                           f"`interp unlearn{ctx.spec_flag}` records every layer")
    elif old:
        section.missing = ("the stored unlearning runs predate per-neuron changes: run "
                           f"`interp unlearn{ctx.spec_flag}` again")
    return section


@unlearning_section.html
def _unlearning_html(section: Section, nid) -> str:
    edits = section.data["edits"]
    show = ["forget", "retain"] + [c for c in edits[0] if c in ("variant", "kept") or c.startswith(("d_", "act_"))]
    return ("<p class='note'>One row per stored edit, labelled by its split (the forget and retain sets) and "
            "variant. d_*: relative change |ΔW|/|W| of its gate row, up row and down column; act_*: its "
            "mean activation at the last token of the forget and the retain prompts (those no method saw), "
            "before and after; kept: the share of those retain facts the edit keeps.</p>"
            + table_html(edits, show))


@unlearning_section.text
def _unlearning_text(d: dict) -> str:
    return "; ".join(f"{e['variant']} (forget {e['forget']}): " + ", ".join(f"{c} {e[c]:.2%}" for c in e
                                                                            if c.startswith("d_"))
                     for e in d["edits"])
