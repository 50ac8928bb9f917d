"""``interp trace`` and ``interp unlearn``."""

from __future__ import annotations

import typer

from interp.commands.common import config_command


def _trace(r) -> None:
    m = r.metrics
    typer.echo(f"traced {m['n_facts']} facts: mean P(answer) clean {m['mean_p_clean']:.3f}, "
               f"corrupted {m['mean_p_corrupt']:.3f}")
    for note in r.notes:
        typer.echo(note)
    typer.echo(f"stored at {r.path}")


def _unlearn(r) -> None:
    typer.echo(f"split: forget {r.config.forget}, retain {r.config.retain} (run {r.run_id})")
    for note in r.notes:
        typer.echo(note)
    for variant in r.table("summary").run[1:]:
        typer.echo(f"{variant} model: interp info --model {r.metrics[variant]['edit']}")
    typer.echo(f"stored at {r.path}")


config_command("trace", "causal_tracing", _trace,
               help="ROME-style causal tracing: the indirect effect of restoring each (layer, token).")
config_command("unlearn", "unlearning", _unlearn,
               help="Unlearning: SHA256's constrained MLP training beside NPO, a subject-keyed rank-one edit, "
                    "MEMIT and RMU, scored on retain facts no method saw; edited weights saved as model specs.")
