"""A checkpointed sweep: independent work items, in this process or over Ray actors.

Activation patching (chunks of patched rows of one component and layer) and causal
tracing (one fact each) are sweeps: every item is the same computation wherever it runs,
so a sweep over actors gives the Result of one process, item for item. ``sweep``:

- runs the items not yet ``done`` (``workers=1``: here; more: a ``Pool`` of Ray actors, one
  model each, or with ``launcher="submitit"`` a SLURM array job of ``workers`` tasks
  (``interp.scale.slurm``), results folded as they arrive, in any order);
- hands each result to ``fold(key, out)``;
- every ``every`` folded items calls ``save(done_keys)``, where the caller writes what it has
  accumulated and the done keys atomically, so a run killed at any point (even SIGKILL)
  resumes from the last save with the same Result (the atlas folds into one reducer and
  saves that; ``checkpointed_sweep`` keeps every item's output and saves those);
- shows one progress bar, weighted by ``weight(item)``; in this process, a ``run`` that takes
  a ``progress`` argument moves the bar itself within its item (finer than one step an item).
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from interp.progress import bar
from interp.storage.cache import Entry, load_tensors, save_tensors


def sweep(model, items: dict[int, object], run: Callable, fold: Callable[[int, object], None], args: tuple = (),
          workers: int = 1, done: frozenset | set = frozenset(), every: int = 0,
          save: Callable[[list[int]], None] | None = None, weight: Callable[[object], int] = lambda item: 1,
          desc: str = "sweep", unit: str = "item", launcher: str = "ray") -> None:
    """Run ``run(model, item, *args)`` for every item whose key is not in ``done``; see the module docstring."""
    todo = {k: v for k, v in items.items() if k not in done}
    finished = sorted(done)
    since = 0
    with bar(total=sum(weight(v) for v in items.values()), desc=desc, unit=unit,
             initial=sum(weight(items[k]) for k in done if k in items)) as progress:
        if workers > 1 and len(todo) > 1:
            if launcher == "submitit":
                from interp.scale.slurm import ArrayPool as Pool
            else:
                from interp.scale.ray_backend import Pool

            with Pool(model, min(workers, len(todo))) as pool:
                shared = tuple(pool.put(a) for a in args)  # sent once, not once per item
                results = pool.map(run, todo, shared)
                for key, out in results:
                    since = _folded(key, out, fold, finished, since, every, save)
                    progress.update(weight(todo[key]))
        else:
            reports = "progress" in inspect.signature(run).parameters
            for key, item in todo.items():
                share = _Share(progress)
                out = run(model, item, *args, progress=share) if reports else run(model, item, *args)
                since = _folded(key, out, fold, finished, since, every, save)
                progress.update(max(0, weight(item) - share.n))


class _Share:
    """The bar as one item sees it: what the item reports counts toward its weight."""

    def __init__(self, bar):
        self.bar, self.n = bar, 0

    def update(self, n: int = 1) -> None:
        self.n += n
        self.bar.update(n)


def _folded(key, out, fold, finished: list, since: int, every: int, save) -> int:
    fold(key, out)
    finished.append(key)
    since += 1
    if float(os.environ.get("INTERP_SWEEP_THROTTLE_S", "0")):  # tests slow the folds to kill a run mid-way
        time.sleep(float(os.environ["INTERP_SWEEP_THROTTLE_S"]))
    if every and save is not None and since >= every:
        save(sorted(finished))
        return 0
    return since


def checkpointed_sweep(model, items: dict[int, object], run: Callable, args: tuple, entry: Entry, what: str,
                       workers: int = 1, every: int = 0, launcher: str = "ray", **bar) -> dict[int, object]:
    """Every item's output, from ``entry``'s checkpoint where an earlier run got that far and from
    ``sweep`` for the rest; saved every ``every`` items and cleared once all are done (``every=0``:
    no checkpoints). ``bar`` goes to ``sweep`` (``weight``, ``desc``, ``unit``)."""
    outputs = (entry.read(_read_outputs) or {}) if every else {}
    outputs = {k: v for k, v in outputs.items() if k in items}
    if outputs:
        tqdm.write(f"resuming the {what} from a checkpoint: {len(outputs)} of {len(items)} items done",
                   file=sys.stderr)
    sweep(model, items, run, outputs.__setitem__, args, workers=workers, done=set(outputs), every=every,
          save=lambda done: _save_outputs(entry, outputs, done), launcher=launcher, **bar)
    if every:
        entry.clear()
    return outputs


def _read_outputs(path: Path) -> dict[int, object]:
    keys = json.loads((path / "progress.json").read_text())["done"]
    outs = load_tensors(path / "outputs.safetensors")
    return {int(k): outs[i] for i, k in enumerate(keys)}


def _save_outputs(entry: Entry, outputs: dict[int, object], done: list[int]) -> None:
    with entry.write() as tmp:  # outputs and progress replaced together
        save_tensors(tmp / "outputs.safetensors", [outputs[k] for k in done])
        (tmp / "progress.json").write_text(json.dumps({"done": done}))
