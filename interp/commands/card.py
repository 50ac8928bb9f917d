"""``interp card`` (a neuron's card, as text, JSON or one HTML file) and ``interp diff`` (two models)."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.commands.common import DEVICE, DTYPE, JSON, MODEL, app, emit, load
from interp.errors import InterpError


def parse_values(text: str) -> tuple[float, ...] | None:
    """``"-20,0,20"`` -> (-20.0, 0.0, 20.0); empty -> None (the default sweep)."""
    if not text.strip():
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InterpError(f"--values must be comma-separated numbers, e.g. -20,0,20; got {text!r}") from None


@app.command("card")
def card_cmd(
    neuron: str = typer.Argument(..., help="LAYER.INDEX, e.g. 29.808"),
    html: str = typer.Option("", "--html", help="also write the card as one self-contained HTML file (a path)"),
    clamp: str = typer.Option("", "--clamp", help="run the dose-response for this target token (e.g. ' London')"),
    values: str = typer.Option("", "--values", help="clamp values for --clamp (default: ±4x the atlas peak, 9)"),
    verify: bool = typer.Option(False, "--verify", help="check the newest cheap patching score by activation "
                                "patching of this neuron and its layer's top 5"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """A neuron's card: what every stored analysis says about it (and what to run for the rest)."""
    from interp.analyses.neurons.card import neuron_card, verify_patching
    from interp.analyses.neurons.clamping import dose_response, sweep_values

    m = load(model, device, dtype)
    card = neuron_card(m, neuron)
    data = card.to_dict()
    table = None
    if clamp:
        act = card["activations"].data
        sweep = parse_values(values) or sweep_values(act["stats"]["max_abs"] if act else 1.0)
        table = dose_response(m, [card.neuron], clamp, sweep)
        data["sections"]["clamp"].update(available=True, missing=None,
                                         data={"target": clamp, "sweep": table.to_dict("records")})
    if verify:
        runs = [r for r in (card["patching"].data or {}).get("runs", []) if r["method"] != "activation"]
        if not runs:
            raise InterpError(f"no stored neuron-level attribution or RelP run covers {card.neuron}: "
                              "`interp patch --method relp --components neurons` first")
        out = verify_patching(m, card.neuron, load_stored(runs[0]["path"]))
        data["verify"] = {k: v for k, v in out.items() if k not in ("table", "result")} | {
            "table": out["table"].to_dict("records"), "path": str(out["result"].path)}
    if html:
        from interp.viz.card import export_html

        data["html"] = str(export_html(card, Path(html), clamp=table, clamp_target=clamp or None))

    def human(d):
        typer.echo(f"neuron {d['neuron']} of {d['modelId']} (weights {d['weights_hash']})")
        for key, sec in d["sections"].items():
            if not sec["available"]:
                typer.echo(f"  {sec['title']}: not computed yet: {sec['missing']}")
                continue
            typer.echo(f"  {sec['title']}: {summary(key, sec['data'])}")
        if "verify" in d:
            v = d["verify"]
            typer.echo(f"  verify ({v['method']}): predicted {v['neuron']['predicted']:+.4f}, activation patching "
                       f"{v['neuron']['activation']:+.4f}; Pearson over {len(v['table'])} neurons {v['pearson']}")
        if "html" in d:
            typer.echo(f"wrote {d['html']}")

    emit(data, as_json, human)


def load_stored(path: str):
    from interp.storage import load_result

    return load_result(path)


def summary(key: str, d: dict) -> str:
    """One line per section for the terminal."""
    if key == "identity":
        return ", ".join(f"|{s}| {n['value']:.3f} ({n['ratio']:.2f}x layer median)" for s, n in d["norms"].items())
    if key == "decoding":
        return f"promotes ({d['promoted_side']}) " + " ".join(repr(t["token"]) for t in d["promoted"][:8])
    if key == "activations":
        s = d["stats"]
        dens = f"{s['density']:.1%}" if s["density"] is not None else "n/a"
        quad = ""
        if "quadrants" in d:
            quad = "; quadrants " + " ".join(f"{n} {q['share']:.0%}" for n, q in d["quadrants"].items())
        return f"max {s['max']:+.2f} min {s['min']:+.2f} mean {s['mean']:+.3f} density {dens}{quad}"
    if key == "patching":
        return "; ".join(f"{r['method']} {r['score']:+.4f} (rank {r['rank']}/{r['of']})" for r in d["runs"])
    if key == "factual":
        return "; ".join(f"mean DLA {e['mean_dla']:+.4f} (rank {e['rank']}/{e['of']})" for e in d["sets"]) or \
            f"factual fix effect {d['fixes'][0]['mean_effect']:+.4f}"
    if key == "tracing":
        r = d["runs"][0]
        return f"layer indirect effect {r['effect']:+.3f} (rank {r['rank']}/{r['of']})"
    if key == "unlearning":
        return "; ".join(f"{e['variant']}: " + ", ".join(f"{c} {e[c]:.2%}" for c in e if c.startswith("d_"))
                         for e in d["edits"])
    if key == "bigram":
        r = d["runs"][0]
        return ", ".join(f"{p} kept {r[p]['kept']:.1%}" for p in ("gate", "up", "down") if p in r)
    if key == "clamp":
        return f"dose-response for {d['target']!r} over {len(d['sweep'])} values"
    return ""


@app.command("diff")
def diff_cmd(
    other: str = typer.Argument(..., help="the model to compare with (same architecture), e.g. an edit's directory"),
    k: int = typer.Option(20, "-k", min=1, help="neurons to list"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """Diff two models neuron by neuron: the neurons whose weights (and atlas activations) changed most."""
    from interp.analyses.neurons.diff import check_same_shape, diff_models
    from interp.storage import load_result, newest_run

    a = load(model, device, dtype)
    b = load(other, device, dtype)
    check_same_shape(a, b)
    atlases = [newest_run("neuron_atlas", m.weights_hash) for m in (a, b)]
    table = diff_models(a, b, *(load_result(p) if p else None for p in atlases), k=k)
    rows = table.to_dict("records")

    def human(d):
        typer.echo(f"{d['a']} -> {d['b']}: the {len(d['neurons'])} neurons that changed most "
                   "(relative weight change; `interp card L.N -m ...` opens one)")
        for r in d["neurons"]:
            parts = " ".join(f"{c} {r[c]:.2%}" for c in r if c.startswith("d_") and r[c] == r[c])
            typer.echo(f"  neuron {r['layer']}.{r['neuron']:<6} {parts}")

    emit({"a": a.spec, "b": b.spec, "neurons": rows}, as_json, human)
