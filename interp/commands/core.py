"""``interp info``, ``runs``, ``pin``, ``neuron``, ``data`` and the generic ``interp run NAME --field value``."""

from __future__ import annotations

import typing

import torch
import typer

from interp.commands.common import DEVICE, DTYPE, JSON, MODEL, app, emit, fields_of, load, parse_options
from interp.errors import InterpError


@app.command()
def info(model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON):
    """Architecture, sizes and hook names of a model."""
    from interp.names import GLOBAL_SITES, SITES

    m = load(model, device, dtype)
    data = {**m.info(), "hooks": {"per_layer": SITES, "global": GLOBAL_SITES},
            "neuron": f"{SITES['mlp_post']} = "
                      + ("act(x W_gate^T) * (x W_in^T)" if m.is_glu else "act(x W_in^T + b_in)")}

    def human(d):
        typer.echo(f"{d['spec']}  ({d['name']}, {d['source']})")
        typer.echo(f"  layers {d['n_layers']}  d_model {d['d_model']}  d_mlp {d['d_mlp']}  "
                   f"d_vocab {d['d_vocab']}  heads {d['n_heads']}  context {d['n_ctx']}")
        typer.echo(f"  MLP: {'GLU' if d['is_glu'] else 'plain'} ({d['act_fn']}), final norm: {d['final_norm']}, "
                   f"{d['n_neurons']:,} neurons, {d['n_params']:,} parameters, {d['device']} {d['dtype']}")
        typer.echo(f"  neuron activation: {d['neuron']}")
        quirks = [q for q, on in (("norms scale by 1 + w", d["norm_offset"]),
                                  ("MLP and attention outputs are normed before they join the residual",
                                   d["post_norms"]),
                                  (f"logits softcapped at {d['logit_softcap']} (DLA decomposes the pre-cap logit)",
                                   d["logit_softcap"]),
                                  ("prompts start with BOS", d["prepends_bos"])) if on]
        if quirks:
            typer.echo("  architecture: " + "; ".join(quirks))
        typer.echo("  hook names: " + ", ".join(f"{k}={v}" for k, v in SITES.items()))

    emit(data, as_json, human)


@app.command()
def runs(analysis: str | None = typer.Option(None, "--analysis", "-a"),
         check: bool = typer.Option(False, "--check", help="verify every run's files; list the damaged ones"),
         prune: bool = typer.Option(False, "--prune", help="remove the damaged runs (implies --check)"),
         as_json: bool = JSON):
    """List stored runs (from $INTERP_RUNS, default ./runs); --check / --prune find and remove damaged ones."""
    import shutil

    from interp.storage import damaged_runs, list_runs
    from interp.storage.schema import check_name
    from interp.storage.store import removable

    if analysis is not None:
        check_name(analysis)  # it becomes a path: one safe component, checked before anything is read
    if check or prune:
        bad = damaged_runs(analysis=analysis)
        rows = [{"path": p, "problem": why, "removed": False, "kept_because": removable(p) if prune else None}
                for p, why in bad]
        if prune:
            for r in rows:  # what will be removed, said before anything is
                typer.echo(f"{'will remove' if r['kept_because'] is None else 'will keep'}: {r['path']}"
                           + (f" ({r['kept_because']})" if r["kept_because"] else ""), err=True)
            for r in rows:
                if r["kept_because"] is None:
                    shutil.rmtree(r["path"])
                    r["removed"] = True

        def report(rs):
            if not rs:
                typer.echo("every stored run is intact")
            for r in rs:
                state = "removed" if r["removed"] else "damaged, kept" if r["kept_because"] else "damaged"
                why = f" (not removed: {r['kept_because']})" if r["kept_because"] else ""
                typer.echo(f"{state}: {r['path']}: {r['problem']}{why}")

        emit(rows, as_json, report)
        return
    df = list_runs(analysis)
    rows = df.drop(columns=["config"]).to_dict("records") if len(df) else []

    def human(rs):
        if not rs:
            typer.echo("no stored runs")
        for r in rs:
            typer.echo(f"{r['created']}  {r['analysis']:<20} {r['model']:<14} {r['path']}"
                       + ("  (pinned)" if r.get("pinned") else ""))

    emit(rows, as_json, human)


@app.command()
def pin(run: str = typer.Argument(..., help="a run directory or run id (`interp runs`)"),
        off: bool = typer.Option(False, "--off", help="unpin: the newest run of its analysis is used again"),
        as_json: bool = JSON):
    """Pin a run: every look-up of its analysis on its model (the dashboard's pages, the card, `latest`) uses it,
    not the newest, until `interp pin RUN --off`. Kept in the store ($INTERP_RUNS/pins.json)."""
    from interp.storage import pin_run

    out = {**pin_run(run, on=not off), "pinned": not off}
    emit(out, as_json, lambda d: typer.echo(f"{'pinned' if d['pinned'] else 'unpinned'}: {d['analysis']} "
                                            f"{d['run_id']}" + ("" if d["pinned"] else " (the newest is used)")))


@app.command()
def neuron(
    neuron_id: str = typer.Argument(..., metavar="LAYER.INDEX", help="e.g. 29.1066"),
    prompt: str = typer.Option(..., "--prompt", "-p"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """A neuron's activation at every token of a prompt."""
    from interp.tracing import record

    m = load(model, device, dtype)
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
    model: str = typer.Option("smollm2-135m", "--model", "-m",
                              help="pairs only: the model whose tokenizer must line the pairs up (as patch does)"),
    as_json: bool = JSON,
):
    """Validate a prompt set or corpus and summarise it (bad lines are named)."""
    from interp.datasets import load_corpus, load_facts, load_pairs

    if kind == "facts":
        records = [f.to_dict() for f in load_facts(path)]
    elif kind == "pairs":
        from interp.analyses.patching.engine import prepare

        pairs = load_pairs(path)
        prepare(load(model, "cpu", "float32"), pairs)  # equal token lengths, one-token answers: what patch needs
        records = [p.to_dict() for p in pairs]
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


@app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@typing.no_type_check  # typer hands over its bundled click Context, not typer.Context
def run_any(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="an analysis (`interp run list` shows them and their fields)"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
    save: bool = typer.Option(True, help="store the Result under $INTERP_RUNS"),
):
    """Run any analysis by name: `interp run NAME --field value ...` (fields of its Config)."""
    from interp.analyses.base import discover, get_analysis, run

    if name == "list":
        listing = {a.name: {f.name: {"default": f.default, "help": f.metadata.get("help", "")}
                            for f, _ in fields_of(a.config)} for a in sorted(discover().values(), key=lambda a: a.name)}

        def human(d):
            for analysis, fields in d.items():
                typer.echo(f"{analysis}: " + ", ".join(f"--{k.replace('_', '-')} ({v['default']!r})"
                                                       for k, v in fields.items()))

        emit(listing, as_json, human)
        return
    spec = get_analysis(name)
    config = spec.config.from_dict(parse_options(spec.config, list(ctx.args)))  # checked before the model loads
    result = run(name, load(model, device, dtype), config, save=save)

    def human(r):
        typer.echo(f"{r.analysis}: " + ", ".join(f"{k} {v}" for k, v in r.metrics.items()
                                                 if isinstance(v, (int, float, str)))[:2000])
        for note in r.notes:
            typer.echo(f"note: {note}")
        if r.path:
            typer.echo(f"stored at {r.path}")

    emit(result.summary(), as_json, lambda _: human(result))
