"""``interp top-neurons``, ``decode``, ``neurons-for``, ``clamp``, ``concept`` and ``atlas``."""

from __future__ import annotations

import typer

from interp.commands.common import DEVICE, DTYPE, JSON, MODEL, app, config_command, emit, load
from interp.errors import InterpError


def _top_neurons(r) -> None:
    m = r.metrics
    typer.echo(f"{r.config.prompt!r} -> {m['target']!r}  p={m['target_prob']:.3f}  logit={m['target_logit']:.2f}")
    typer.echo(f"all neurons' direct logit attribution: {m['neurons_total_dla']:+.2f}; "
               f"the top {r.config.top_k} carry {m['top_k_abs_share']:.0%} of the absolute direct effect")
    for row in r.table("top").itertuples():
        typer.echo(f"  neuron {row.layer}.{row.neuron:<6} act {row.activation:+8.2f}   DLA {row.dla:+.3f}")
    if r.path:
        typer.echo(f"saved {r.path}")


config_command("top-neurons", "top_neurons", _top_neurons,
               extra=lambda r: {"top": r.table("top").to_dict("records")},
               help="Which neurons write the predicted token directly (one forward pass).")

config_command("decode", "lm_head_decoding", lambda r: typer.echo(
    f"decoded {r.metrics['n_neurons']:,} neurons ({', '.join(r.metrics['sides'])}); stored at {r.path}"),
    cached=True, help="Decode every neuron's weights through the LM head (cached by weights hash).")


@app.command("neurons-for")
def neurons_for_cmd(
    token: str = typer.Option(..., "--token", "-t", help="token text with its leading space, e.g. ' Paris'"),
    k: int = typer.Option(10, "-k", min=1, help="neurons to list"),
    side: str = typer.Option("out", help="out: promotes the token; up/gate: read the token's embedding"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """The neurons whose output direction most promotes a token (or whose input reads it)."""
    from interp.analyses.base import cached_run
    from interp.analyses.neurons.decoding import SIDES, neurons_for

    m = load(model, device, dtype)
    token_id = m.token_id(token)
    if side not in SIDES:
        raise InterpError(f"unknown side {side!r}: choose from {SIDES}")
    table = neurons_for(cached_run("lm_head_decoding", m), token_id, k, side)
    rows = table.to_dict("records")

    def human(d):
        typer.echo(f"neurons {'promoting' if side == 'out' else 'reading'} {token!r} (token {token_id}, {side} side):")
        for r in d["neurons"]:
            typer.echo(f"  {r['rank']:>2}. neuron {r['layer']}.{r['neuron']:<6} score {r['score']:+.3f}")

    emit({"token": token, "token_id": token_id, "neurons": rows}, as_json, human)


def _print_clamp(r) -> None:
    for row in r.table("probs").itertuples():
        typer.echo(f"  {row.prompt!r:<40} P({row.target!r}) {row.p_before:.2e} -> {row.p_after:.2e}")
    for row in r.table("generations").itertuples():
        typer.echo(f"  {row.prompt!r}\n     before: {row.before!r}\n     after:  {row.after!r}")
    if r.path:
        typer.echo(f"saved {r.path}")


def _tables(r) -> dict:
    return {"probs": r.table("probs").to_dict("records"), "generations": r.table("generations").to_dict("records")}


config_command("clamp", "clamp", _print_clamp, extra=_tables,
               help="Clamp neurons to a value: target probabilities and generations, before and after.")


def _concept(r) -> None:
    x = r.metrics
    typer.echo(f"concept {x['concept']!r}: neuron {x['neuron']} (decoded score {x['decoded_score']:+.2f}), "
               f"max |activation| {x['typical_max']:.2f} on {x['typical_max_corpus']}, clamped to {x['value']:.2f}")
    typer.echo(f"mean P before {x['mean_p_before']:.2e}, after {x['mean_p_after']:.2e}; "
               f"raised on {x['frac_prompts_raised']:.0%} of prompts")
    _print_clamp(r)


config_command("concept", "concept", _concept)

config_command("atlas", "neuron_atlas", lambda r: typer.echo(
    f"atlas of {r.metrics['layers']} layers over {r.metrics['tokens']:,} tokens of {r.config.corpus}; "
    f"stored at {r.path}"), cached=True)
