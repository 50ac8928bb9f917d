"""A background job runner: long analyses off the caller's thread, with progress and cancel.

``JobRunner.submit(fn, *args)`` runs ``fn`` in a worker thread and returns a ``Job``
at once. Inside the job every ``interp.progress.bar`` reports its fraction and text to
``job.progress`` / ``job.message``, and ``job.cancel()`` makes the next bar update
raise ``Cancelled``: the analysis stops between two batches, before its Result is
written, so nothing half-written is left behind. The dashboard starts activation
patching, tracing, unlearning and bigram training this way and polls the job; no
page's script thread ever runs one.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from interp.errors import InterpError
from interp.progress import Cancelled, Watcher, watch

_ids = itertools.count(1)


@dataclass
class Job:
    label: str
    key: str | None = None  # what it builds (an analysis name), to find a running job from another tab
    id: int = field(default_factory=lambda: next(_ids))
    status: str = "queued"  # queued, running, done, failed, cancelled
    progress: float = 0.0
    message: str = ""
    result: Any = None
    error: str = ""
    started: float = field(default_factory=time.time)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled")

    def wait(self, timeout: int | float | None = None) -> Job:
        self._done.wait(timeout)
        return self


class JobRunner:
    """Runs jobs ``workers`` at a time (one by default: they share one model), in daemon threads: a job never
    keeps a stopped server (or a finished notebook) alive, and what it leaves is never half-written (Results
    are saved atomically; checkpoints are written the same way)."""

    def __init__(self, workers: int = 1):
        self._queue: queue.Queue = queue.Queue()
        self.jobs: dict[int, Job] = {}
        for i in range(workers):
            threading.Thread(target=self._loop, name=f"interp-job-{i}", daemon=True).start()

    def submit(self, label: str, fn: Callable, *args, key: str | None = None, **kwargs) -> Job:
        """Queue ``fn(*args, **kwargs)``; ``key`` (e.g. the analysis) lets ``running(key)`` find it."""
        job = Job(label, key=key)
        self.jobs[job.id] = job
        self._queue.put((job, fn, args, kwargs))
        return job

    def get(self, job_id: int) -> Job | None:
        return self.jobs.get(job_id)

    def running(self, key: str) -> Job | None:
        """The unfinished job submitted under ``key`` (queued or running), if any."""
        return next((j for j in self.jobs.values() if j.key == key and not j.finished), None)

    def _loop(self) -> None:
        while True:
            self._run(*self._queue.get())

    def _run(self, job: Job, fn: Callable, args, kwargs) -> None:
        if job._cancel.is_set():
            job.status = "cancelled"
            job._done.set()
            return
        job.status = "running"

        def report(fraction: float, message: str) -> None:
            job.progress, job.message = fraction, message

        watch(Watcher(report, job._cancel.is_set))
        try:
            job.result = fn(*args, **kwargs)
            job.status, job.progress = "done", 1.0
        except Cancelled:
            job.status = "cancelled"
        except InterpError as exc:
            job.status, job.error = "failed", str(exc)
        except Exception as exc:  # a bug: keep its type, so it can be reported
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            watch(None)
            job._done.set()
