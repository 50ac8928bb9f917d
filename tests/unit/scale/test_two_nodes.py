"""A two-node Ray cluster on this machine, started the way a real one is (``ray start --head`` and
``ray start --address``, each node with its own CPU), used as a user uses it: ``RAY_ADDRESS=... interp ...
--workers 2`` from a fresh process. An atlas, an activation-patching sweep and a causal-tracing sweep run across
both nodes and equal one process, tables and tensors bit for bit."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import interp
from tests.unit.analyses.neurons.test_atlas import TEXT, _assert_same
from tests.unit.scale.test_sweep import PAIRS, _known, _same

ray = pytest.importorskip("ray")
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_nodes():
    """A head and a worker node, one CPU each, so two one-CPU actors must land on different nodes."""
    address = f"127.0.0.1:{_free_port()}"
    # Ray 2.60 starts a head with token authentication unless told not to; this test's cluster (on this machine
    # only) opts out rather than hand a token to every process
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    common = ["--num-cpus", "1", "--num-gpus", "0", "--disable-usage-stats"]
    try:
        subprocess.run([RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", address.split(":")[1],
                        "--include-dashboard", "false", *common], env=env, check=True, capture_output=True,
                       timeout=120)
        subprocess.run([RAY, "start", "--address", address, "--node-ip-address", "127.0.0.1", *common], env=env,
                       check=True, capture_output=True, timeout=120)
        yield address, env
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


def _cli(args: list[str], env: dict) -> interp.Result:
    done = subprocess.run([sys.executable, "-m", "interp.cli", *args, "--json"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return interp.load_result(json.loads(done.stdout)["path"])


def test_the_cluster_has_two_nodes_with_a_cpu_each(two_nodes):
    address, env = two_nodes
    code = ("import ray; ray.init(log_to_driver=False); "
            "print([n['Resources'].get('CPU') for n in ray.nodes() if n['Alive']])")
    done = subprocess.run([sys.executable, "-c", code], env={**env, "RAY_ADDRESS": address}, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "[1.0, 1.0]", done.stderr[-1000:]


def test_atlas_patching_and_tracing_across_two_nodes_equal_one_process(tiny_llama, two_nodes, tmp_path):
    address, env = two_nodes
    (tmp_path / "corpus.txt").write_text(TEXT)
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p.to_dict()) + "\n" for p in PAIRS))
    facts = _known(tiny_llama).drop(columns="answer_id")
    (tmp_path / "facts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in facts.to_dict("records")))
    # one torch thread a process: each actor reserves the cores of the driver's threads, one on each node
    one = {**env, "OMP_NUM_THREADS": "1", "INTERP_RUNS": str(tmp_path / "one")}
    two = {**one, "RAY_ADDRESS": address, "INTERP_RUNS": str(tmp_path / "two")}
    commands = {
        "atlas": ["atlas", "-m", "tiny-llama", "-c", str(tmp_path / "corpus.txt"), "-n", "1024", "--seq-len", "32",
                  "--batch-size", "3", "-k", "4", "--checkpoint-every", "0"],
        "patch": ["patch", "-m", "tiny-llama", "--method", "activation", "-d", str(tmp_path / "pairs.jsonl"),
                  "--n", "3", "--components", "resid,mlp_out,heads,neurons", "--batch-rows", "7"],
        "trace": ["trace", "-m", "tiny-llama", "-f", str(tmp_path / "facts.jsonl"), "--n", "3", "--samples", "2",
                  "--batch-rows", "16"]}
    for name, args in commands.items():
        local, sharded = _cli(args, one), _cli([*args, "--workers", "2"], two)
        (_assert_same if name == "atlas" else _same)(local, sharded)
