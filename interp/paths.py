"""Where interp keeps things (a leaf: every layer may import it).

- ``INTERP_HOME`` (default ``~/.cache/interp``): model caches, sampled corpora, neuron stats;
- ``INTERP_RUNS`` (default ``./runs``): stored Results, checkpoints and edited models.
"""

from __future__ import annotations

import os
from pathlib import Path


def interp_home() -> Path:
    """``$INTERP_HOME`` (default ``~/.cache/interp``): model caches and sampled corpora."""
    return Path(os.environ.get("INTERP_HOME", Path.home() / ".cache" / "interp")).expanduser()


def runs_root() -> Path:
    """``$INTERP_RUNS`` (default ``./runs``): the store of Results."""
    return Path(os.environ.get("INTERP_RUNS", "runs")).expanduser()
