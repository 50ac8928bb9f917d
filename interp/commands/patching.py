"""``interp patch``, ``interp patch-compare`` and ``interp faithfulness``."""

from __future__ import annotations

import typer

from interp.commands.common import JSON, app, config_command, emit


def _patch(r) -> None:
    m = r.metrics
    typer.echo(f"{m['method']} patching ({m['direction']}, {m['metric']}) of {m['n_pairs']} pairs "
               f"in {m['seconds']:.1f} s; stored at {r.path}")
    from interp.viz.patching import position_labels

    labels = position_labels(r)  # the heatmaps' labels: "-1 ' to'" is the last token (pos_from_end 0)
    for component, df in r.table("scores").groupby("component", sort=False):
        positional = component in ("resid", "attn_out", "mlp_out")
        # positions line up from the end: pairs of different lengths share their last tokens, not their first
        top = df.groupby(["layer", "pos_from_end" if positional else "unit"]).score.mean().abs().nlargest(3)
        best = ", ".join(f"L{l} position {labels.get(u, str(-1 - u))}" if positional else
                         f"L{l} {'head' if component == 'heads' else 'unit'} {u}" for l, u in top.index)
        typer.echo(f"  {component:<9} top by mean |score|: {best}")


config_command("patch", "patching", _patch,
               help="Score components by activation, attribution or relevance patching (RelP).")


def _faithfulness(r) -> None:
    typer.echo(f"faithfulness to activation patching on {r.config.dataset} (n={r.config.n}); stored at {r.path}")
    t = r.table("summary")
    for row in t.itertuples():
        typer.echo(f"  {row.method:<11} {row.component:<9} Pearson {row.pearson:.3f} [{row.pearson_lo:.3f}, "
                   f"{row.pearson_hi:.3f}]  Spearman {row.spearman:.3f} [{row.spearman_lo:.3f}, "
                   f"{row.spearman_hi:.3f}]  per pair median {row.per_pair_median:.3f}")
    for note in r.notes[1:]:
        typer.echo(f"  {note}")


config_command("faithfulness", "faithfulness", _faithfulness,
               help="AtP and RelP against activation patching: pooled and per-pair correlations, bootstrap "
                    "intervals over pairs, RelP's gain (from stored patching runs).")


@app.command("patch-compare")
def patch_compare(
    run_a: str = typer.Argument(..., help="the ground truth (activation patching): run id or directory"),
    run_b: str = typer.Argument(..., help="the approximation (attribution or relp)"),
    k: int = typer.Option(10, "-k", min=1, help="top-k for the overlap"),
    force: bool = typer.Option(False, "--force", help="compare runs on different pairs or metrics anyway"),
    as_json: bool = JSON,
):
    """Per component type: Pearson, Spearman and top-k overlap of two patching runs."""
    from interp.analyses.patching.read import compare
    from interp.storage import load_result, resolve_run

    a, b = load_result(resolve_run(run_a, "patching")), load_result(resolve_run(run_b, "patching"))
    table = compare(a, b, k=k, force=force)

    def human(df):
        typer.echo(f"{b.metrics['method']} vs {a.metrics['method']} ({a.run_id} / {b.run_id})")
        if "forced" in df:
            typer.echo(f"compared with --force, although {df.forced.iloc[0]}")
        typer.echo(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    emit(table.to_dict("records"), as_json, lambda _: human(table))


def _graph(r) -> None:
    m = r.metrics
    typer.echo(f"{r.config.prompt!r} -> {', '.join(m['targets'])}: {m['n_neurons_kept']} neurons kept of "
               f"{m['n_expanded']} expanded, {m['n_edges']} edges; replacement {m['replacement']:.3f}, "
               f"completeness {m['completeness']:.3f}; {m['backward_passes']} backward passes, {m['seconds']:.1f} s")
    nodes = r.table("nodes")
    top = nodes[nodes.kind == "neuron"].nlargest(8, "influence")
    for row in top.itertuples():
        typer.echo(f"  neuron {row.layer}.{row.neuron:<6} at {row.position:>3} {row.token!r:<12} act "
                   f"{row.activation:+8.2f}  influence {row.influence:.3f}")
    if "faithfulness_graph" in m:
        def corr(name: str) -> str:
            if f"{name}_pearson" not in m:
                return "n/a"
            return f"Pearson {m[name + '_pearson']:.2f}, sign agreement {m[name + '_sign_agreement']:.0%}"

        typer.echo(f"verify: knock-outs vs the linear prediction {corr('knockout')} (lowered by 10%: "
                   f"{corr('nudge')}); downstream {corr('downstream')}; faithfulness of the graph alone "
                   f"{m['faithfulness_graph']:.2f}, random halves outside it {m['faithfulness_halves_mean']:.2f} "
                   f"± {m['faithfulness_halves_std']:.2f}")
        typer.echo("  curve (top x% kept / random): " + ", ".join(
            f"{x}% {m['curve_top'][x]:.2f}/{m['curve_random'][x]:.2f}" for x in m["curve_top"]))
    for text in r.notes:
        typer.echo(f"note: {text}")
    if r.path:
        typer.echo(f"saved {r.path}")


def _graph_files(r, model, outputs: dict) -> dict:
    import json

    from interp.analyses.circuits.read import to_graph_json
    from interp.storage.cache import atomic_write
    from interp.workbench import graph_labels

    labels = graph_labels(model, r)
    out = {}
    if "export" in outputs:
        out["export"] = str(atomic_write(outputs["export"], json.dumps(to_graph_json(r, labels))))
    if "html" in outputs:
        from interp.viz.graph import export_html

        out["html"] = str(export_html(r, outputs["html"], labels))
    for key, path in out.items():
        typer.echo(f"wrote {key} {path}", err=True)
    return out


config_command("graph", "neuron_graph", _graph, files={
    "export": "also write the graph as circuit-tracer's graph JSON (a path)",
    "html": "also write the graph as one self-contained HTML file (a path)"}, write=_graph_files,
    extra=lambda r: {"top": r.table("nodes").query("kind == 'neuron'").nlargest(20, "influence")
                     .to_dict("records")},
    help="An attribution graph over MLP neurons for one prompt (direct effects in the linearised model).")
