"""``interp card`` (a neuron's card, as text, JSON or one HTML file) and ``interp diff`` (two models)."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.commands.common import DEVICE, DTYPE, JSON, MODEL, app, emit, load, output_file
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
    from interp.analyses.neurons.read import dose_response, neuron_card, sweep_values
    from interp.analyses.patching.read import verify_patching
    from interp.storage import load_result

    if html:  # the output file is checked before any work
        output_file("html", html)
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
        card["clamp"].data, card["clamp"].missing = data["sections"]["clamp"]["data"], None
    if verify:
        runs = [r for r in (card["patching"].data or {}).get("runs", []) if r["method"] != "activation"]
        if not runs:
            raise InterpError(f"no stored neuron-level attribution or RelP run covers {card.neuron}: "
                              "`interp patch --method relp --components neurons` first")
        out = verify_patching(m, card.neuron, load_result(runs[0]["path"]))
        data["verify"] = {k: v for k, v in out.items() if k not in ("table", "result")} | {
            "table": out["table"].to_dict("records"), "path": str(out["result"].path)}
    if html:
        from interp.viz.card import export_html

        data["html"] = str(export_html(card, Path(html), clamp=table, clamp_target=clamp or None))

    def human(d):
        typer.echo(f"neuron {d['neuron']} of {d['modelId']} (weights {d['weights_hash']})")
        for key, section in card.sections.items():  # every registered section draws its own line
            typer.echo(f"  {section.title}: {card.text(key)}")
        if "verify" in d:
            v = d["verify"]
            typer.echo(f"  verify ({v['method']}): predicted {v['neuron']['predicted']:+.4f}, activation patching "
                       f"{v['neuron']['activation']:+.4f}; Pearson over {len(v['table'])} neurons {v['pearson']}")
        if "html" in d:
            typer.echo(f"wrote {d['html']}")

    emit(data, as_json, human)


@app.command("diff")
def diff_cmd(
    other: str = typer.Argument(..., help="the model to compare with (same architecture), e.g. an edit's directory"),
    k: int = typer.Option(20, "-k", min=1, help="neurons to list"),
    model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, as_json: bool = JSON,
):
    """Diff two models neuron by neuron: the neurons whose weights (and atlas activations) changed most."""
    from interp.analyses.neurons.read import check_same_shape, diff_models
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
