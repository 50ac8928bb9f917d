"""Progress bars that a background job can watch and cancel (a leaf).

Every slow loop in interp iterates under ``bar(...)``, a ``tqdm`` bar on stderr. When the
loop runs inside a job (``interp.jobs``), the bar also reports its fraction and text
to that job, and raises ``Cancelled`` at the next update once the job is cancelled, so
a long analysis stops between two batches and never leaves a half-written Result.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tqdm.auto import tqdm


class Cancelled(Exception):
    """Raised inside a job's analysis when the job is cancelled."""


@dataclass
class Watcher:
    """What a job hands to the bars of the analysis it runs."""

    report: Callable[[float, str], None]
    cancelled: Callable[[], bool] = field(default=lambda: False)


_THROTTLE_S = float(os.environ.get("INTERP_JOB_THROTTLE_S", "0"))
_WATCHER: contextvars.ContextVar[Watcher | None] = contextvars.ContextVar("interp_progress", default=None)


def watch(watcher: Watcher | None) -> contextvars.Token:
    """Route the bars of this thread (context) to ``watcher``."""
    return _WATCHER.set(watcher)


def check_cancelled() -> None:
    """Raise ``Cancelled`` if the job running this code was cancelled."""
    w = _WATCHER.get()
    if w is not None and w.cancelled():
        raise Cancelled("cancelled")


class bar(tqdm):  # noqa: N801  (used like tqdm)
    """``tqdm`` that also reports to the current job and honours its cancel button."""

    def _tell(self, n: int | float) -> None:
        w = _WATCHER.get()
        if w is not None:
            if w.cancelled():
                raise Cancelled(f"cancelled during {self.desc}")
            total = self.total or 0
            w.report(min(1.0, n / total) if total else 0.0, f"{self.desc}: {n:,.0f}/{total:,.0f} {self.unit}")
            if _THROTTLE_S:  # tests slow a job down to watch it run and cancel it
                time.sleep(_THROTTLE_S)

    def update(self, n=1):
        out = super().update(n)
        self._tell(self.n)
        return out

    def __iter__(self):
        for i, item in enumerate(super().__iter__()):
            self._tell(self.initial + i)
            yield item
