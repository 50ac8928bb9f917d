"""``interp factual`` and ``interp factual-fix``."""

from __future__ import annotations

import typer

from interp.commands.common import config_command


def _factual(r) -> None:
    m = r.metrics
    typer.echo(f"{m['n_correct']} of {m['n_facts']} facts answered correctly at top-1 (decomposed)")
    by_layer = r.table("dla_by_layer").sort_values("dla", ascending=False).head(4)
    typer.echo("largest mean direct effects on the answer: " + ", ".join(
        f"{k.kind} {k.layer} {k.dla:+.2f}" for k in by_layer.itertuples()))
    typer.echo(f"top argument-passing heads: {', '.join(m['top_heads'])}; MLP {m['activation_layer']} regressed "
               f"on them: mean R² {m['mean_regression_r2']:.3f}")
    top = r.table("neurons").head(5)
    typer.echo(f"MLP {m['mlp_layer']}'s top neurons: " + ", ".join(
        f"{t.layer}.{t.neuron} ({t.mean_dla:+.2f})" for t in top.itertuples()))
    for note in r.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"stored at {r.path}")


def _fix(r) -> None:
    m = r.metrics
    typer.echo(r.notes[0])
    typer.echo(f"held-out accuracy {m['held_out_acc_before']:.2f} → {m['held_out_acc_after']:.2f}; "
               f"{m['held_out_share_improved']:.0%} of held-out facts gained probability; stored at {r.path}")


config_command("factual", "factual_recall", _factual,
               help="Decompose factual recall: DLA by layer, argument-passing heads, the MLP as activation, "
                    "neurons, suppression.")
config_command("factual-fix", "factual_fix", _fix,
               help="Mitigate final-layer suppression of correct answers; held-out gain and LM-loss cost.")
