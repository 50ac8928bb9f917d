"""The one cache helper: keyed and versioned entries, atomic writes, corrupt entries rebuilt."""

from __future__ import annotations

import pytest
import torch

from interp.storage.cache import Entry, load_tensors, save_tensors


def test_key_and_version_pick_the_entry(tmp_path):
    a = Entry(tmp_path, "kind", "x", key={"n": 1}, version=1)
    assert a.path == Entry(tmp_path, "kind", "x", key={"n": 1}, version=1).path
    assert a.path != Entry(tmp_path, "kind", "x", key={"n": 2}, version=1).path
    assert a.path != Entry(tmp_path, "kind", "x", key={"n": 1}, version=2).path


def test_write_is_atomic_and_read_rebuilds_a_corrupt_entry(tmp_path):
    entry = Entry(tmp_path, "kind", "x", key=1)
    assert entry.read(lambda p: (p / "v").read_text()) is None
    with entry.write() as tmp:
        (tmp / "v").write_text("one")
    with pytest.raises(RuntimeError), entry.write() as tmp:  # an interrupted rewrite keeps the old entry
        (tmp / "v").write_text("half")
        raise RuntimeError("killed")
    assert entry.read(lambda p: (p / "v").read_text()) == "one"
    assert sorted(p.name for p in entry.path.parent.iterdir()) == [entry.path.name]
    (entry.path / "v").unlink()
    with pytest.warns(UserWarning, match="unreadable"):
        assert entry.read(lambda p: (p / "v").read_text()) is None
    assert not entry.exists()


def test_optimizer_state_round_trips_through_safetensors(tmp_path):
    params = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5))]
    opt = torch.optim.AdamW(params, lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        sum((p ** 2).sum() for p in params).backward()
        opt.step()
    save_tensors(tmp_path / "opt.safetensors", opt.state_dict())
    fresh = torch.optim.AdamW([torch.nn.Parameter(p.detach().clone()) for p in params], lr=0.5)
    fresh.load_state_dict(load_tensors(tmp_path / "opt.safetensors"))
    want, got = opt.state_dict(), fresh.state_dict()
    assert got["param_groups"][0]["lr"] == 0.01
    for i in want["state"]:
        for k, v in want["state"][i].items():
            assert torch.equal(got["state"][i][k], v), k
