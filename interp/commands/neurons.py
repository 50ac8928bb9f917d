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
    by: str = typer.Option("specificity", "--by", help="specificity (the token's standing in each neuron's own "
                           "decoding, on its typical side, weighted by its atlas activation) or raw (W_out·W_U)"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """The neurons for a token: most specific to it (default), or by the raw output score (--by raw)."""
    from interp.analyses.base import cached_run
    from interp.analyses.neurons.decoding import SIDES
    from interp.analyses.neurons.read import RANKINGS, neurons_for, typical_activation
    from interp.storage import load_result, newest_run

    if by not in RANKINGS:
        raise InterpError(f"unknown ranking --by {by!r}: choose specificity or raw")
    if side not in SIDES:
        raise InterpError(f"unknown side {side!r}: choose from {SIDES}")
    if by == "specificity" and side != "out":
        by = "raw"  # specificity is an output-side ranking; the input sides rank by their raw score
    m = load(model, device, dtype)
    token_id = m.token_id(token)
    atlas = newest_run("neuron_atlas", m.weights_hash) if by == "specificity" else None
    typical = typical_activation(load_result(atlas)) if atlas else None
    table = neurons_for(cached_run("lm_head_decoding", m), token_id, k, side, by=by, typical=typical)
    rows = table.to_dict("records")

    def human(d):
        what = "most specific to" if by == "specificity" else "promoting" if side == "out" else "reading"
        typer.echo(f"neurons {what} {token!r} (token {token_id}, {side} side"
                   f"{'' if by == 'raw' else ', with the atlas' if atlas else ', no atlas: both signs'}):")
        for r in d["neurons"]:
            extra = ""
            if by == "specificity":
                own = r["own_rank"]
                extra = f" {r['side']:<4}  z {r['z']:+.2f}  " + (f"#{int(own) + 1} in its own list"
                                                                   if own == own else "beyond its top-k")
            typer.echo(f"  {r['rank']:>2}. neuron {r['layer']}.{r['neuron']:<6} score {r['score']:+.3f}{extra}")

    emit({"token": token, "token_id": token_id, "by": by, "neurons": rows}, as_json, human)


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


def _explained(r) -> None:
    m = r.metrics
    typer.echo(f"explained {m['neurons']:,} neurons of {m['layers']} layers from token statistics (not prose); "
               f"scored on {m['heldout_tokens']:,} held-out tokens and {m['heldout_examples']:,} held-out examples")
    rows = [("tokens", m["tokens"])] + [(k, m[k]) for k in ("llm", "random_weights") if k in m]
    for name, stats in rows:
        shown = "; ".join(f"{metric} median {s['median']:.3f} (random expl. {s.get('median_random', float('nan')):.3f}"
                          + (f", shuffled {s['median_shuffled']:.3f}" if "median_shuffled" in s else "")
                          + (f", {s['share_above_random']:.0%} above random" if "share_above_random" in s else "")
                          + ")" for metric, s in stats.items() if isinstance(s, dict))
        typer.echo(f"  {name}: {shown}")
    for metric, s in m.get("outputs", {}).items():
        typer.echo(f"  {metric}: median {s['median']:.2f} (random expl. {s.get('median_random', float('nan')):.2f}) "
                   f"over {s['n']} neurons")
    if r.path:
        typer.echo(f"saved {r.path}")


config_command("explain", "neuron_explanations", _explained,
               help="Explain every neuron (token statistics, or an LLM with --llm), scored on held-out data.")
