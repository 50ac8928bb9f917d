"""The trained unlearning methods, one loop: SHA256's loss, NPO, the rank-one edit's vectors and RMU.

Each step runs the forget facts and a batch of the *used* retain facts (cycled); the unseen ones never reach
this module. The methods differ only in their loss:

- **sha256** (``loss="sha256"``): ``-CE(forget) + alpha CE(retain)`` over answer tokens, with the paper's
  adaptive ``alpha = clip(round(0.3 * 6**dL + 0.8, 1), 1.2, 2.3)``, ``dL`` the retain loss minus its
  first-epoch mean; ``loss="bounded"``: the forget CE capped at ``cap`` plus ``kl`` x KL(original || edited) on
  two corpus windows a step.
- **npo** (Zhang et al., 2024): ``(2/beta) softplus(beta (log p(y|x) - log p_ref(y|x)))`` over the forget
  answers plus ``npo_retain`` x the retain CE.
- **rank_one**: ``softplus(z_answer - z_rival)`` on the forget facts plus the retain CE and ``rank_wd |delta|^2``,
  learning only the rank-one vectors (``interp.analyses.facts.rank_one``).
- **rmu** (Li et al., 2024, WMDP's RMU): the residual stream after the last trained layer is pushed towards
  ``c u`` (``u`` a fixed random unit vector) at the forget prompts' tokens from the subject on, and held at the
  original model's values at every token of the used retain facts (weight ``rmu_alpha``, WMDP's 1,200 for
  Zephyr-7B). ``c`` is ``rmu_coef`` x the original residual norm at those forget tokens (adaptive RMU, Dang et
  al., 2025): WMDP's fixed 6.5 was set for one model's norms, and a relative coefficient serves both embedded
  models with one setting. The tokens before the subject are left out because the forget and retain prompts of
  one relation share them word for word ("The capital of"), so steering them contradicts the retain term.
"""

from __future__ import annotations

import torch
from torch import Tensor

from interp.analyses.facts import rank_one as r1
from interp.analyses.facts.forget_sets import Item, encode_items, first_answer
from interp.datasets.prompts import subject_positions
from interp.errors import InterpError
from interp.names import hook_name
from interp.progress import bar
from interp.tracing import record
from interp.tracing.rank_update import rank_updates


def trainable_names(model, layers: list[int] | None) -> list[str]:
    """HF-named parameters to train: the MLPs of ``layers``, or (None) every block parameter."""
    names = [b.name for b in model.block_params if layers is None or (b.part == "mlp" and b.layer in layers)]
    if not names:
        raise InterpError(f"no MLP parameters found for layers {layers}")
    return names


def answer_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token CE over the answer tokens."""
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                             ignore_index=-100)


def answer_logprob(logits: Tensor, labels: Tensor) -> Tensor:
    """Per item: the log-probability of its answer tokens, summed."""
    logp = logits[:, :-1].float().log_softmax(-1)
    lab = labels[:, 1:]
    picked = logp.gather(-1, lab.clamp(min=0)[..., None])[..., 0]
    return (picked * (lab != -100)).sum(-1)


def need_subjects(items: list[Item], method: str) -> None:
    if any(not it.subject for it in items):
        raise InterpError(f"{method} is keyed on each fact's subject; these forget items have none "
                          f"(SemEval items): leave {method} out of --methods")


class Steering:
    """RMU's targets: the site, the forget tokens it steers (mask), ``c u``, and the original residual at the
    retain facts' tokens."""

    def __init__(self, model, forget: list[Item], f_tok: Tensor, r_tok: Tensor, r_lab: Tensor, layer: int, config):
        need_subjects(forget, "rmu")
        self.site = hook_name("resid_post", layer)
        pos = torch.arange(f_tok.shape[1], device=f_tok.device)
        start = torch.tensor([subject_positions(model, it.prompt, it.subject)[0] for it in forget], device=pos.device)
        end = torch.tensor([len(model.encode(it.prompt)) for it in forget], device=pos.device)
        self.f_mask = (pos[None] >= start[:, None]) & (pos[None] < end[:, None])
        last = r_lab.shape[1] - 1 - (r_lab != -100).flip(1).long().argmax(1)  # each retain row's last real token
        self.r_mask = torch.arange(r_tok.shape[1], device=pos.device)[None] <= last[:, None]
        with torch.no_grad(), record(model, [self.site]) as acts:
            model(f_tok)
            norm = acts[self.site][self.f_mask].float().norm(dim=-1).mean()
            model(r_tok)
            self.r_frozen = acts[self.site].float()
        gen = torch.Generator().manual_seed(config.seed)  # drawn on the host: the same direction on every device
        u = torch.rand(model.cfg.d_model, generator=gen, device="cpu").to(pos.device)
        self.control = config.rmu_coef * norm * u / u.norm()
        self.alpha = config.rmu_alpha

    def loss(self, f_h: Tensor, r_h: Tensor, rows: Tensor) -> Tensor:
        forget = ((f_h[self.f_mask].float() - self.control) ** 2).mean()
        keep = ((r_h[self.r_mask[rows]].float() - self.r_frozen[rows][self.r_mask[rows]]) ** 2).mean()
        return forget + self.alpha * keep


def train(model, names: list[str], forget: list[Item], retain: list[Item], windows: Tensor, config,
          desc: str, method: str = "sha256", params: list[Tensor] | None = None,
          layers: list[int] | None = None) -> list[dict]:
    """Run the optimisation in place on ``names`` (or on ``params``: the rank-one deltas); return the
    per-step log. ``method``: sha256 (with ``config.loss``), npo, rank_one or rmu (steering after ``layers[-1]``)."""
    own = params is None
    params = [model.hf_params[n] for n in names] if own else params
    for p in params:
        p.requires_grad_(True)
    lr = {"npo": config.npo_lr, "rank_one": config.rank_lr, "rmu": config.rmu_lr}.get(method, config.lr)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0) if own else torch.optim.Adam(params, lr=lr)
    f_tok, f_lab, f_first = encode_items(model, forget)
    r_tok, r_lab, _ = encode_items(model, retain)
    ref_logp = ref = steer = None
    with torch.no_grad():
        if method == "npo":
            ref_logp = answer_logprob(model(f_tok), f_lab)
        if method == "sha256" and config.loss == "bounded":
            ref = model(windows).float().log_softmax(-1)
    if method == "rmu":
        steer = Steering(model, forget, f_tok, r_tok, r_lab, layers[-1], config)
    sites = [steer.site] if steer else []
    n_r, rb = len(retain), min(config.retain_batch, len(retain))
    log, first = [], []
    try:
        with bar(range(config.steps), desc=desc, unit="step") as progress, torch.enable_grad():
            for step in progress:
                rows = torch.arange(step * rb, (step + 1) * rb, device=r_tok.device) % n_r
                with record(model, sites, detach=False) as acts:
                    f_logits = model(f_tok)
                    f_h = acts.get(steer.site) if steer else None
                    r_logits = model(r_tok[rows])
                    r_h = acts.get(steer.site) if steer else None
                forget_ce, retain_ce = answer_ce(f_logits, f_lab), answer_ce(r_logits, r_lab[rows])
                if step < -(-n_r // rb):  # the first epoch's retain losses set the baseline
                    first.append(float(retain_ce.detach()))
                base = sum(first) / len(first)
                alpha = min(2.3, max(1.2, round(0.3 * 6 ** (float(retain_ce.detach()) - base) + 0.8, 1)))
                z, ans = first_answer(f_logits, f_lab, f_first)
                if method == "npo":
                    ratio = answer_logprob(f_logits, f_lab) - ref_logp
                    loss = (2 / config.npo_beta) * torch.nn.functional.softplus(config.npo_beta * ratio).mean() \
                        + config.npo_retain * retain_ce
                elif method == "rank_one":
                    rival = z.scatter(-1, ans[:, None], float("-inf")).max(-1).values
                    # -log(1 - p) with p the answer's share against its best rival: pushes it below that rival
                    loss = torch.nn.functional.softplus(z.gather(-1, ans[:, None])[:, 0] - rival).mean() + retain_ce \
                        + config.rank_wd * sum((p * p).sum(-1).mean() for p in params)
                elif method == "rmu":
                    loss = steer.loss(f_h, r_h, rows)
                elif config.loss == "sha256":
                    loss = -forget_ce + alpha * retain_ce
                else:
                    w = torch.arange(step * 2, step * 2 + 2, device=windows.device) % len(windows)  # 2 a step
                    kl = torch.nn.functional.kl_div(model(windows[w]).float().log_softmax(-1), ref[w],
                                                    log_target=True, reduction="batchmean") / windows.shape[1]
                    loss = -forget_ce.clamp(max=config.cap) + alpha * retain_ce + config.kl * kl
                acc = float((z.detach().argmax(-1) == ans).float().mean())
                f_ce, r_ce = float(forget_ce.detach()), float(retain_ce.detach())
                progress.set_postfix(forget_ce=f"{f_ce:.2f}", retain_ce=f"{r_ce:.2f}", acc=acc)
                done = step and acc <= config.target_forget_acc + 1e-6 and (method != "rank_one" or config.rank_stop)
                log.append({"step": step, "forget_ce": f_ce, "retain_ce": r_ce, "alpha": alpha, "forget_acc": acc,
                            "updated": not done})
                if done:
                    break  # the weights as they are now meet the target: no further step
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        for p in params:
            p.requires_grad_(False)
    return log


def rank_one_edit(model, forget: list[Item], retain: list[Item], layers: list[int], windows: Tensor,
                  config) -> tuple[list[str], list[dict]]:
    """Learn and bake in the rank-one W_out edits of ``layers`` (see ``interp.analyses.facts.rank_one``);
    returns the HF names of the edited parameters and the per-step log."""
    need_subjects(forget, "rank_one")
    keys = r1.subject_keys(model, [it.prompt for it in forget], [it.subject for it in forget], layers)
    protect = r1.prompt_keys(model, [it.prompt for it in retain], layers)
    u = r1.directions(keys, r1.second_moment(model, windows, layers), config.rank_reg, protect)
    deltas = [torch.zeros(len(forget), model.cfg.d_model, device=model.device) for _ in layers]
    with rank_updates([r1.out_module(model, l) for l in layers], u, deltas):
        log = train(model, [], forget, retain, windows, config, "unlearning (rank_one)", "rank_one", deltas)
    return [r1.out_param_name(model, l) for l in layers], log
