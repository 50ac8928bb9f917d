"""``interp patch`` and ``interp patch-compare``."""

from __future__ import annotations

import typer

from interp.cli import DEVICE, DTYPE, JSON, MODEL, _layers, _model, app, emit


@app.command()
def patch(
    method: str = typer.Option("relp", "--method", help="activation, attribution or relp"),
    dataset: str = typer.Option("ioi", "--dataset", "-d",
                                help="ioi (generated) or a JSONL of clean/corrupt/answer/wrong"),
    n: int = typer.Option(16, "--n", help="pairs (0: every pair of a file)"),
    components: str = typer.Option("resid,attn_out,mlp_out,heads", "--components",
                                   help="any of resid, attn_out, mlp_out, heads, neurons"),
    metric: str = typer.Option("logit_diff", "--metric", help="logit_diff, prob or kl"),
    direction: str = typer.Option("denoising", "--direction",
                                  help="denoising: clean patched into the corrupt run; noising: the reverse"),
    rules: str = typer.Option("default", "--rules", help="RelP's LRP rules: default (ln,identity,half), all (+ah)"),
    layers: str = typer.Option("", "--layers", help="e.g. 0-3,29 (default: all)"),
    neuron_pos: int = typer.Option(-1, "--neuron-pos", help="position of the neurons component"),
    seed: int = typer.Option(0, "--seed"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """Score components by activation, attribution or relevance patching (RelP)."""
    from interp.analyses.base import run

    comps = [c.strip() for c in components.split(",") if c.strip()]
    result = run("patching", _model(model, device, dtype), method=method, dataset=dataset, n=n, components=comps,
                 metric=metric, direction=direction, rules=rules, layers=_layers(layers), neuron_pos=neuron_pos,
                 seed=seed)

    def human(r):
        m = r.metrics
        typer.echo(f"{m['method']} patching ({m['direction']}, {m['metric']}) of {m['n_pairs']} pairs "
                   f"in {m['seconds']:.1f} s; stored at {r.path}")
        for component, df in r.table("scores").groupby("component", sort=False):
            top = df.groupby(["layer", "unit"]).score.mean().abs().nlargest(3)
            unit = "pos from end" if component in ("resid", "attn_out", "mlp_out") else "unit"
            best = ", ".join(f"L{l} {unit} {u}" for l, u in top.index)
            typer.echo(f"  {component:<9} top by mean |score|: {best}")

    emit(result.summary(), as_json, lambda _: human(result))


@app.command("patch-compare")
def patch_compare(
    run_a: str = typer.Argument(..., help="the ground truth (activation patching): run id or directory"),
    run_b: str = typer.Argument(..., help="the approximation (attribution or relp)"),
    k: int = typer.Option(10, "-k", help="top-k for the overlap"),
    as_json: bool = JSON,
):
    """Per component type: Pearson, Spearman and top-k overlap of two patching runs."""
    from interp.analyses.faithfulness import compare
    from interp.storage import load_result, resolve_run

    a, b = load_result(resolve_run(run_a)), load_result(resolve_run(run_b))
    table = compare(a, b, k=k)

    def human(df):
        typer.echo(f"{b.metrics['method']} vs {a.metrics['method']} ({a.run_id} / {b.run_id})")
        typer.echo(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    emit(table.to_dict("records"), as_json, lambda _: human(table))
