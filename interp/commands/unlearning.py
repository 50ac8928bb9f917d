"""``interp trace`` and ``interp unlearn``."""

from __future__ import annotations

import typer

from interp.cli import DEVICE, DTYPE, JSON, MODEL, _layers, _model, app, emit


@app.command()
def trace(
    facts: str = typer.Option("builtin:capitals", "--facts", "-f", help="a facts JSONL or builtin:NAME"),
    kind: str = typer.Option("resid,mlp,attn", "--kind", help="any of resid, mlp, attn"),
    n: int = typer.Option(10, "--n", help="facts the model knows to trace (0: all)"),
    noise: float = typer.Option(3.0, "--noise", help="x the embedding standard deviation"),
    samples: int = typer.Option(10, "--samples", help="noise samples per fact"),
    window: int = typer.Option(0, "--window", help="layers restored for mlp/attn (0: 10/48 of the depth)"),
    seed: int = typer.Option(0, "--seed"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """ROME-style causal tracing: the indirect effect of restoring each (layer, token)."""
    from interp.analyses.base import run

    kinds = [k.strip() for k in kind.split(",") if k.strip()]
    result = run("causal_tracing", _model(model, device, dtype), facts=facts, kinds=kinds, n=n, noise=noise,
                 samples=samples, window=window, seed=seed)

    def human(r):
        m = r.metrics
        typer.echo(f"traced {m['n_facts']} facts: mean P(answer) clean {m['mean_p_clean']:.3f}, "
                   f"corrupted {m['mean_p_corrupt']:.3f}")
        for note in r.notes:
            typer.echo(note)
        typer.echo(f"stored at {r.path}")

    emit(result.summary(), as_json, lambda _: human(result))


@app.command()
def unlearn(
    forget: str = typer.Option("builtin:forget", "--forget", help="facts or SemEval-2025 Task 4 JSONL to forget"),
    retain: str = typer.Option("builtin:retain", "--retain", help="facts or SemEval JSONL to keep"),
    layers: str = typer.Option("", "--layers", help="MLP layers to train, e.g. 0-3 (default: causal tracing)"),
    steps: int = typer.Option(60, "--steps"),
    lr: float = typer.Option(1.5e-5, "--lr"),
    loss: str = typer.Option("sha256", "--loss", help="sha256 (-CE forget + adaptive alpha CE retain) or bounded"),
    baseline: bool = typer.Option(True, help="also train every block on the same budget"),
    seed: int = typer.Option(0, "--seed"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """Constrained unlearning: forget facts by training a few MLPs; edited weights saved as a model spec."""
    from interp.analyses.base import run

    result = run("unlearning", _model(model, device, dtype), forget=forget, retain=retain, layers=_layers(layers),
                 steps=steps, lr=lr, loss=loss, baseline=baseline, seed=seed)

    def human(r):
        for note in r.notes:
            typer.echo(note)
        for variant in ("constrained", "unconstrained"):
            if variant in r.metrics:
                typer.echo(f"{variant} model: interp info --model {r.metrics[variant]['edit']}")
        typer.echo(f"stored at {r.path}")

    emit(result.summary(), as_json, lambda _: human(result))
