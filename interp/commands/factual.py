"""``interp factual`` and ``interp factual-fix``."""

from __future__ import annotations

import typer

from interp.cli import DEVICE, DTYPE, JSON, MODEL, _model, app, emit

FACTS = typer.Option("builtin:capitals", "--facts", "-f",
                     help="builtin:capitals|languages|city_country|makers, "
                          "or a JSONL of prompt/subject/answer/relation")


@app.command()
def factual(
    facts: str = FACTS,
    layer: int = typer.Option(-1, "--layer", "-l", help="the MLP to decompose into neurons (-1: the largest DLA)"),
    n: int = typer.Option(0, "--n", help="facts to read (0: all)"),
    top_heads: int = typer.Option(5, "--top-heads"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """Decompose factual recall: DLA by layer, argument-passing heads, the MLP as activation, neurons, suppression."""
    from interp.analyses.base import run

    result = run("factual_recall", _model(model, device, dtype), facts=facts, mlp_layer=layer, n=n,
                 top_heads=top_heads)

    def human(r):
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

    emit(result.summary(), as_json, lambda _: human(result))


@app.command("factual-fix")
def factual_fix(
    facts: str = FACTS,
    target: str = typer.Option("neurons", "--target", help="neurons, mlp or attn of the final layer"),
    k: int = typer.Option(10, "-k", help="suppressing neurons to scale (target=neurons)"),
    scale: float = typer.Option(0.0, "--scale", help="multiply the target's output by this"),
    corpus: str = typer.Option("stdlib-docs", "--corpus", help="text for the LM-loss side cost"),
    corpus_tokens: int = typer.Option(4096, "--corpus-tokens"),
    seed: int = typer.Option(0, "--seed", help="the train/held-out split"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """Mitigate final-layer suppression of correct answers; held-out gain and LM-loss cost."""
    from interp.analyses.base import run

    result = run("factual_fix", _model(model, device, dtype), facts=facts, target=target, k=k, scale=scale,
                 corpus=corpus, corpus_tokens=corpus_tokens, seed=seed)

    def human(r):
        m = r.metrics
        typer.echo(r.notes[0])
        typer.echo(f"held-out accuracy {m['held_out_acc_before']:.2f} → {m['held_out_acc_after']:.2f}; "
                   f"{m['held_out_share_improved']:.0%} of held-out facts gained probability; stored at {r.path}")

    emit(result.summary(), as_json, lambda _: human(result))
