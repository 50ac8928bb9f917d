"""Reading stored bigram subnetworks: the masks and bigram counts a run stored, the subnetwork's
next-token preview, and the card's "Bigram subnetwork" section. Nothing outside ``subnetworks/``
opens a ``bigram_subnetworks`` Result's tensors."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from interp.analyses.sections import CardContext, Section, card_section
from interp.datasets.bigrams import BigramTable
from interp.errors import InterpError
from interp.render import metrics_html
from interp.result import Result
from interp.storage import load_result, newest_run, resolve_run
from interp.tracing.masks import masked


def unpack(stored: Tensor, shape) -> Tensor:
    """A mask stored by ``bigram_subnetworks.pack`` (kept indices, or 8 flags a byte) as a boolean tensor."""
    n = int(np.prod(shape))
    if stored.dtype == torch.uint8:
        return torch.from_numpy(np.unpackbits(stored.numpy(), count=n).astype(bool)).view(*shape)
    keep = torch.zeros(n, dtype=torch.bool, device="cpu")
    keep[stored.long()] = True
    return keep.view(*shape)


def stored_table(result: Result) -> BigramTable:
    """The corpus bigram counts the run learned its mask against."""
    t = result.tensors
    return BigramTable(len(t["bigram/unigram"]), t["bigram/row_ptr"], t["bigram/next"], t["bigram/counts"],
                       t["bigram/unigram"], t["bigram/context"])


def stored_mask(result: Result, model) -> dict[str, Tensor]:
    """The subnetwork's boolean masks, rebuilt from the stored indices of kept weights."""
    out = {}
    for key, idx in result.tensors.items():
        if key.startswith("kept/"):
            name = key.removeprefix("kept/")
            out[name] = unpack(idx, tuple(model.hf_params[name].shape))
    return out


def stored_subnetwork(model, ref: str = "") -> Result:
    """The bigram subnetwork ``ref`` (a run id or directory; default: the newest on the model's weights),
    checked to have been learned on these weights."""
    path = resolve_run(ref, "bigram_subnetworks") if ref else newest_run("bigram_subnetworks", model.weights_hash)
    if path is None:
        raise InterpError(f"no stored bigram subnetwork for {model.spec}: run `interp bigram --model {model.spec}` "
                          "first, or give --subnetwork")
    source = load_result(path)
    if source.provenance.get("weights_hash") != model.weights_hash:
        raise InterpError(f"run {source.run_id} was learned on other weights ({source.provenance.get('model')}); "
                          f"load that model, not {model.spec}")
    return source


@torch.no_grad()
def preview(model, private, result: Result, token_id: int) -> dict[str, Tensor]:
    """Next-token distributions after one token: the full ``model``, the stored subnetwork (its mask applied
    to ``private``, a model no one else uses) and the corpus bigram statistics."""
    tokens = torch.tensor([[token_id]], device="cpu")
    full = model(tokens)[0, -1].float().softmax(-1)
    with masked(private, result.config.params) as masks:
        masks.set_fixed(stored_mask(result, private))
        sub = private(tokens)[0, -1].float().softmax(-1)
    bigram = stored_table(result).dist(torch.tensor([token_id], device="cpu"))[0]
    return {"full model": full, "subnetwork": sub, "corpus bigram": bigram}


# --- the card section -------------------------------------------------------------------------------

@card_section("bigram", "Bigram subnetwork", order=80)
def bigram_section(ctx: CardContext) -> Section:
    """The kept share of the neuron's gate row, up row and down column in each stored subnetwork."""
    model, nid = ctx.model, ctx.neuron
    section = Section("bigram", "Bigram subnetwork", missing=f"`interp bigram{ctx.spec_flag}`")
    names = model.mlp_param_names(nid.layer)
    rows = []
    for path in ctx.store.paths("bigram_subnetworks"):
        r = ctx.store.load(path)
        entry = {"kept_fraction": float(r.metrics["kept_fraction"]), "steps": r.metrics.get("steps"), "path": path}
        for part, name in names.items():
            stored = r.tensors.get(f"kept/{name}")
            if stored is None:
                continue
            mask = unpack(stored, tuple(model.hf_params[name].shape))
            # a [d_mlp, d_model] Linear holds neuron n's gate/up weights in row n, a [d_model, d_mlp] one its
            # down weights in column n; GPT-2's Conv1D stores the transposes, so read along whichever axis is d_mlp
            by_row = mask.shape[0] == model.d_mlp and (part != "down" or mask.shape[1] != model.d_mlp)
            mine = mask[nid.index] if by_row else mask[:, nid.index]
            entry[part] = {"kept": float(mine.float().mean()), "layer_mean": float(mask.float().mean())}
        rows.append(entry)
        section.sources.append(path)
    if rows:
        section.data = {"runs": rows}
    return section


@bigram_section.html
def _bigram_html(section: Section, nid) -> str:
    out = []
    for r in section.data["runs"]:
        items = [(f"{p} kept", f"{r[p]['kept']:.1%}", f"layer {r[p]['layer_mean']:.1%}")
                 for p in ("gate", "up", "down") if p in r]
        out.append(metrics_html(items + [("whole subnetwork", f"{r['kept_fraction']:.1%}", f"{r['steps']} steps")]))
    return "".join(out)


@bigram_section.text
def _bigram_text(d: dict) -> str:
    r = d["runs"][0]
    return ", ".join(f"{p} kept {r[p]['kept']:.1%}" for p in ("gate", "up", "down") if p in r)
