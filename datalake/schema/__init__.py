"""The JSON Schema of the Sample record, generated from the dataclasses in ``datalake.sample``.

The schema is versioned (``sample.v<N>.json`` beside this file, ``N = SCHEMA_VERSION``) and
committed, so other languages and tools can validate records without importing mmlake. A
test regenerates it and compares it with the committed file: a change to the record is then
a deliberate, reviewed change of both. ``Sample.from_json`` is stricter than the schema (it
checks coordinates against media sizes and placeholders against annotations, which JSON
Schema cannot express).

Regenerate with ``mmlake datalake schema --write``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from datalake.sample import (
    GEOMETRY_FIELD,
    SCHEMA_VERSION,
    Annotation,
    Media,
    MediaPart,
    Message,
    Sample,
    Source,
    TextPart,
)

__all__ = ["generate_schema", "schema_path", "load_schema"]

_DEFS = {"Source": Source, "Media": Media, "TextPart": TextPart, "MediaPart": MediaPart,
         "Message": Message, "Annotation": Annotation}
_NAMES = {cls: name for name, cls in _DEFS.items()}


def schema_path(version: int = SCHEMA_VERSION) -> Path:
    return Path(__file__).with_name(f"sample.v{version}.json")


def load_schema(version: int = SCHEMA_VERSION) -> dict[str, Any]:
    return json.loads(schema_path(version).read_text())


def _type_schema(tp: Any) -> dict[str, Any]:
    origin = get_origin(tp)
    if tp is str:
        return {"type": "string"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is bytes:
        raise TypeError("bytes are not part of the JSON record")
    if tp in _NAMES:
        return {"$ref": f"#/$defs/{_NAMES[tp]}"}
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _type_schema(args[0])
        return {"oneOf": [_type_schema(a) for a in args]}
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _type_schema(args[0])}
        return {"type": "array", "prefixItems": [_type_schema(a) for a in args],
                "minItems": len(args), "maxItems": len(args)}
    if origin in (Mapping, dict) or tp is Any:
        return {"type": "object"}
    if origin is typing.Union:  # pragma: no cover - older typing forms
        return _type_schema(get_args(tp)[0])
    raise TypeError(f"no JSON Schema mapping for {tp!r}")


def _is_optional(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)


def _object_schema(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("json", True) is False:
            continue
        props[f.name] = _type_schema(hints[f.name])
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if not has_default and not _is_optional(hints[f.name]):
            required.append(f.name)
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def generate_schema() -> dict[str, Any]:
    """Build the JSON Schema (draft 2020-12) of the record from the dataclasses."""
    defs = {name: _object_schema(cls) for name, cls in _DEFS.items()}
    defs["Annotation"]["allOf"] = [
        {"if": {"properties": {"type": {"const": t}}},
         "then": {"required": [geo]} if geo else {"required": ["t0", "t1"]}}
        for t, geo in GEOMETRY_FIELD.items()
    ]
    from datalake.actions import ACTIONS

    defs["Annotation"]["properties"]["action"] = {"enum": list(ACTIONS)}
    root = _object_schema(Sample)
    root["properties"] = {"schema": {"const": SCHEMA_VERSION}, **root["properties"]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://mmlake.dev/schema/sample.v{SCHEMA_VERSION}.json",
        "title": "mmlake Sample record",
        "description": "One training example: the <key>.json member of a shard. Geometry is in pixel "
                       "coordinates of the original media; text refers to it by {box:i}/{point:i}/"
                       "{polygon:i}/{action:i} placeholders.",
        **root,
        "$defs": defs,
    }
