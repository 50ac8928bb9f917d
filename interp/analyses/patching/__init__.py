"""Patching: the engine (activation, attribution, RelP), faithfulness, causal tracing."""
