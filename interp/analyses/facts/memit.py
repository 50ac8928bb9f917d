"""A MEMIT-style unlearning edit (Meng et al., 2023): one target per fact, spread over several layers'
``W_out`` in closed form, with the second moment of ordinary text (and, in one variant, the used retain facts)
protecting the rest.

For each forget fact ``i`` (its subject's last token ``s_i``, the last edited layer ``L``):

1. **Target.** A vector ``delta_i`` added to the residual stream after block ``L`` at ``s_i`` is optimised so
   that the answer falls one logit below its best rival at the last prompt token, and no further (a hinge,
   ``relu(z_answer - z_rival + 1)``: forgetting asks for "not the answer", and a target past that only makes a
   larger edit), plus MEMIT's weight decay ``0.5 |delta|^2 / |h|^2``; 20 Adam steps at lr 0.5 (MEMIT's GPT-J
   settings). The target residual is ``z_i = h_L(s_i) + delta_i``.
2. **Spread.** For each edited layer ``l``, lowest first: the residual still missing at ``L``,
   ``r_i = (z_i - h_L(s_i)) / (layers left)``, read from the model as edited so far; the keys ``K`` (neuron
   activations at ``s_i``, the input of ``W_out``); and ``W_out += R^T K (lambda C + K^T K)^-1``, with ``C``
   the layer's activation second moment on corpus text (ridge ``rank_reg`` x its mean diagonal, as the
   rank-one edit). ``lambda`` is ``memit_lambda x d_mlp``: MEMIT's GPT-J weight (15,000 for 16,384 neurons)
   per neuron, since a typical key's whitened square norm ``k^T C^-1 k`` is ``d_mlp``; such a key gets half of
   its residual from one layer.
3. **Rounds.** The closed form reaches only part of its target, so steps 1-2 repeat on the edited model, at
   most ``memit_rounds`` times, until forget accuracy reaches ``target_forget_acc``.

Variant ``memit`` sees no retain fact: MEMIT protects the rest of the model through ``C`` alone, and this is
the test of whether text statistics suffice. Variant ``memit_protect`` adds the used retain facts' subject keys to
the least squares with a zero target (weight ``memit_keep`` each), as MEMIT's batch edits keep earlier edits.
Where the MLP output passes an RMS norm before the residual (Gemma's post-feedforward norm), each layer's share is
mapped back through that norm (``through_post_norm``): the norm fixes the output's size, so a linear reading of the
wish would ask ``W_out`` for an unbounded change; the rounds absorb what the norm leaves out.
"""

from __future__ import annotations

import torch
from torch import Tensor

from interp.analyses.facts import rank_one as r1
from interp.analyses.facts.forget_sets import Item, encode_items, evaluate, first_answer
from interp.datasets.prompts import subject_positions
from interp.errors import InterpError
from interp.names import hook_name
from interp.progress import bar
from interp.tracing import Write, intervene, record
from interp.tracing.rank_update import rank_updates

TARGET_STEPS, TARGET_LR, TARGET_WD = 20, 0.5, 0.5  # MEMIT's v_num_grad_steps, v_lr, v_weight_decay (GPT-J)
MARGIN = 1.0  # logits: the target puts the answer this far below its rival, and no further


def _residual(model, tokens: Tensor, layer: int, positions: Tensor) -> Tensor:
    """The residual stream after block ``layer`` at one position per row."""
    site = hook_name("resid_post", layer)
    with torch.no_grad(), record(model, [site]) as acts:
        model(tokens)
    return acts[site][torch.arange(len(positions), device=positions.device), positions].float()


def targets(model, forget: list[Item], layer: int, subj: Tensor) -> tuple[Tensor, float]:
    """The residual after block ``layer`` at each subject's last token that makes the model miss its answer
    (step 1), and the final margin loss."""
    tokens, labels, first = encode_items(model, forget)
    h = _residual(model, tokens, layer, subj)
    delta = torch.zeros_like(h, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=TARGET_LR)
    site = hook_name("resid_post", layer)
    rows = torch.arange(len(forget), device=subj.device)
    loss = torch.zeros((), device=h.device)
    with torch.enable_grad():
        for _ in range(TARGET_STEPS):
            with intervene(model, [Write(site, rows=rows, positions=subj, add=delta)]):
                z, answer = first_answer(model(tokens), labels, first)
            rival = z.scatter(-1, answer[:, None], float("-inf")).max(-1).values
            margin = torch.relu(z[rows, answer] - rival + MARGIN).mean()
            loss = margin + TARGET_WD * ((delta ** 2).sum(-1) / (h ** 2).sum(-1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return (h + delta).detach(), float(margin.detach())


def through_post_norm(model, tokens: Tensor, layer: int, subj: Tensor, wish: Tensor) -> Tensor:
    """The change of the MLP's raw output that moves its post-normed output by ``wish`` (identity where the
    output joins the residual as it is). An RMS post-norm ``y = w * m / rms(m)`` fixes the output's size, so the
    raw output is set to the direction of ``y + wish`` at its present size, ``(y + wish) / w * rms(m)``: an
    edit of the raw output's size, not the unbounded one a linear reading would ask for. Channels of (near) zero
    gain are left alone."""
    norm = model.weights.mlp_post_norm[layer]
    if norm is None or norm.kind != "rms":
        return wish
    site = hook_name("mlp_raw_out", layer)
    with torch.no_grad(), record(model, [site]) as acts:
        model(tokens)
    raw = acts[site][torch.arange(len(subj), device=subj.device), subj].float()
    scale, gain = norm.scale(raw), norm.weight.float()
    live = gain.abs() > 1e-3 * gain.abs().mean()  # a channel of gain 0 (Gemma has some) writes 0 whatever its input
    return torch.where(live, (gain * raw * scale + wish) / torch.where(live, gain, 1.0) / scale - raw, 0.0)


def spread(model, forget: list[Item], layers: list[int], target: Tensor, subj: Tensor, moments: Tensor,
           config, keep: list[Item] | None = None) -> None:
    """Write each layer's share of the missing residual into its ``W_out`` (step 2), in place; ``keep``'s
    subject keys enter the least squares with a zero target (their residual should not move)."""
    tokens, _, _ = encode_items(model, forget)
    prompts = [it.prompt for it in forget]
    for j, layer in enumerate(layers):
        missing = (target - _residual(model, tokens, layers[-1], subj)) / (len(layers) - j)  # [fact, d_model]
        missing = through_post_norm(model, tokens, layer, subj, missing)
        keys = r1.acts_at(model, prompts, [layer], subj.tolist())[0]  # [fact, d_mlp]
        c = moments[j]
        eye = torch.eye(c.shape[0], dtype=c.dtype, device=c.device)
        weight = config.memit_lambda * c.shape[0] * (c + config.rank_reg * c.diagonal().mean() * eye)
        if keep:
            kept = r1.subject_keys(model, [it.prompt for it in keep], [it.subject for it in keep], [layer])[0]
            weight = weight + config.memit_keep * kept.T @ kept
        solved = torch.linalg.solve(weight + keys.T @ keys, keys.T)  # [d_mlp, fact]
        with rank_updates([r1.out_module(model, layer)], [solved.T], [missing]):
            pass  # W_out + missing^T solved^T, baked in on exit


def memit_edit(model, forget: list[Item], layers: list[int], windows: Tensor, config,
               keep: list[Item] | None = None) -> tuple[list[str], list[dict]]:
    """Edit ``W_out`` of ``layers`` until the forget facts are forgotten or the rounds run out; returns the HF
    names of the edited parameters and one log row per round. ``keep``: facts whose subject keys are held fixed."""
    if layers[-1] >= model.n_layers - 1:
        raise InterpError(f"memit writes at the subject's last token, and only a block after layer {layers[-1]} can "
                          f"carry that to the answer: give --layers below {model.n_layers - 1}, or leave memit out "
                          "of --methods")
    subj = torch.tensor([subject_positions(model, it.prompt, it.subject)[-1] for it in forget], device=model.device)
    moments = r1.second_moment(model, windows, layers)
    log = []
    with bar(range(config.memit_rounds), desc="unlearning (memit)", unit="round") as progress:
        for step in progress:
            target, margin = targets(model, forget, layers[-1], subj)
            spread(model, forget, layers, target, subj, moments, config, keep)
            acc = evaluate(model, forget)["acc"]
            log.append({"step": step, "forget_ce": margin, "retain_ce": float("nan"), "alpha": float("nan"),
                        "forget_acc": acc, "updated": True})
            progress.set_postfix(margin=f"{margin:.2f}", acc=acc)
            if acc <= config.target_forget_acc + 1e-6:
                break
    return [r1.out_param_name(model, l) for l in layers], log
