"""JSONL loading with schema validation; the schema is the record's dataclass.

Every record must be a JSON object with each field of the dataclass present and of
its type (strings must be non-empty); extra fields are kept. A bad line raises
``InterpError`` naming the file, the line number and the field.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

from interp.errors import InterpError

Schema = dict[str, type]


@dataclasses.dataclass(frozen=True)
class EmptyRecord:
    """Any JSON object (to look at a file before knowing its schema)."""


def schema_of(record_type) -> Schema:
    """Field name -> type of a dataclass (the one declaration of a JSONL schema)."""
    hints = typing.get_type_hints(record_type)
    return {f.name: hints[f.name] for f in dataclasses.fields(record_type)}


def read_jsonl(path: str | Path, record_type, what: str = "record") -> list[dict]:
    """The records of ``path``, each checked against the dataclass ``record_type``."""
    schema = schema_of(record_type)
    path = Path(path)
    if not path.is_file():
        raise InterpError(f"{what} file {str(path)!r} "
                          + ("is a folder: give a .jsonl file" if path.is_dir() else "does not exist"))
    records = []
    with open(path, encoding="utf-8-sig", errors="strict") as f:
        try:
            lines = list(f)
        except UnicodeDecodeError as exc:
            raise InterpError(f"{path}: not UTF-8 text (byte offset {exc.start})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        records.append(validate(line, schema, f"{path}:{number}"))
    if not records:
        raise InterpError(f"{path}: no {what}s found (the file is empty)")
    return records


def validate(line: str, schema: Schema, where: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InterpError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise InterpError(f"{where}: nested too deeply to read (a record is one flat JSON object)") from None
    if not isinstance(record, dict):
        raise InterpError(f"{where}: expected a JSON object with fields {sorted(schema)}")
    for field, kind in schema.items():
        if field not in record:
            raise InterpError(f"{where}: missing field {field!r} (needs {sorted(schema)})")
        value = record[field]
        if not isinstance(value, kind) or (kind is str and not value.strip()):
            raise InterpError(f"{where}: field {field!r} must be a non-empty {kind.__name__}, "
                              f"got {value!r}")
    return record
