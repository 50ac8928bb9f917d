"""Models: loading a spec into a ``Model`` and its neuron weight views."""

from interp.models.loading import BUILTIN, EMBEDDED, load_model
from interp.models.model import Model, TokenBatch

__all__ = ["BUILTIN", "EMBEDDED", "Model", "TokenBatch", "load_model"]
