"""LRP mode: relevance propagation rules as forward hooks on one bridge instance.

Inside ``lrp_mode(model)`` the forward pass computes exactly the same values (every
rule returns ``y.detach() + (r - r.detach())``, whose value is ``y`` bit for bit), but
the backward pass follows the rules of RelP (Jafari et al., 2025) and AttnLRP, so
gradient x input is the LRP relevance:

- **LN rule** (``ln``): every norm (``ln1``, ``ln2``, the post-norms ``ln1_post``/``ln2_post``
  where the block has them, ``ln_final``) acts as if its
  input-dependent scale were a constant, ``r = w * (x - mean x) / scale.detach() + b``
  (RMSNorm: no centring);
- **identity rule** (``identity``): the MLP nonlinearity acts as the linear map
  ``x * (act(x) / x).detach()``;
- **half rule** (``half``): the GLU product ``act(gate) * up`` passes half of its
  relevance to each factor, ``p/2 + (p/2).detach()``;
- **AH rule** (``ah``, off by default as in RelP's IOI setting): the attention pattern
  is treated as a constant (``pattern.detach()``), so relevance flows through values only.

With every rule on, a bias-free model is locally linear in its residual stream, and
the relevance summed at each layer equals the target logit (the conservation test).
Without the AH rule, relevance that flows into the softmax is not conserved.

The hooks are attached to this model's hook points only: no class is patched, so two
models in one process never affect each other.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.names import hook_name
from interp.tracing.hooks import hooks


@dataclass(frozen=True)
class Rules:
    ln: bool = True
    identity: bool = True
    half: bool = True
    ah: bool = False

    @classmethod
    def parse(cls, text: str | None) -> "Rules":
        """``"ln,identity,half"`` (the default), ``"all"`` (adds ``ah``) or ``"none"``."""
        from interp.errors import InterpError

        if text in (None, "", "default"):
            return cls()
        if text == "all":
            return cls(ah=True)
        names = {t.strip() for t in text.split(",") if t.strip()} - {"none"}
        unknown = names - {"ln", "identity", "half", "ah"}
        if unknown:
            raise InterpError(f"unknown LRP rule(s) {sorted(unknown)}: choose from ln, identity, half, ah "
                              "(or 'all', 'none', 'default')")
        return cls(**{k: k in names for k in ("ln", "identity", "half", "ah")})


def _same_value(y: Tensor, r: Tensor) -> Tensor:
    """``y``'s value with ``r``'s gradient."""
    return y.detach() + (r - r.detach())


def _slope(x: Tensor, y: Tensor, at_zero: float) -> Tensor:
    """``y / x`` (detached), with ``at_zero`` where ``x`` is 0."""
    x, y = x.detach(), y.detach()
    small = x.abs() < 1e-12
    return torch.where(small, torch.full_like(x, at_zero), y / torch.where(small, torch.ones_like(x), x))


def _norm_hooks(module, hook_in: str, hook_out: str):
    """Hooks at the norm's ``hook_in``/``hook_out`` that rebuild it with its scale detached."""
    orig = module.original_component
    rms = bool(getattr(module, "uses_rms_norm", "rms" in type(orig).__name__.lower()))
    eps = getattr(orig, "variance_epsilon", None) or getattr(orig, "eps", 1e-5)
    weight = getattr(orig, "weight", None)
    if weight is not None and getattr(module, "uses_weight_offset", False):
        weight = 1.0 + weight
    bias = getattr(orig, "bias", None)
    seen: dict[str, Tensor] = {}

    def keep(x: Tensor) -> None:
        seen["x"] = x

    def rebuild(y: Tensor) -> Tensor:
        x = seen.pop("x")
        xc = x if rms else x - x.mean(-1, keepdim=True)
        scale = (xc.detach().pow(2).mean(-1, keepdim=True) + eps).sqrt()
        r = xc / scale
        if weight is not None:
            r = r * weight
        if bias is not None and not rms:
            r = r + bias
        return _same_value(y, r.to(y.dtype))

    return [(hook_in, keep), (hook_out, rebuild)]


def mlp_taps(model, layer: int) -> tuple[dict[str, Tensor], list, float]:
    """Hooks that keep layer ``layer``'s MLP inputs for a hook at ``hook_post`` to rebuild it: ``seen`` gets the
    pre-activation (``"pre"``) and, for GLU models, the up projection (``"up"``); also the activation's slope
    at 0 (for ``_slope``)."""
    at_zero = float(model.weights.act_fn(torch.tensor([1e-6], dtype=torch.float64, device="cpu"))[0] / 1e-6)
    seen: dict[str, Tensor] = {}

    def keep(key: str):
        def fn(x: Tensor) -> None:
            seen[key] = x

        return fn

    points = [(hook_name("mlp_pre", layer), keep("pre"))]
    if model.is_glu:
        points.append((hook_name("mlp_pre_linear", layer), keep("up")))
    return seen, points, at_zero


def _mlp_hooks(model, layer: int, rules: Rules):
    """Identity rule on the nonlinearity and half rule on the GLU product, rebuilt at ``hook_post``."""
    act_fn = model.weights.act_fn
    seen, points, at_zero = mlp_taps(model, layer)

    def rebuild(post: Tensor) -> Tensor:
        pre = seen.pop("pre")
        if rules.identity:
            act = pre * _slope(pre, act_fn(pre.detach()), at_zero)
        else:
            act = act_fn(pre)
        if not model.is_glu:
            return _same_value(post, act)
        product = act * seen.pop("up")
        if rules.half:
            product = 0.5 * product + 0.5 * product.detach()
        return _same_value(post, product)

    return [*points, (hook_name("mlp_post", layer), rebuild)]


def rule_hooks(model, rules: Rules) -> list:
    """The (hook name, function) pairs that implement ``rules`` on ``model``."""
    fwd = []
    blocks = model.bridge.blocks
    for layer in range(model.n_layers):
        if rules.ln:  # every norm the block has: pre-norms, and the post-norms of Gemma 2/3 and OLMo 2
            for norm in ("ln1", "ln2", "ln1_post", "ln2_post"):
                if norm in blocks[layer]._modules:
                    fwd += _norm_hooks(blocks[layer]._modules[norm], hook_name(f"{norm}_in", layer),
                                       hook_name(f"{norm}_out", layer))
        if rules.identity or (rules.half and model.is_glu):
            fwd += _mlp_hooks(model, layer, rules)
        if rules.ah:
            fwd.append((hook_name("attn_pattern", layer), lambda p: p.detach()))
    if rules.ln:
        fwd += _norm_hooks(model.bridge.ln_final, hook_name("final_in"), hook_name("final_out"))
    return fwd


@contextmanager
def lrp_mode(model, rules: Rules | None = None):
    """Put ``model`` into LRP mode for the body: same forward values, LRP gradients."""
    with hooks(model, rule_hooks(model, rules or Rules())):
        yield
