"""Ray backend: one model per actor, on the CPUs or GPUs of a local or a real cluster.

``Pool`` joins the cluster named by ``RAY_ADDRESS`` (a multi-node cluster started with
``ray start --head`` / ``ray start --address``), or the one this process already joined with
``ray.init(...)``, or else starts a local one. The worker count is capped (``worker_cap``, the
one place that caps) by what the cluster has (``ray.cluster_resources()``), or by this machine's
cores (or its GPUs the driver leaves free) for a local cluster; a cap is a visible warning, never silent.

Placement (``placement``):

- **CPU**: each actor runs the driver's number of torch threads and reserves that many CPUs
  (``num_cpus=threads``), so a node runs only as many actors as it has cores for, and the CPU kernels sum in the
  driver's order: a sharded Result equals the one-process one bit for bit. For more actors per node, give the
  driver fewer threads (``OMP_NUM_THREADS``); every actor copies it.
- **GPU**: each actor reserves one GPU (``--device cuda``), or its share of the free GPUs for a model that spans
  several (``--device auto``: ``num_gpus`` = free GPUs // workers, loaded with ``device_map="auto"`` over the
  GPUs Ray gives it). A local cluster is started on the GPUs the driver's own model does not hold (Ray is shown
  only those, through ``CUDA_VISIBLE_DEVICES``), so no actor shares the driver's GPU; on a connected cluster
  Ray cannot see the driver's GPU, and a driver that holds a model on a GPU is warned about it.

The actors are torn down in ``finally``, whatever happens. ``Pool.map`` keeps one item in flight per
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


def _spans(device: str) -> bool:
    return str(device) in ("auto", "balanced", "balanced_low_0", "sequential")


def driver_gpus(model) -> set[int]:
    """The GPUs the driver's own model holds (one, or several for ``--device auto``)."""
    return {p.device.index or 0 for p in model.bridge.parameters() if p.device.type == "cuda"} if model else set()


def free_gpus(n_gpus: int, held: set[int]) -> list[int]:
    return [g for g in range(n_gpus) if g not in held]


def placement(device: str, workers: int, threads: int, free: int) -> dict:
    """One actor's Ray resources and what it loads: ``num_cpus``, ``num_gpus``, ``device``, ``threads``.
    ``free``: the GPUs the actors may share (unused on CPU)."""
    if not _uses_gpu(device):
        return {"num_cpus": threads, "num_gpus": 0, "device": device, "threads": threads}
    if _spans(device):
        return {"num_cpus": 0, "num_gpus": max(1, free // max(workers, 1)), "device": "auto", "threads": threads}
    return {"num_cpus": 0, "num_gpus": 1, "device": "cuda", "threads": threads}  # Ray shows it one GPU: "cuda"


def worker_cap(workers: int, device: str = "cpu", threads: int | None = None, held: set[int] = frozenset()) -> int:
    """``workers``, capped by the connected cluster's CPUs (GPUs on CUDA), or by this machine's
    when no cluster is connected; a CPU actor needs ``threads`` CPUs (default: the driver's torch threads), and a
    local GPU cluster has only the GPUs the driver's model does not hold (``held``). A cap is warned about (the CLI
    shows it as a ``warning:`` line)."""
    gpu, ray = _uses_gpu(device), _ray()
    threads = threads or torch.get_num_threads()
    if not ray.is_initialized() and os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    if ray.is_initialized():
        total = int(ray.cluster_resources().get("GPU" if gpu else "CPU", 0))
        where = f"the Ray cluster's {total} {'GPUs' if gpu else 'CPUs'}"
    else:
        total = len(free_gpus(torch.cuda.device_count(), held)) if gpu else (os.cpu_count() or 1)
        where = (f"the {total} GPUs here that the driver's model leaves free" if gpu
                 else f"the {total} cores here")
    per = placement(device, workers, threads, total)
    need = per["num_gpus"] if gpu else per["num_cpus"]
    have = total // need
    if not gpu and need > 1:
        where += f" at {need} threads an actor (the driver's; set OMP_NUM_THREADS for more, smaller actors)"
    if have < 1:
        raise InterpError(f"--workers {workers} on {device}: {where.replace('the ', '', 1)} cannot run any; "
                          "connect to a cluster with more (RAY_ADDRESS), free the driver's GPU, or use --device cpu")
    if workers > have:
        warnings.warn(f"--workers {workers} is more than {where}; using {have}", stacklevel=2)
        return have
    return workers


def _physical(indices: list[int]) -> list[str]:
    """The driver's GPU indices as physical ids (the driver may itself see a subset)."""
    shown = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in shown.split(",")] if shown else None
    return [ids[i] if ids and i < len(ids) else str(i) for i in indices]


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


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
    """``workers`` actors, each holding ``model``'s spec loaded on the same device and dtype (see ``placement``)."""

    def __init__(self, model, workers: int):
        device = str(model.device)
        gpu, ray = _uses_gpu(device), _ray()
        threads, held = torch.get_num_threads(), driver_gpus(model)
        connected = ray.is_initialized() or bool(os.environ.get("RAY_ADDRESS"))
        self.workers = worker_cap(workers, device, threads, set() if connected else held)
        free = free_gpus(torch.cuda.device_count(), held) if gpu else []
        per = placement(device, self.workers, threads, int(ray.cluster_resources().get("GPU", 0)) if connected
                        else len(free))
        if not ray.is_initialized():  # no cluster named: a local one sized for the workers
            shown = os.environ.get("CUDA_VISIBLE_DEVICES")
            if gpu:  # Ray (and so every actor) sees only the GPUs the driver leaves free
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, _physical(free)))
            try:
                ray.init(num_cpus=self.workers * per["num_cpus"], num_gpus=self.workers * per["num_gpus"],
                         include_dashboard=False, log_to_driver=False)
            finally:
                if gpu:
                    _restore("CUDA_VISIBLE_DEVICES", shown)
        elif held:
            warnings.warn(f"the driver's model holds GPU(s) {sorted(held)} of this node, which the Ray cluster does "
                          "not know: an actor placed on this node may share one; run the driver where it holds no "
                          "GPU model, or on --device cpu", stacklevel=2)
        actor = ray.remote(num_cpus=per["num_cpus"], num_gpus=per["num_gpus"])(_Worker)
        env = {k: v for k, v in os.environ.items() if k.startswith(("INTERP_", "HF_"))}
        dtype = str(model.dtype).removeprefix("torch.")
        self.actors = [actor.remote(model.spec, per["device"], dtype, env, per["threads"])
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
