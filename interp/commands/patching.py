"""``interp patch`` and ``interp patch-compare``."""

from __future__ import annotations

import typer

from interp.commands.common import JSON, app, config_command, emit


def _patch(r) -> None:
    m = r.metrics
    typer.echo(f"{m['method']} patching ({m['direction']}, {m['metric']}) of {m['n_pairs']} pairs "
               f"in {m['seconds']:.1f} s; stored at {r.path}")
    for component, df in r.table("scores").groupby("component", sort=False):
        positional = component in ("resid", "attn_out", "mlp_out")
        # positions line up from the end: pairs of different lengths share their last tokens, not their first
        top = df.groupby(["layer", "pos_from_end" if positional else "unit"]).score.mean().abs().nlargest(3)
        unit = "pos from end" if positional else "unit"
        best = ", ".join(f"L{l} {unit} {u}" for l, u in top.index)
        typer.echo(f"  {component:<9} top by mean |score|: {best}")


config_command("patch", "patching", _patch,
               help="Score components by activation, attribution or relevance patching (RelP).")


@app.command("patch-compare")
def patch_compare(
    run_a: str = typer.Argument(..., help="the ground truth (activation patching): run id or directory"),
    run_b: str = typer.Argument(..., help="the approximation (attribution or relp)"),
    k: int = typer.Option(10, "-k", min=1, help="top-k for the overlap"),
    force: bool = typer.Option(False, "--force", help="compare runs on different pairs or metrics anyway"),
    as_json: bool = JSON,
):
    """Per component type: Pearson, Spearman and top-k overlap of two patching runs."""
    from interp.analyses.patching.faithfulness import compare
    from interp.storage import load_result, resolve_run

    a, b = load_result(resolve_run(run_a)), load_result(resolve_run(run_b))
    table = compare(a, b, k=k, force=force)

    def human(df):
        typer.echo(f"{b.metrics['method']} vs {a.metrics['method']} ({a.run_id} / {b.run_id})")
        if "forced" in df:
            typer.echo(f"compared with --force, although {df.forced.iloc[0]}")
        typer.echo(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    emit(table.to_dict("records"), as_json, lambda _: human(table))
