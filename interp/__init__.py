"""interp: a workbench for the MLP neurons of transformer language models.

    import interp
    model = interp.load_model("smollm2-135m")
    result = interp.run("top_neurons", model, prompt="The capital of France is")
    result.top("neurons", by="dla", k=5)
    card = interp.neuron_card(model, "29.808")   # what every stored analysis says about one neuron
"""

from interp.analyses import cached_run, get_analysis, run
from interp.analyses.neurons.card import neuron_card
from interp.errors import InterpError
from interp.models import Model, load_model
from interp.names import NeuronId, hook_name
from interp.result import Config, Result
from interp.storage import list_runs, load_result, save_result, sql
from interp.tracing import Write, ablate, clamp, intervene, patch, record  # (tracing.scale: not to shadow interp.scale)

__version__ = "0.1.0"
__all__ = [
    "Config", "InterpError", "Model", "NeuronId", "Result", "Write", "ablate", "cached_run", "clamp",
    "get_analysis", "hook_name", "intervene", "list_runs", "load_model", "load_result",
    "neuron_card", "patch", "record", "run",
    "save_result", "sql",
]
