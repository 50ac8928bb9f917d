"""The schema of a stored run's ``result.json``, checked at the one place it is read (``read_meta``).

A document that parses but holds a wrong-typed field (provenance a list, a ``files`` entry that is not
``[size, sha256]``) or a name that would become a path outside the run (a table called ``../x``) is a
damaged run: ``interp runs --check`` lists it and no command trusts it. Names that become paths are
confined here, once: analysis names and run ids are one path component of safe characters, table and file
names stay inside the run's directory.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator

NAME = r"^[a-z][a-z0-9_]{0,63}$"  # an analysis name: one path component
RUN_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"  # a run id: one path component, never '..'
SHA256 = r"^[0-9a-f]{64}$"


class Provenance(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())
    model: StrictStr | None = None
    weights_hash: StrictStr | None = None
    created: StrictStr | None = None
    analysis_version: StrictInt | None = None


def _inside(name: str) -> str:
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{name!r} is not a path inside the run")
    return name


class Meta(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: StrictInt = 1
    analysis: Annotated[StrictStr, Field(pattern=NAME)]
    run_id: Annotated[StrictStr, Field(pattern=RUN_ID)]
    config: dict[str, Any]
    provenance: Provenance
    metrics: dict[str, Any]
    notes: list[StrictStr] = []
    tables: list[Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")]]
    tensors: list[StrictStr]
    non_finite: list[tuple[list[StrictStr | StrictInt], StrictStr]] = []
    files: dict[StrictStr, tuple[StrictInt, Annotated[StrictStr, Field(pattern=SHA256)]]] | None = None

    @field_validator("files")
    @classmethod
    def _files_inside(cls, files):
        for name in files or {}:
            _inside(name)
        return files

    @field_validator("tables")
    @classmethod
    def _no_dots(cls, tables):
        for name in tables:
            if name in (".", "..") or name.startswith("."):
                raise ValueError(f"table name {name!r}")
        return tables


def problem(doc: object) -> str | None:
    """What is wrong with a parsed ``result.json`` document (None: nothing), in one line."""
    if not isinstance(doc, dict):
        return f"result.json holds a {type(doc).__name__}, not an object"
    missing = {"analysis", "run_id", "config", "provenance", "metrics", "tables", "tensors"} - set(doc)
    if missing:
        return f"result.json lacks {sorted(missing)}"
    try:
        Meta.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "the document"
        return f"result.json field {where!r} is invalid ({err['msg']})"
    for path, _ in doc.get("non_finite", []):  # each names a place that exists
        node = doc
        for key in path:
            if isinstance(node, dict) and isinstance(key, str) and key in node:
                node = node[key]
            elif isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node):
                node = node[key]
            else:
                return f"result.json's non_finite entry {path!r} names no stored value"
    return None


def check_name(name: str, what: str = "analysis") -> str:
    """An analysis name (or run id, ``what="run"``) that will become one path component, or an InterpError."""
    from interp.errors import InterpError

    pattern = NAME if what == "analysis" else RUN_ID
    if not isinstance(name, str) or not re.fullmatch(pattern, name):
        allowed = "lower-case letters, digits and _" if what == "analysis" else "letters, digits, '.', '-' and '_'"
        raise InterpError(f"{what} {name!r} is not a valid {what} name ({allowed}, one path component): see "
                          "`interp runs`")
    return name
