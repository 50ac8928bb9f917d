"""Tracing: hooks, interventions (one batched writer), model modes (LRP rules, masks),
and the streamed runner with its reducers."""

from interp.tracing.hooks import record, track_grad
from interp.tracing.interventions import Write, ablate, clamp, intervene, patch, scale

__all__ = ["Write", "ablate", "clamp", "intervene", "patch", "record", "scale", "track_grad"]
