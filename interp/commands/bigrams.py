"""``interp bigram``."""

from __future__ import annotations

import typer

from interp.cli import DEVICE, DTYPE, JSON, MODEL, _model, app, emit


@app.command()
def bigram(
    corpus: str = typer.Option("stdlib-docs+sampled:8192", "--corpus", "-c",
                               help="text for the bigram counts and the training windows"),
    params: str = typer.Option("all", "--params", help="all (attention + MLP block weights), mlp or attn"),
    steps: int = typer.Option(300, "--steps", help="CPU protocol 300; the paper: 15000 (with --device cuda)"),
    lam: float = typer.Option(10.0, "--lam", help="sparsity penalty weight"),
    lr: float = typer.Option(0.05, "--lr", help="mask learning rate (the paper: 5e-5 over 15k steps)"),
    t_mult: float = typer.Option(1.016, "--t-mult", help="temperature multiplier per step (the paper: 1.001)"),
    batch_size: int = typer.Option(8, "--batch-size"),
    seq_len: int = typer.Option(32, "--seq-len"),
    corpus_tokens: int = typer.Option(60_000, "--corpus-tokens"),
    optimal_pruning: bool = typer.Option(True, help="also train the optimal-pruning mask to compare with"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """Learn a bigram subnetwork (continuous sparsification); sufficiency, necessity, location, geometry."""
    from interp.analyses.base import run

    result = run("bigram_subnetworks", _model(model, device, dtype), corpus=corpus, params=params, steps=steps,
                 lam=lam, lr=lr, t_mult=t_mult, batch_size=batch_size, seq_len=seq_len,
                 corpus_tokens=corpus_tokens, optimal_pruning=optimal_pruning)

    def human(r):
        m = r.metrics
        typer.echo(f"kept {m['kept_params']:,} of {m['masked_params']:,} weights ({m['kept_fraction']:.3%}); "
                   f"{m['share_in_layer0_mlp']:.0%} of them in layer 0's MLP")
        typer.echo(f"sufficiency, KL to the bigram distribution: {m['sufficiency_kl']}")
        typer.echo(f"necessity, LM loss: {m['necessity_lm_loss']}")
        for note in r.notes:
            typer.echo(f"note: {note}")
        typer.echo(f"stored at {r.path}")

    emit(result.summary(), as_json, lambda _: human(result))
