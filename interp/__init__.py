"""interp: a workbench for the MLP neurons of transformer language models.

    import interp
    model = interp.load_model("smollm2-135m")
    result = interp.run("top_neurons", model, prompt="The capital of France is")
    result.top("neurons", by="dla", k=5)
"""

from interp.analyses.base import Config, Result, run
from interp.errors import InterpError
from interp.models import Model, load_model
from interp.storage import list_runs, load_result, sql
from interp.tracing.hooks import ablate, clamp, hooks, patch, record
from interp.tracing.names import NeuronId, hook_name

__version__ = "0.1.0"
__all__ = [
    "Config", "InterpError", "Model", "NeuronId", "Result", "ablate", "clamp", "hook_name", "hooks",
    "list_runs", "load_model", "load_result", "patch", "record", "run", "sql",
]
