"""``interp``: the command line.

Every command takes ``--json`` and then prints exactly one JSON document on stdout;
progress bars and warnings go to stderr. A bad input prints one line,
``error: ...``, and exits with status 2 (no traceback).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import typer

from interp.errors import InterpError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="interp: a workbench for the MLP neurons of transformer LMs.")

MODEL = typer.Option("smollm2-135m", "--model", "-m",
                     help="smollm2-135m, tiny-gpt2, tiny-llama, an HF id or a directory")
DEVICE = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps")
DTYPE = typer.Option("float32", "--dtype", help="float32, bfloat16, float16, float64")
JSON = typer.Option(False, "--json", help="print one JSON document on stdout")


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("transformer_lens").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def emit(data: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, default=str) + "\n")
    else:
        human(data)


def _model(spec: str, device: str, dtype: str):
    from interp.models import load_model

    return load_model(spec, device=device, dtype=dtype)


@app.command()
def info(model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON):
    """Architecture, sizes and hook names of a model."""
    from interp.tracing.names import GLOBAL_SITES, SITES

    m = _model(model, device, dtype)
    data = {**m.info(), "hooks": {"per_layer": SITES, "global": GLOBAL_SITES},
            "neuron": "blocks.{layer}.mlp.hook_post = "
                      + ("act(x W_gate^T) * (x W_in^T)" if m.is_glu else "act(x W_in^T + b_in)")}

    def human(d):
        typer.echo(f"{d['spec']}  ({d['name']}, {d['source']})")
        typer.echo(f"  layers {d['n_layers']}  d_model {d['d_model']}  d_mlp {d['d_mlp']}  "
                   f"d_vocab {d['d_vocab']}  heads {d['n_heads']}  context {d['n_ctx']}")
        typer.echo(f"  MLP: {'GLU' if d['is_glu'] else 'plain'} ({d['act_fn']}), final norm: {d['final_norm']}, "
                   f"{d['n_neurons']:,} neurons, {d['n_params']:,} parameters, {d['device']} {d['dtype']}")
        typer.echo(f"  neuron activation: {d['neuron']}")
        typer.echo("  hook names: " + ", ".join(f"{k}={v}" for k, v in SITES.items()))

    emit(data, as_json, human)


@app.command()
def runs(analysis: str | None = typer.Option(None, "--analysis", "-a"), as_json: bool = JSON):
    """List stored runs (from $INTERP_RUNS, default ./runs)."""
    from interp.storage import list_runs

    df = list_runs(analysis)
    rows = df.drop(columns=["config"]).to_dict("records") if len(df) else []

    def human(rs):
        if not rs:
            typer.echo("no stored runs")
        for r in rs:
            typer.echo(f"{r['created']}  {r['analysis']:<20} {r['model']:<14} {r['path']}")

    emit(rows, as_json, human)


@app.command("top-neurons")
def top_neurons(
    prompt: str = typer.Option("The capital of France is", "--prompt", "-p"),
    target: str = typer.Option("", "--target", "-t", help="token text, e.g. ' Paris' (default: top prediction)"),
    top_k: int = typer.Option(10, "--top-k", "-k"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
    save: bool = typer.Option(True, help="store the Result under $INTERP_RUNS"),
):
    """Which neurons write the predicted token directly (one forward pass)."""
    from interp.analyses.base import run

    result = run("top_neurons", _model(model, device, dtype), save=save, prompt=prompt, target=target, top_k=top_k)

    def human(r):
        m = r.metrics
        typer.echo(f"{prompt!r} -> {m['target']!r}  p={m['target_prob']:.3f}  logit={m['target_logit']:.2f}")
        typer.echo(f"all neurons' direct logit attribution: {m['neurons_total_dla']:+.2f}; "
                   f"the top {top_k} carry {m['top_k_abs_share']:.0%} of the absolute direct effect")
        for row in r.table("top").itertuples():
            typer.echo(f"  neuron {row.layer}.{row.neuron:<6} act {row.activation:+8.2f}   DLA {row.dla:+.3f}")
        if r.path:
            typer.echo(f"saved {r.path}")

    emit(result.summary() | {"top": result.table("top").to_dict("records")}, as_json, lambda _: human(result))


@app.command()
def neuron(
    neuron_id: str = typer.Argument(..., metavar="LAYER.INDEX", help="e.g. 29.1066"),
    prompt: str = typer.Option(..., "--prompt", "-p"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """A neuron's activation at every token of a prompt."""
    import torch

    from interp.tracing.hooks import record

    m = _model(model, device, dtype)
    nid = m.check_neuron(neuron_id)
    tokens = m.to_tokens(prompt)
    with torch.no_grad(), record(m, [nid.hook]) as acts:
        m(tokens)
    values = acts[nid.hook][0, :, nid.index].tolist()
    data = {"neuron": str(nid), "tokens": m.to_str_tokens(tokens), "activations": values}

    def human(d):
        typer.echo(f"neuron {d['neuron']} on {prompt!r}")
        for tok, a in zip(d["tokens"], d["activations"]):
            typer.echo(f"  {tok!r:<20} {a:+9.3f}")

    emit(data, as_json, human)


@app.command()
def data(
    path: str = typer.Argument(..., help="a JSONL file, builtin:NAME, or a corpus source"),
    kind: str = typer.Option("facts", "--kind", help="facts, pairs or corpus"),
    as_json: bool = JSON,
):
    """Validate a prompt set or corpus and summarise it (bad lines are named)."""
    from interp.datasets import load_corpus, load_facts, load_pairs

    if kind == "facts":
        records = [f.to_dict() for f in load_facts(path)]
    elif kind == "pairs":
        records = [p.to_dict() for p in load_pairs(path)]
    elif kind == "corpus":
        docs = [d for d in load_corpus(path) if d.strip()]
        if not docs:
            raise InterpError(f"corpus {path!r} is empty (or only whitespace)")
        records = [{"documents": len(docs), "characters": sum(map(len, docs))}]
    else:
        raise InterpError(f"unknown kind {kind!r}: choose facts, pairs or corpus")
    summary = {"path": path, "kind": kind, "count": len(records), "first": records[0]}
    emit(summary, as_json, lambda d: typer.echo(f"{d['path']}: {d['count']} valid {kind} records; "
                                                 f"first: {d['first']}"))


def _layers(text: str) -> tuple[int, ...]:
    """``"0-3,7"`` -> (0, 1, 2, 3, 7); empty -> () meaning every layer."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            a, _, b = part.partition("-")
            out += list(range(int(a), int(b) + 1)) if b else [int(a)]
        except ValueError:
            raise InterpError(f"cannot read layers {text!r}: write e.g. 0-3,7") from None
    return tuple(out)


def _decoding(m, top_k: int = 20, layers: str = "", fold_norm: bool = True):
    from interp.analyses.base import cached_run

    return cached_run("lm_head_decoding", m, top_k=top_k, layers=_layers(layers), fold_norm=fold_norm)


@app.command()
def decode(
    top_k: int = typer.Option(20, "--top-k", "-k"),
    layers: str = typer.Option("", "--layers", help="e.g. 0-3,29 (default: all)"),
    fold_norm: bool = typer.Option(True, help="fold the norms' weights in (see docs)"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """Decode every neuron's weights through the LM head (cached by weights hash)."""
    result = _decoding(_model(model, device, dtype), top_k, layers, fold_norm)

    def human(r):
        typer.echo(f"decoded {r.metrics['n_neurons']:,} neurons ({', '.join(r.metrics['sides'])}); stored at {r.path}")

    emit(result.summary(), as_json, lambda _: human(result))


@app.command("neurons-for")
def neurons_for_cmd(
    token: str = typer.Option(..., "--token", "-t", help="token text with its leading space, e.g. ' Paris'"),
    k: int = typer.Option(10, "-k"),
    side: str = typer.Option("out", help="out: promotes the token; up/gate: read the token's embedding"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """The neurons whose output direction most promotes a token (or whose input reads it)."""
    from interp.analyses.lm_head_decoding import SIDES, neurons_for

    m = _model(model, device, dtype)
    token_id = m.token_id(token)
    if side not in SIDES:
        raise InterpError(f"unknown side {side!r}: choose from {SIDES}")
    table = neurons_for(_decoding(m), token_id, k, side)
    rows = table.to_dict("records")

    def human(rs):
        typer.echo(f"neurons promoting {token!r} (token {token_id}):")
        for r in rs:
            typer.echo(f"  {r['rank']:>2}. neuron {r['layer']}.{r['neuron']:<6} score {r['score']:+.3f}")

    emit({"token": token, "token_id": token_id, "neurons": rows}, as_json, human)


def _print_clamp(r) -> None:
    for row in r.table("probs").itertuples():
        typer.echo(f"  {row.prompt!r:<40} P({row.target!r}) {row.p_before:.2e} -> {row.p_after:.2e}")
    for row in r.table("generations").itertuples():
        typer.echo(f"  {row.prompt!r}\n     before: {row.before!r}\n     after:  {row.after!r}")
    if r.path:
        typer.echo(f"saved {r.path}")


@app.command()
def clamp(
    neuron_ids: list[str] = typer.Option(..., "--neuron", "-n", help="LAYER.INDEX (repeatable)"),
    value: float = typer.Option(..., "--value", "-v"),
    prompts: list[str] = typer.Option(..., "--prompt", "-p"),
    targets: list[str] = typer.Option([], "--target", "-t", help="tokens to track (default: the top prediction)"),
    n_generate: int = typer.Option(0, "--generate", "-g", help="greedy tokens to generate, clamp held"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """Clamp neurons to a value: target probabilities and generations, before and after."""
    import torch

    from interp.analyses.base import run

    m = _model(model, device, dtype)
    if not targets:
        with torch.no_grad():
            targets = [m.token_str(int(m(m.to_tokens(prompts[0]))[0, -1].argmax()))]
    result = run("clamp", m, neurons=tuple(neuron_ids), value=value, prompts=tuple(prompts),
                 targets=tuple(targets), generate=n_generate)
    emit(result.summary() | {"probs": result.table("probs").to_dict("records"),
                             "generations": result.table("generations").to_dict("records")},
         as_json, lambda _: _print_clamp(result))


@app.command()
def concept(
    token: str = typer.Option(..., "--token", "-t", help="the concept token, e.g. ' dog'"),
    multiple: float = typer.Option(2.0, help="clamp to this multiple of the neuron's max |activation| on stdlib-docs"),
    side: str = typer.Option("out", help="pick the neuron by output-side (out) or up-projection (up) decoding"),
    n_generate: int = typer.Option(20, "--generate", "-g"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """The decoding paper's experiment: clamp the top decoded neuron for a concept."""
    from interp.analyses.clamping import concept_experiment
    from interp.analyses.lm_head_decoding import SIDES

    m = _model(model, device, dtype)
    m.token_id(token)  # cheap checks before the (cached, but minutes-long the first time) decoding
    if side not in SIDES:
        raise InterpError(f"unknown side {side!r}: choose from {SIDES}")
    result = concept_experiment(m, _decoding(m), token, multiple, n_generate=n_generate, side=side)
    result.save()

    def human(r):
        x = r.metrics
        typer.echo(f"concept {x['concept']!r}: neuron {x['neuron']} (decoded score {x['decoded_score']:+.2f}), "
                   f"max |activation| {x['typical_max']:.2f} on {x['typical_max_corpus']}, clamped to {x['value']:.2f}")
        typer.echo(f"mean P before {x['mean_p_before']:.2e}, after {x['mean_p_after']:.2e}; "
                   f"raised on {x['frac_prompts_raised']:.0%} of prompts")
        _print_clamp(r)

    emit(result.summary(), as_json, lambda _: human(result))


@app.command()
def atlas(
    corpus: str = typer.Option("stdlib-docs", "--corpus", "-c",
                               help="a .txt file or folder, a .jsonl, stdlib-docs, sampled:N, hf:NAME; join with +"),
    tokens: int = typer.Option(20_000, "--tokens", "-n", help="tokens to stream"),
    layers: str = typer.Option("", "--layers", help="e.g. 0-3,29 (default: all)"),
    k: int = typer.Option(20, "-k", help="top and bottom examples kept per neuron"),
    seq_len: int = typer.Option(128, "--seq-len"),
    batch_size: int = typer.Option(8, "--batch-size"),
    workers: int = typer.Option(1, "--workers", "-w", help="Ray workers (needs interp[scale]); 1: in-process"),
    checkpoint_every: int = typer.Option(10, help="batches between checkpoints (0: off)"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """Top-activating contexts, histograms and moments of every neuron over a corpus."""
    from interp.analyses.base import cached_run

    result = cached_run("neuron_atlas", _model(model, device, dtype), corpus=corpus, n_tokens=tokens,
                        layers=_layers(layers), k=k, seq_len=seq_len, batch_size=batch_size, workers=workers,
                        checkpoint_every=checkpoint_every)
    emit(result.summary(), as_json, lambda _: typer.echo(
        f"atlas of {result.metrics['layers']} layers over {result.metrics['tokens']:,} tokens of {corpus}; "
        f"stored at {result.path}"))


from interp.commands import bigrams as _bigrams  # noqa: E402,F401  (registers its commands)
from interp.commands import factual as _factual  # noqa: E402,F401
from interp.commands import patching as _patching  # noqa: E402,F401
from interp.commands import unlearning as _unlearning  # noqa: E402,F401


def main() -> None:
    """Entry point: run the app, turning InterpError into one line and exit status 2."""
    _quiet()
    as_json = "--json" in sys.argv
    try:
        app(standalone_mode=False)
    except InterpError as exc:
        if as_json:
            sys.stdout.write(json.dumps({"error": str(exc)}) + "\n")
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
    except Exception as exc:  # click usage errors, aborts
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, (click.exceptions.Abort, KeyboardInterrupt)):
            sys.stderr.write("interrupted\n")
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
