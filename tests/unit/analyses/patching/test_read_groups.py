"""Comparable groups: a Verify forms its own group, and the most complete group comes first,
whatever was stored last (issue 31: one Verify click replaced the Patching page's headline comparison)."""

from __future__ import annotations

import json

import pandas as pd

from interp.analyses.patching.read import groups, run_key

BASE = {"dataset": "ioi", "seed": 0, "metric": "logit_diff", "direction": "denoise", "neuron_pos": "last",
        "layers": [], "neurons": []}


def _runs(configs: list[dict]) -> pd.DataFrame:
    return pd.DataFrame({"path": [f"run{i}" for i in range(len(configs))], "config": [json.dumps(c) for c in configs]})


def test_a_verify_run_never_becomes_the_default_comparison():
    full = [{**BASE, "n": 16, "method": m} for m in ("activation", "attribution", "relp")]
    eight = [{**BASE, "n": 8, "method": m} for m in ("activation", "relp")]
    verify = {**BASE, "n": 16, "method": "activation", "layers": [29], "neurons": [236, 1, 2]}
    stored = _runs([verify, *eight, *full])  # newest first: the Verify is the newest run of all
    found = groups(stored)
    first = json.loads(next(iter(found)))
    assert first["n"] == 16 and "subset" not in first
    assert len(found[next(iter(found))]) == 3  # the verify run is not in the headline group
    assert json.loads(run_key(verify))["subset"] == "verify"
    assert list(found)[-1] == run_key(verify)  # partial groups last


def test_a_pinned_run_puts_its_group_first():
    full = [{**BASE, "n": 16, "method": m} for m in ("activation", "attribution", "relp")]
    eight = [{**BASE, "n": 8, "method": m} for m in ("activation", "relp")]
    stored = _runs([*full, *eight]).assign(pinned=[False, False, False, False, True])
    assert json.loads(next(iter(groups(stored))))["n"] == 8
