"""The patching engine's preflight: forward and backward passes, peak memory and (calibrated) time of a
patching run, from its pairs' shapes and one timed unit of its work (``interp.scale.preflight``)."""

from __future__ import annotations

import torch

from interp.analyses.base import estimator
from interp.analyses.patching.engine import (
    PatchingConfig,
    activation_item,
    activation_items,
    baseline,
    gradient_scores,
    load_pairs_for,
    prepare,
)
from interp.scale import preflight


def _site_width(model, component: str) -> int:
    return {"neurons": model.d_mlp, "heads": model.n_heads * model.cfg.d_head}.get(component, model.d_model)


@estimator("patching")
def estimate(model, config: PatchingConfig, calibrate: bool) -> preflight.Estimate:
    """Passes and memory from the pairs' shapes; time from one patched forward pass (activation
    patching) or one forward and backward pass (attribution, RelP) on the real pairs."""
    config.check(model)
    pairs = load_pairs_for(model, config)
    batch = prepare(model, pairs)
    layers = list(config.layers) or list(range(model.n_layers))
    B, T = batch.clean.shape
    nbytes = torch.empty((), dtype=model.dtype, device="meta").element_size()
    recorded = sum(B * T * _site_width(model, c) * nbytes for c in config.components) * len(layers)
    memory = {**preflight.held(model), "recorded sites": recorded}
    common = dict(available=preflight.available_memory(model.device), device=str(model.device))
    if config.method == "activation":
        items = activation_items(model, config, batch, layers)
        rows = sum(item[3] for item in items.values())
        memory["forward"] = preflight.forward_bytes(model, min(config.batch_rows, rows), T)
        est = preflight.Estimate("patching", forwards=2 + len(items), units=len(items), memory=memory,
                                 work=f"{rows:,} patched rows of {T} tokens in {len(items):,} forward passes of "
                                      f"up to {config.batch_rows} rows ({B} pairs)",
                                 remedy="a smaller --batch-rows, fewer --layers or --components, or --dtype bfloat16",
                                 **common)
        if calibrate and items:  # one pass per component: their rows per pass differ
            runs = []  # the timed baseline's own result (after its warm-up) feeds the patched passes
            est.seconds, _ = preflight.time_once(model, lambda: runs.append(baseline(model, config, batch, layers)))
            b, timed, firsts = runs[-1], [], {}
            for item in items.values():
                firsts.setdefault(item[0], item)
            for n, (component, first) in enumerate(firsts.items()):
                seconds, peak = preflight.time_once(
                    model, lambda first=first: activation_item(model, first, config, batch, b.source_acts,
                                                               b.clean_last), warmup=n == 0)
                est.measured_peak = max(est.measured_peak or 0.0, peak or 0.0) or None
                est.seconds += seconds * sum(i[3] for i in items.values() if i[0] == component) / first[3]
                timed.append(f"{component} {seconds:.2f} s for {first[3]} rows")
            est.calibration = "one forward pass per component timed: " + ", ".join(timed)
        if config.workers > 1:
            est.notes.append(f"with --workers {config.workers} the patched passes divide over up to "
                             f"{config.workers} actors (plus their start-up)")
        return est
    memory["forward and backward"] = preflight.forward_bytes(model, B, T, grad=True) + recorded
    est = preflight.Estimate("patching", forwards=3, backwards=1, units=1, memory=memory,
                             work=f"{B} pairs of {T} tokens, {config.method} in one backward pass",
                             remedy="fewer pairs (--n), fewer --layers or --components, or --dtype bfloat16",
                             **common)
    if calibrate:
        def once():
            b = baseline(model, config, batch, layers)
            gradient_scores(model, config, batch, layers, b.metric, b.source_acts)

        est.seconds, est.measured_peak = preflight.time_once(model, once)
        est.calibration = "the whole job, timed once"
    return est
