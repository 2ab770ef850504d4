"""Each algorithm's inputs as ONE JSON Schema (draft 2020-12), built from its registration:
the OGC input descriptions of a CWL package or a built-in (``spec.ogc["inputs"]``), else
the declared inputs of a MAAP / ADE YAML (``data_type`` → JSON type). Also: reading
OpenAPI 3.0 schema forms as JSON Schema, and turning obviously meant strings into the
declared type (``"5"`` for an integer: WPS and the command line have only strings).

Schemas are normalised for validation: ``nullable`` and boolean ``exclusiveMinimum``
(OpenAPI 3.0 / draft 4) become 2020-12 forms, and ``oneOf`` is read as ``anyOf`` (CWL
unions such as ``int | float`` would otherwise reject every integer).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from opendps.registry.spec import AlgorithmSpec, InputSpec

SCALAR_TYPES = ["string", "number", "integer", "boolean"]


def value_schema(item: InputSpec) -> dict[str, Any]:
    """JSON Schema of one value of a MAAP/ADE-declared input (also its OGC description)."""
    data_type = (item.data_type or "").lower()
    if item.kind == "file":  # a URL or a link; several with maxOccurs "unbounded"
        schema: dict[str, Any] = {"type": "string", "format": "uri"}
    elif item.is_integer:
        schema = {"type": "integer"}
    elif item.is_number:
        schema = {"type": "number"}
    elif data_type in {"bool", "boolean"}:
        schema = {"type": "boolean"}
    elif data_type in {"str", "string"}:
        schema = {"type": "string"}
    elif item.kind == "config":
        schema = {}
    else:
        schema = {"type": "string"}
    if item.default is not None:
        schema["default"] = item.default
    return schema


def described_inputs(spec: AlgorithmSpec) -> dict[str, dict[str, Any]]:
    """The OGC input descriptions: from the package (CWL, built-ins) or from the inputs."""
    described = (spec.ogc or {}).get("inputs")
    if isinstance(described, dict):
        return described
    return {
        item.name: {
            "title": item.name,
            "description": item.description,
            "schema": value_schema(item),
            "minOccurs": 1 if item.mandatory else 0,
            "maxOccurs": "unbounded" if item.kind == "file" else 1,
            "x-dps-kind": item.kind,
        }
        for item in spec.inputs
    }


def _max_occurs(description: Mapping[str, Any]) -> int | None:
    """None: unbounded."""
    value = description.get("maxOccurs", 1)
    if value == "unbounded":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1


def property_schema(spec: AlgorithmSpec, name: str, description: Mapping[str, Any]) -> Any:
    """The schema of input ``name``'s value: one value, or a list of them when it may occur
    more than once. MAAP positional inputs without a type take any scalar."""
    raw = description.get("schema")
    one = normalise_schema(raw if isinstance(raw, dict) else {})
    declared = spec.input(name)
    if declared is not None and "x-dps-kind" in description:
        if declared.kind == "positional" and not declared.data_type:
            one = {"type": SCALAR_TYPES}
        if declared.kind == "file":
            one = {"type": "string"}
    limit = _max_occurs(description)
    if limit is not None and limit <= 1:
        return one
    many: dict[str, Any] = {"type": "array", "items": one}
    if limit is not None:
        many["maxItems"] = limit
    return {"anyOf": [one, many]}


def inputs_schema(spec: AlgorithmSpec) -> dict[str, Any]:
    """The algorithm's inputs as one JSON Schema (an object of its inputs)."""
    described = described_inputs(spec)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            name: property_schema(spec, name, d)
            for name, d in described.items()
            if isinstance(d, Mapping)
        },
        "required": [name for name in described if mandatory(spec, name, described[name])],
        "additionalProperties": False,
    }


def normalise_schema(schema: Any) -> Any:
    """OpenAPI 3.0 / draft-4 forms → JSON Schema 2020-12; ``oneOf`` read as ``anyOf``."""
    if isinstance(schema, list):
        return [normalise_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: normalise_schema(v) for k, v in schema.items() if k != "nullable"}
    if "oneOf" in out:
        out["anyOf"] = out.pop("oneOf") + out.pop("anyOf", [])
    for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if out.get(flag) is True and bound in out:
            out[flag] = out.pop(bound)
        elif isinstance(out.get(flag), bool):
            del out[flag]
    if schema.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    return out


def mandatory(spec: AlgorithmSpec, name: str, description: Mapping[str, Any]) -> bool:
    declared = spec.input(name)
    if declared is not None and "x-dps-kind" in description:
        return declared.mandatory
    schema = description.get("schema") if isinstance(description.get("schema"), dict) else {}
    try:
        low = int(description.get("minOccurs", 1) or 0)
    except (TypeError, ValueError):
        low = 1
    return low > 0 and "default" not in schema


# -- coercion -----------------------------------------------------------------------------------


def _types(schema: Any) -> set[str]:
    """Every JSON type some alternative of the schema takes (``"any"`` when unconstrained)."""
    if not isinstance(schema, dict):
        return {"any"}
    parts = [p for p in schema.get("anyOf", []) + schema.get("allOf", []) if isinstance(p, dict)]
    found: set[str] = set()
    wanted = schema.get("type")
    if wanted is not None:
        found |= set(wanted if isinstance(wanted, list) else [wanted])
    elif not parts:
        found.add("any")
    for part in parts:
        found |= _types(part)
    if schema.get("anyOf") and wanted is None:
        found.discard("any")
    return found


def coerce(schema: Any, value: Any) -> Any:
    """Scalars in an obviously intended form: ``"5"`` for an integer, 5 for a string."""
    types = _types(schema)
    if "any" in types:
        return value
    if isinstance(value, str) and "string" not in types:
        text = value.strip()
        if {"integer", "number"} & types and re.fullmatch(r"[+-]?\d{1,30}", text):
            return int(text)
        if "number" in types:
            try:
                number = float(text)
            except ValueError:
                return value
            return number if math.isfinite(number) else value
        if "boolean" in types and text.lower() in ("true", "false"):
            return text.lower() == "true"
    if isinstance(value, float) and value.is_integer() and types <= {"integer"}:
        return int(value)
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and not {"number", "integer"} & types
        and "string" in types
    ):
        return str(value)
    if isinstance(value, list) and "array" in types:
        items = _array_items(schema)
        if items is not None:
            return [coerce(items, v) for v in value]
    return value


def _array_items(schema: Any) -> Any:
    for part in [schema, *schema.get("anyOf", [])]:
        if isinstance(part, dict) and part.get("type") == "array" and "items" in part:
            return part["items"]
    return None
