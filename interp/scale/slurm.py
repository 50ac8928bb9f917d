"""SLURM array jobs through submitit: the launcher for academic clusters, which run SLURM rather than Ray.

``ArrayPool`` is ``ray_backend.Pool``'s twin: ``--launcher submitit`` turns a sweep's items into one array job of
``workers`` tasks (round-robin shares of the items, so each task loads the model once), submitted with
``submitit.AutoExecutor``: ``sbatch`` where SLURM is installed, local processes otherwise (how the tests run it).
Each task loads the model spec itself (a hub id or a path must be reachable from the compute nodes), on the
driver's device and dtype, with the driver's torch threads (so CPU kernels sum in the same order), and returns
its items' outputs; the driver folds each task's outputs in key order as the task finishes and checkpoints
through the sweep's own ``save``, exactly as with Ray: a resumed or sharded run gives the one-process Result.

SLURM settings come from the environment: ``INTERP_SLURM_PARTITION``, ``INTERP_SLURM_TIMEOUT_MIN`` (default
1440), ``INTERP_SLURM_MEM_GB``; a GPU run asks one GPU a task (``--device auto``: ``INTERP_SLURM_GPUS``). Job
files and logs go to ``$INTERP_RUNS/.submitit/<time>`` and are removed when every task succeeded; a failed
task's error names its log. submitit passes functions and results between processes with pickle: only between
this driver and the jobs it submitted, never for weights.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator

import torch

from interp.errors import InterpError
from interp.models import load_model
from interp.paths import runs_root


def _submitit():
    try:
        import submitit
    except ImportError:
        raise InterpError("--launcher submitit needs submitit: pip install 'interp[scale]' (or pip install "
                          "submitit)") from None
    return submitit


def _task(spec: str, device: str, dtype: str, env: dict[str, str], threads: int, fn: Callable,
          items: list[tuple[int, object]], args: tuple) -> dict[int, object]:
    """One array task: load the model once, run its share of the items."""
    os.environ.update(env)
    if not str(device).startswith("cuda") and device != "auto":
        torch.set_num_threads(threads)
    model = load_model(spec, device=device, dtype=dtype)
    return {key: fn(model, item, *args) for key, item in items}


class ArrayPool:
    """``workers`` array tasks over ``model``'s spec; ``map`` yields ``(key, output)`` as tasks finish."""

    def __init__(self, model, workers: int, folder=None):
        submitit = _submitit()
        self.model, self.workers = model, workers
        self.folder = folder or runs_root() / ".submitit" / time.strftime("%Y%m%d-%H%M%S")
        self.executor = submitit.AutoExecutor(folder=self.folder)
        device = str(model.device)
        gpu = device.startswith("cuda") or device == "auto"
        params = {"timeout_min": int(os.environ.get("INTERP_SLURM_TIMEOUT_MIN", 1440)),
                  "cpus_per_task": torch.get_num_threads(), "slurm_array_parallelism": workers}
        if gpu:
            params["gpus_per_node"] = int(os.environ.get("INTERP_SLURM_GPUS", 1))
        if os.environ.get("INTERP_SLURM_PARTITION"):
            params["slurm_partition"] = os.environ["INTERP_SLURM_PARTITION"]
        if os.environ.get("INTERP_SLURM_MEM_GB"):
            params["mem_gb"] = int(os.environ["INTERP_SLURM_MEM_GB"])
        self.executor.update_parameters(**params)
        self.jobs: list = []

    def __enter__(self) -> "ArrayPool":
        return self

    def __exit__(self, *exc) -> None:
        unfinished = [j for j in self.jobs if not j.done()]
        for job in unfinished:
            job.cancel(check=False)
        if exc[0] is None and not unfinished:
            shutil.rmtree(self.folder, ignore_errors=True)
            with contextlib.suppress(OSError):  # and .submitit/ itself once no other run's folder is in it
                self.folder.parent.rmdir()

    def put(self, value):
        return value  # pickled into each task's submission

    def map(self, fn: Callable, items: dict[int, object], args: tuple = ()) -> Iterator[tuple[int, object]]:
        """Yield ``(key, fn(model, item, *args))`` for every item, a task's items (in key order) when it finishes."""
        keys = sorted(items)
        shares = [[(k, items[k]) for k in keys[i::self.workers]] for i in range(self.workers)]
        shares = [s for s in shares if s]
        m = self.model
        env = {k: v for k, v in os.environ.items() if k.startswith(("INTERP_", "HF_"))}
        dtype = str(m.dtype).removeprefix("torch.")
        n = len(shares)
        self.jobs = self.executor.map_array(_task, [m.spec] * n, [str(m.device)] * n, [dtype] * n, [env] * n,
                                            [torch.get_num_threads()] * n, [fn] * n, shares, [args] * n)
        pending = list(self.jobs)
        while pending:
            finished = [j for j in pending if j.done()]
            for job in finished:
                pending.remove(job)
                try:
                    out = job.result()
                except Exception as exc:  # the task's own error, with where its log is
                    raise InterpError(f"array task {job.job_id} failed ({type(exc).__name__}); its log: "
                                      f"{job.paths.stderr}") from exc
                for key in sorted(out):
                    yield key, out[key]
            if pending and not finished:
                time.sleep(0.2)
