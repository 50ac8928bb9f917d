"""What every command shares: the app, the model options, output, and commands built from Configs.

``config_command(name, analysis, human)`` registers ``interp <name>`` whose options are
generated from the analysis's Config fields (name, default and help come from the
field; ``flags`` in the field add short or legacy spellings), plus ``--model``,
``--device``, ``--dtype``, ``--json`` and ``--save/--no-save``. ``parse_options`` reads
``--field value`` pairs against the same fields for the generic ``interp run NAME``.
Tuple fields are written as lists: integers as ranges (``0-3,7``), strings as repeated
options or comma-separated values.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from interp.errors import InterpError, dotted, scrub

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="interp: a workbench for the MLP neurons of transformer LMs.")

MODEL = typer.Option("smollm2-135m", "--model", "-m",
                     help="smollm2-135m, tiny-gpt2, tiny-llama, an HF id or a directory")
DEVICE = typer.Option("cpu", "--device", envvar="INTERP_DEVICE", help="cpu, cuda, cuda:1, mps, auto")
DTYPE = typer.Option("float32", "--dtype", envvar="INTERP_DTYPE", help="float32, bfloat16, float16, float64")
JSON = typer.Option(False, "--json", help="print one JSON document on stdout")
COMMON = ("model", "device", "dtype", "as_json", "save")


def strict_json(data: Any) -> str:
    """JSON that strict parsers accept: non-finite numbers become ``null``, listed under ``non_finite``."""
    clean, found = scrub(data)
    if found and isinstance(clean, dict):
        clean["non_finite"] = [dotted(path) for path, _ in found]
    return json.dumps(clean, default=str, allow_nan=False)


def emit(data: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    if as_json:
        sys.stdout.write(strict_json(data) + "\n")
    else:
        human(data)


STRAY_DEVICE = "INTERP_STRAY_DEVICE"


def load(spec: str, device: str, dtype: str):
    """The command's model. With ``$INTERP_STRAY_DEVICE`` set (``meta``: the device-mixing check of
    ``tests/unit/devices``), every tensor made afterwards without a device lands there, so a tensor that
    would be made on the CPU and meet a GPU model's fails on the CPU alone."""
    import torch

    from interp.models import load_model

    stray = os.environ.get(STRAY_DEVICE)
    if stray:
        try:
            torch.device(stray)
        except RuntimeError:
            raise InterpError(f"{STRAY_DEVICE}={stray!r} is not a torch device: set it to meta (the device-mixing "
                              "check) or unset it") from None
    model = load_model(spec, device=device, dtype=dtype)
    if stray:
        torch.set_default_device(stray)
    return model


def parse_layers(text: str) -> tuple[int, ...]:
    """``"0-3,7"`` -> (0, 1, 2, 3, 7); empty -> () meaning every layer."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        try:
            a, _, b = part.partition("-")
            lo, hi = int(a), int(b) if b else int(a)
        except ValueError:
            raise InterpError(f"cannot read {text!r}: write non-negative integers or ranges, e.g. 0-3,7") from None
        if hi < lo:
            raise InterpError(f"the range {part!r} runs backwards: write {hi}-{lo}")
        out += range(lo, hi + 1)
    return tuple(out)


def _kind(tp) -> str:
    """int, float, str, bool, ints (tuple[int, ...]) or strs (tuple[str, ...])."""
    if typing.get_origin(tp) is tuple:
        return "ints" if typing.get_args(tp)[0] is int else "strs"
    return {int: "int", float: "float", str: "str", bool: "bool"}[tp]


def _split(values: list[str]) -> tuple[str, ...]:
    return tuple(v.strip() for text in values for v in text.split(",") if v.strip())


def convert(kind: str, raw, free_text: bool = False):
    """A CLI value (or list of values) as the field's type."""
    if kind == "ints":
        return parse_layers(",".join(raw) if isinstance(raw, list) else raw)
    if kind == "strs":
        raw = raw if isinstance(raw, list) else [raw]
        return tuple(raw) if free_text else _split(raw)
    try:
        return {"int": int, "float": float, "str": str, "bool": _bool}[kind](raw)
    except ValueError:
        raise InterpError(f"cannot read {raw!r} as {kind}") from None


def _bool(raw) -> bool:
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() in ("1", "true", "yes", "on"):
        return True
    if str(raw).lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def fields_of(config_cls) -> list[tuple[dataclasses.Field, str]]:
    hints = typing.get_type_hints(config_cls)
    return [(f, _kind(hints[f.name])) for f in dataclasses.fields(config_cls)]


def _free_text(f: dataclasses.Field) -> bool:
    return not f.metadata.get("split", True)  # values may hold commas (prompts, tokens)


def _parameter(f: dataclasses.Field, kind: str) -> inspect.Parameter:
    name = f.name.replace("_", "-")
    flags = tuple(dict.fromkeys((f"--{name}", *f.metadata.get("flags", ()))))
    help_ = f.metadata.get("help", "")
    default = f.default
    if kind == "bool":
        option = typer.Option(default, f"--{name}/--no-{name}", help=help_)
        return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=bool)
    if kind == "ints":
        option = typer.Option(",".join(map(str, default)), *flags, help=help_)
        return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=str)
    if kind == "strs":
        option = typer.Option(list(default), *flags, help=help_ + ("" if _free_text(f) else " (comma-separated)"))
        return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=list[str])
    annotation = {"int": int, "float": float, "str": str}[kind]
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=typer.Option(default, *flags,
                                                                                          help=help_),
                             annotation=annotation)


def _common() -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    return [inspect.Parameter("model", kw, default=MODEL, annotation=str),
            inspect.Parameter("device", kw, default=DEVICE, annotation=str),
            inspect.Parameter("dtype", kw, default=DTYPE, annotation=str),
            inspect.Parameter("as_json", kw, default=JSON, annotation=bool),
            inspect.Parameter("save", kw, default=typer.Option(True, help="store the Result under $INTERP_RUNS"),
                              annotation=bool)]


def output_file(flag: str, path: str) -> Path:
    """An output file named by ``--flag``, checked before any work: a path in an existing folder."""
    target = Path(path)
    if target.is_dir() or not target.parent.is_dir():
        raise InterpError(f"--{flag} {path!r}: give a file path in an existing folder"
                          + (" (that is a folder)" if target.is_dir() else f" ({target.parent} does not exist)"))
    return target


def config_command(name: str, analysis: str, human: Callable, *, cached: bool = False,
                   extra: Callable | None = None, help: str | None = None,  # noqa: A002
                   files: dict[str, str] | None = None, write: Callable | None = None):
    """Register ``interp <name>``: options from ``analysis``'s Config, then run (or ``cached_run``) it.

    ``extra(result)`` adds to the JSON document; ``human(result)`` prints the readable summary.
    ``files``: output-file options (``{name: help}``), checked before the work; ``write(result, model,
    {name: Path})`` writes those given and returns what to add to the JSON document."""
    from interp.analyses.base import ESTIMATORS, cached_run, get_analysis, run

    spec = get_analysis(analysis)
    fields = fields_of(spec.config)
    params = [_parameter(f, kind) for f, kind in fields] + _common()
    for key, text in (files or {}).items():
        params.append(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, annotation=str,
                                        default=typer.Option("", f"--{key}", help=text)))
    if analysis in ESTIMATORS:
        dry = typer.Option(False, "--dry-run", help="print the preflight estimate (passes, time, memory) and stop")
        params.append(inspect.Parameter("dry_run", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=dry))

    def command(**kwargs):
        options = {f.name: convert(kind, kwargs[f.name], _free_text(f)) if kind in ("ints", "strs")
                   else kwargs[f.name] for f, kind in fields}
        config = spec.config.from_dict(options)  # every declared check, before the model loads
        outputs = {key: output_file(key, kwargs[key]) for key in files or {} if kwargs[key]}
        model = load(kwargs["model"], kwargs["device"], kwargs["dtype"])
        if kwargs.get("dry_run"):
            return _dry_run(analysis, model, config, cached, kwargs["as_json"])
        result = cached_run(analysis, model, config) if cached else run(analysis, model, config,
                                                                        save=kwargs["save"])
        data = result.summary() | (extra(result) if extra else {})
        if outputs:
            data |= write(result, model, outputs)
        emit(data, kwargs["as_json"], lambda _: human(result))

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = help or (spec.doc.splitlines()[0] if spec.doc else analysis)
    command.__name__ = name.replace("-", "_")
    app.command(name)(command)
    return command


def _dry_run(analysis: str, model, config, cached: bool, as_json: bool) -> None:
    from interp.analyses.base import estimate
    from interp.storage import find_runs

    est = estimate(analysis, model, config)
    if cached and find_runs(analysis, config, model.weights_hash):
        est.notes.append("a stored Result matches: running this would reuse it and take no time")
    emit(est.to_dict(), as_json, lambda _: [typer.echo(line) for line in est.lines()])


def parse_options(config_cls, args: list[str]) -> dict:
    """``--field value`` / ``--field=value`` / ``--flag`` / ``--no-flag`` pairs as Config options."""
    fields = {f.name: (f, kind) for f, kind in fields_of(config_cls)}
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise InterpError(f"unexpected argument {arg!r}: give options as --field value")
        key, eq, value = arg[2:].partition("=")
        name = key.replace("-", "_")
        negated = name.startswith("no_") and name[3:] in fields and fields[name[3:]][1] == "bool"
        if negated or (name in fields and fields[name][1] == "bool" and not eq):
            out[name[3:] if negated else name] = not negated
            i += 1
            continue
        if name not in fields:
            raise InterpError(f"unknown option --{key} for {config_cls.__name__}: choose from "
                              + ", ".join(f"--{n.replace('_', '-')}" for n in fields))
        if not eq:
            if i + 1 >= len(args):
                raise InterpError(f"--{key} needs a value")
            value, i = args[i + 1], i + 1
        f, kind = fields[name]
        out[name] = convert(kind, value, _free_text(f))
        i += 1
    return out
