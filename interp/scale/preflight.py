"""Preflight: how big and how long a job is, before it starts.

An analysis that can run long (the atlas, patching, decoding) registers an estimator
(``interp.analyses.base.estimator``) that returns an ``Estimate``: the forward and
backward passes it will run, its peak memory, and its time, from a short calibration on
the current device (the job's own unit of work, timed once: a batch, a patched forward,
a layer of decoding). ``run`` checks every job's memory estimate and refuses one that
exceeds what the device has; for a long job (``CALIBRATE_FROM`` units or more, so the
calibration costs at most a few percent) it also times a unit and prints the estimate
above the progress bar, and the time taken after it. ``interp <command> --dry-run``
prints the calibrated estimate and stops.

Memory is what the process holds already (on CUDA the allocated memory, the weights among
it; on the CPU the resident set, libraries included) plus the job's largest live tensors, computed
from their shapes (activations of one forward pass, recorded sites, reducer state,
outputs). On CUDA the calibration also measures the real peak (``max_memory_allocated``)
and the larger of the two is used. What the device has: CUDA's free memory plus what this
process holds already (``mem_get_info``, ``memory_reserved``); on the CPU, ``MemAvailable``
plus this process's resident memory. ``$INTERP_MEMORY_LIMIT`` (``24GB``, ``512MB``, bytes)
caps it, to plan for a smaller device or to test the refusal.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from interp.errors import InterpError

GiB = 1024**3
CALIBRATE_FROM = 40


def size(n: float | int | None) -> str:
    """``1.5 GB``-style, for bytes."""
    if n is None:
        return "unknown"
    for unit, scale in (("GB", GiB), ("MB", 1024**2), ("KB", 1024)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def duration(s: float | int | None) -> str:
    if s is None:
        return "not calibrated"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


@dataclass
class Estimate:
    """What a job will cost. ``memory`` parts are bytes; ``seconds`` is None without a calibration."""

    analysis: str
    device: str
    forwards: int
    backwards: int = 0
    work: str = ""  # the units the time is counted in, e.g. "16 batches of 8 x 128 tokens"
    memory: dict[str, float] = field(default_factory=dict)
    measured_peak: float | None = None  # CUDA: max_memory_allocated during the calibration
    seconds: float | None = None
    calibration: str = ""
    available: float | None = None
    units: int = 1  # how many times the calibrated unit of work repeats
    calibrate_from: int = CALIBRATE_FROM  # units from which a run times one and prints the estimate
    remedy: str = "fewer --layers, or --dtype bfloat16"  # what lowers the memory, for the refusal
    notes: list[str] = field(default_factory=list)

    @property
    def peak(self) -> float:
        return max(sum(self.memory.values()), self.measured_peak or 0.0)

    @property
    def fits(self) -> bool:
        return self.available is None or self.peak <= self.available

    def parts(self) -> str:
        return ", ".join(f"{k} {size(v)}" for k, v in self.memory.items() if v)

    def lines(self) -> list[str]:
        parts = self.parts()
        measured = f"; measured peak {size(self.measured_peak)}" if self.measured_peak else ""
        passes = (f"{self.forwards:,} forward" + (f" and {self.backwards:,} backward" if self.backwards else "")
                  + " passes") if self.forwards else "no forward passes"
        out = [f"preflight {self.analysis} on {self.device}: {passes}"
               + (f" ({self.work})" if self.work else ""),
               f"  time   ~{duration(self.seconds)}" + (f" ({self.calibration})" if self.calibration else ""),
               f"  memory ~{size(self.peak)} peak ({parts}{measured}); the device has {size(self.available)}"]
        return out + [f"  {n}" for n in self.notes]

    def to_dict(self) -> dict:
        return asdict(self) | {"peak": self.peak, "fits": self.fits}


def parse_size(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([KMGT]?i?B?)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise InterpError(f"INTERP_MEMORY_LIMIT={text!r} is not a size: write e.g. 24GB, 512MB or a byte count")
    unit = (m.group(2) or "").upper().rstrip("B").rstrip("I")
    return float(m.group(1)) * 1024 ** " KMGT".index(unit or " ")


def _rss() -> int:
    """This process's resident set, in bytes (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def available_memory(device: torch.device | str) -> float | None:
    """Bytes this process can use on ``device`` (what it holds already included), or None if unknown."""
    limit = os.environ.get("INTERP_MEMORY_LIMIT")
    if limit:
        return parse_size(limit)
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(free + torch.cuda.memory_reserved(device))
    if device.type == "cpu":
        try:
            meminfo = Path("/proc/meminfo").read_text()
            avail = int(re.search(r"MemAvailable:\s+(\d+) kB", meminfo).group(1)) * 1024
            return float(avail + _rss())
        except (OSError, AttributeError, ValueError):
            return None
    return None


def weights_bytes(model) -> float:
    return float(sum(p.numel() * p.element_size() for p in model.bridge.parameters()))


def held(model) -> dict[str, float]:
    """What the process holds on the model's device before the job: on CUDA the allocated memory
    (the weights and whatever else is alive), on the CPU the resident set (the weights, the
    libraries, Python), elsewhere the weights."""
    device = model.device
    if device.type == "cuda":
        return {"held now": float(torch.cuda.memory_allocated(device))}
    if device.type == "cpu":
        try:
            return {"held now": float(max(_rss(), weights_bytes(model)))}
        except (OSError, ValueError):
            pass
    return {"weights": weights_bytes(model)}


def forward_bytes(model, rows: int, seq: int, grad: bool = False) -> float:
    """The live activations of one forward pass of ``rows x seq`` tokens (shapes, model dtype).

    Without gradients: the residual stream and one layer's MLP and attention at a time, plus
    the logits (float32). With them, every layer's activations stay for the backward pass."""
    b = torch.empty((), dtype=model.dtype, device="meta").element_size()
    tokens = rows * seq
    per_layer = tokens * (6 * model.d_model + 3 * model.d_mlp) * b + rows * model.n_heads * seq * seq * b * 2
    logits = tokens * model.d_vocab * 4
    return float(logits + per_layer * (model.n_layers if grad else 1) * (2 if grad else 1))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(model, fn: Callable[[], object], warmup: bool = True) -> tuple[float, float | None]:
    """Seconds of one ``fn()`` on the model's device, and its measured peak bytes on CUDA.

    The first call of a shape pays for allocation and kernel selection (about 1.5x a later
    one for SmolLM2 on the CPU), so it runs once untimed first."""
    device = model.device
    if warmup:
        fn()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    seconds = time.perf_counter() - t
    peak = float(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    return seconds, peak


def check(estimate: Estimate) -> None:
    """Refuse a job that does not fit, with the figures and what to change."""
    if estimate.fits:
        return
    raise InterpError(
        f"{estimate.analysis} needs about {size(estimate.peak)} on {estimate.device} "
        f"({estimate.parts()}) but the device has "
        f"{size(estimate.available)}: use {estimate.remedy}; `--dry-run` prints the estimate without running")
