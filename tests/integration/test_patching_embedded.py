"""Patching on the embedded model: IOI pairs it solves, and RelP on them."""

from __future__ import annotations

import interp
from interp.analyses.patching.read import compare
from interp.datasets.ioi import ioi_pairs


def test_ioi_pairs_are_aligned_and_solved(smol):
    pairs = ioi_pairs(smol, n=8, seed=1)
    assert len({p.clean for p in pairs}) == 8
    for p in pairs:
        assert len(smol.encode(p.clean)) == len(smol.encode(p.corrupt))
        smol.token_id(p.answer), smol.token_id(p.wrong)  # single tokens, or this raises
    result = interp.run("patching", smol, dataset="ioi", n=4, method="relp", components=["mlp_out"], save=False)
    pairs_df = result.table("pairs")
    assert (pairs_df.metric_source > 0).mean() >= 0.75  # clean: the model prefers IO over S
    assert pairs_df.metric_source.mean() > pairs_df.metric_base.mean()  # the ABC corruption removes the signal


def test_relp_and_activation_share_a_layout(smol):
    kw = dict(dataset="ioi", n=2, components=["mlp_out", "heads"], layers=[28, 29], save=False)
    act = interp.run("patching", smol, method="activation", **kw)
    relp = interp.run("patching", smol, method="relp", **kw)
    table = compare(act, relp)
    assert set(table.component) == {"mlp_out", "heads"} and (table.n > 0).all()
