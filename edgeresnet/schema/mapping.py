"""The one mapping of the schema's dataclasses to and from JSON.

The mapping is by field, in field order, so a document written from a dataclass has
the keys (and order) its file has always had: a field marked `omit_none` is left out
while it is None, a field marked `spread` is a mapping whose items sit at that place
among the others (open-ended keys such as a calibration method's own options), and
`class_by` picks a field's dataclass from a sibling's value (a backend's build details
by its quant_profile).

A document class names its schema in the default of its `schema` field; a document
naming another one is refused on read. Standard library only, so the light commands
(verify) stay light.
"""

from __future__ import annotations

import json
import math
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, Union

from edgeresnet.schema.files import REPORT_SCHEMA

T = TypeVar("T")

# Where `schema` sits in each document's JSON: first, as the files have it.
_FIRST = ("schema",)


class SchemaError(ValueError):
    """A document that does not map onto its dataclass (wrong schema, a missing or mistyped field)."""


def omit_none(default: Any = None) -> Any:
    return field(default=default, metadata={"omit_none": True})


def spread() -> Any:
    return field(default_factory=dict, metadata={"spread": True})


def class_by(sibling: str, choose: Callable[[str], type]) -> dict[str, Any]:
    """The metadata of a field whose dataclass is `choose(str(value of the sibling field))`."""
    return {"class_by": (sibling, choose)}


def to_json(value: Any) -> Any:
    """A dataclass (or a list/dict of them) as JSON-ready values, keys in field order."""
    if is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        ordered = sorted(fields(value), key=lambda f: f.name not in _FIRST)  # schema first
        for f in ordered:
            item = getattr(value, f.name)
            if f.metadata.get("omit_none") and item is None:
                continue
            if f.metadata.get("spread"):
                out.update(to_json(item))
                continue
            out[f.name] = to_json(item)
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))


_SCALARS = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}


def _scalar(hint: type, data: Any, where: str) -> Any:
    """`data` when it is a JSON value of the scalar type `hint` (an integer passes for a number, a bool for neither)."""
    accepted = (int, float) if hint is float else (hint,)
    if isinstance(data, accepted) and not (isinstance(data, bool) and hint is not bool):
        return data
    raise SchemaError(f"{where}: {_SCALARS[hint]} was expected, not {json.dumps(data)[:40]}")


def _convert(hint: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        if data is None:
            return None
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], data, where) if len(options) == 1 else data
    if isinstance(hint, type) and is_dataclass(hint):
        return from_json(hint, data, where)
    if hint in _SCALARS:
        return _scalar(hint, data, where)
    if origin is list and data is not None:
        (item,) = typing.get_args(hint)
        if not isinstance(data, list):
            raise SchemaError(f"{where}: a list was expected, not {type(data).__name__}")
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(data)]
    if (origin is dict or hint is dict) and data is not None:
        if not isinstance(data, dict):
            raise SchemaError(f"{where}: an object was expected, not {type(data).__name__}")
        value_hint = typing.get_args(hint)[1] if typing.get_args(hint) else Any
        return {k: _convert(value_hint, v, f"{where}.{k}") for k, v in data.items()}
    return data


def from_json(cls: type[T], data: Any, where: str = "") -> T:
    """`data` (parsed JSON) as a `cls`, nested dataclasses included; a missing required field is a SchemaError."""
    if not isinstance(data, dict):
        raise SchemaError(f"{where or cls.__name__}: an object was expected, not {type(data).__name__}")
    hints = _hints(cls)
    claimed = {f.name for f in fields(cls) if not f.metadata.get("spread")}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        key = f.name
        if f.metadata.get("spread"):
            values[f.name] = {k: v for k, v in data.items() if k not in claimed}
        elif key in data:
            hint = hints[f.name]
            if "class_by" in f.metadata:
                sibling, choose = f.metadata["class_by"]
                hint = choose(str(data.get(sibling)))
            values[f.name] = _convert(hint, data[key], f"{where}.{key}" if where else key)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise SchemaError(f"{where or cls.__name__} lacks {key}")
    return cls(**values)


def schema_of(data: Any) -> str | None:
    """The schema a parsed document names, if it is an object that names one."""
    return data.get("schema") if isinstance(data, dict) else None


def expected_schema(cls: type) -> str:
    """The schema a document class names (its `schema` field's default)."""
    for f in fields(cls):
        if f.name == "schema" and isinstance(f.default, str):
            return f.default
    raise TypeError(f"{cls.__name__} is not a document class (no schema field)")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text} is out of range")
    return number


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def loads(text: str | bytes, source: str | Path, non_finite: bool = False) -> Any:
    """Parsed JSON, refusing what Python's json module takes but JSON does not: NaN, Infinity, and numbers
    too large for a float (unless `non_finite`); SchemaError names `source`."""
    try:
        if non_finite:
            return json.loads(text)
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{source}: not valid JSON ({exc})") from None
    except (ValueError, RecursionError) as exc:
        raise SchemaError(f"{source}: not valid JSON ({str(exc) or type(exc).__name__})") from None


def parse(cls: type[T], text: str | bytes, source: str | Path) -> T:
    """A document of `cls`'s schema from its JSON text; SchemaError names `source` when it is not one."""
    expected = expected_schema(cls)
    # A report.json may hold NaN for the per-class top-1 of a class without evaluation images (the first
    # writers of this schema put it so; the current one writes null): still read.
    data = loads(text, source, non_finite=expected == REPORT_SCHEMA)
    schema = schema_of(data)
    if schema != expected:
        raise SchemaError(f"{source}: unknown schema {schema!r} (expected {expected})")
    try:
        return from_json(cls, data)
    except SchemaError as exc:
        raise SchemaError(f"{source}: {exc}") from None
    except TypeError as exc:
        raise SchemaError(f"{source}: {exc}") from None


def read(cls: type[T], path: str | Path) -> T:
    path = Path(path)
    return parse(cls, path.read_bytes(), path)


def dumps(document: Any) -> str:
    """The JSON text of a document as the artifact files hold it (two-space indent, a final newline)."""
    return json.dumps(to_json(document), indent=2) + "\n"


def write(document: Any, path: str | Path) -> None:
    Path(path).write_text(dumps(document))
