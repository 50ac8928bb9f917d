"""``interp bigram`` and ``interp bigram-surprisal``."""

from __future__ import annotations

import typer

from interp.commands.common import config_command


def _bigram(r) -> None:
    m = r.metrics
    typer.echo(f"kept {m['kept_params']:,} of {m['masked_params']:,} weights ({m['kept_fraction']:.3%}); "
               f"{m['share_in_layer0_mlp']:.0%} of them in layer 0's MLP")
    typer.echo(f"sufficiency, KL to the bigram distribution: {m['sufficiency_kl']}")
    typer.echo(f"necessity, LM loss: {m['necessity_lm_loss']}")
    for note in r.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"stored at {r.path}")


config_command("bigram", "bigram_subnetworks", _bigram,
               help="Learn a bigram subnetwork (continuous sparsification); sufficiency, necessity, location, "
                    "geometry.")


def _surprisal(r) -> None:
    for note in r.notes:
        typer.echo(note)
    typer.echo(f"stored at {r.path}")


config_command("bigram-surprisal", "bigram_surprisal", _surprisal,
               help="The bigram paper's measure on a stored subnetwork: Pearson r of its per-token surprisal with "
                    "bigram surprisal on held-out text, against the full model and random subnetworks.")
