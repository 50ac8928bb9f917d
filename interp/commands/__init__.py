"""CLI commands, one module per family; each registers on ``interp.commands.common.app``.

Importing this package registers every command (``interp.cli`` does, and adds ``main``)."""

from interp.commands import bigrams, card, core, facts, neurons, patching, tracing  # noqa: F401  (registers them)
from interp.commands.common import app

__all__ = ["app"]
