"""Ray backend: one model per actor, on the CPUs or GPUs of a local or a real cluster.

``Pool`` joins the cluster named by ``RAY_ADDRESS`` (a multi-node cluster started with
``ray start --head`` / ``ray start --address``), or the one this process already joined with
``ray.init(...)``, or else starts a local one. The worker count is capped (``worker_cap``, the
one place that caps) by what the cluster has (``ray.cluster_resources()``: its CPUs, or its
GPUs on CUDA), or by this machine's cores (or GPUs) for a local cluster; a cap is a visible
warning, never silent.

The pool then starts the actors: each loads the model spec itself (so a hub id or a path must
be reachable from every node), in the driver's device and dtype, requesting one GPU
(``num_gpus=1``) on CUDA and one CPU otherwise (running the driver's number of torch threads, so
the CPU kernels sum in the same order and a sharded Result equals the one-process one); the
actors are torn down in ``finally``, whatever happens. ``Pool.map`` keeps one item in flight per
actor and hands back each result as it arrives (``ray.wait``), so a driver can fold and checkpoint as it goes
(``interp.scale.sweep``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator

import torch

from interp.errors import InterpError
from interp.models import load_model


def _ray():
    try:
        import ray
    except ImportError:
        raise InterpError("--workers > 1 needs Ray: pip install 'interp[scale]' (or pip install ray)") from None
    return ray


def _uses_gpu(device: str) -> bool:
    return str(device).startswith("cuda") or str(device) in ("auto", "balanced", "balanced_low_0", "sequential")


def worker_cap(workers: int, device: str = "cpu") -> int:
    """``workers``, capped by the connected cluster's CPUs (GPUs on CUDA), or by this machine's
    when no cluster is connected; a cap is warned about (the CLI shows it as a ``warning:`` line)."""
    gpu, ray = _uses_gpu(device), _ray()
    if not ray.is_initialized() and os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    if ray.is_initialized():
        have = int(ray.cluster_resources().get("GPU" if gpu else "CPU", 0))
        where = f"the Ray cluster's {have} {'GPUs' if gpu else 'CPUs'}"
    else:
        have = torch.cuda.device_count() if gpu else (os.cpu_count() or 1)
        where = f"the {have} {'GPUs' if gpu else 'cores'} here"
    if have < 1:
        raise InterpError(f"--workers {workers} on {device}: {where.replace('the ', '', 1)} cannot run any; "
                          "connect to a cluster with GPUs (RAY_ADDRESS) or use --device cpu")
    if workers > have:
        warnings.warn(f"--workers {workers} is more than {where}; using {have}", stacklevel=2)
        return have
    return workers


class _Worker:
    """One model per actor."""

    def __init__(self, spec: str, device: str, dtype: str, env: dict[str, str], threads: int):
        os.environ.update(env)
        warnings.filterwarnings("ignore")  # the driver shows what matters, once
        if not _uses_gpu(device):
            torch.set_num_threads(threads)
        self.model = load_model(spec, device=device, dtype=dtype)

    def call(self, fn: Callable, item, *args):
        return fn(self.model, item, *args)


class Pool:
    """``workers`` actors, each holding ``model``'s spec loaded on the same device and dtype."""

    def __init__(self, model, workers: int):
        device = str(model.device)
        gpu, ray = _uses_gpu(device), _ray()
        self.workers = worker_cap(workers, device)
        if not ray.is_initialized():  # no cluster named: a local one sized for the workers
            ray.init(num_cpus=self.workers, num_gpus=self.workers if gpu else 0, include_dashboard=False,
                     log_to_driver=False)
        actor = ray.remote(num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0)(_Worker)
        env = {k: v for k, v in os.environ.items() if k.startswith(("INTERP_", "HF_"))}
        dtype = str(model.dtype).removeprefix("torch.")
        # each actor sees one GPU (Ray sets CUDA_VISIBLE_DEVICES), so it loads on "cuda"
        # CPU kernels sum in an order that depends on the thread count: actors use the driver's, so a
        # sharded Result equals the one-process one bit for bit
        threads = torch.get_num_threads()
        self.actors = [actor.remote(model.spec, "cuda" if gpu else device, dtype, env, threads)
                       for _ in range(self.workers)]

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        ray = _ray()
        for a in self.actors:
            ray.kill(a)

    def put(self, value):
        return _ray().put(value)

    def map(self, fn: Callable, items: dict[int, object], args: tuple = ()) -> Iterator[tuple[int, object]]:
        """Yield ``(key, fn(model, item, *args))`` for every item, as results arrive."""
        ray = _ray()
        todo = list(items.items())
        running: dict = {}
        free = list(self.actors)
        while todo or running:
            while todo and free:
                key, item = todo.pop(0)
                a = free.pop()
                running[a.call.remote(fn, item, *args)] = (key, a)
            ready, _ = ray.wait(list(running), num_returns=1)
            key, a = running.pop(ready[0])
            free.append(a)
            yield key, ray.get(ready[0])
