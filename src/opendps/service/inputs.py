"""The one input model: each algorithm's inputs are ONE JSON Schema, checked with the
``jsonschema`` library for every dialect (OGC, MAAP OGC-JSON, MAAP WPS, batches, CLI).

The schema comes from the registration: the OGC input descriptions a CWL package or a
built-in carries (``spec.ogc["inputs"]``), else the declared inputs of a MAAP / ADE YAML
(``data_type`` → JSON type). Dialects only decode their value encodings (OGC links and
qualified values, WPS strings) and hand plain values to :func:`normalise_inputs`, which

1. refuses unknown names and missing mandatory inputs (DESIGN §9 "Required inputs"),
2. turns strings into the declared type where that is obviously meant (``"5"`` for an
   integer: WPS and the command line only have strings), and numbers into strings,
3. validates every value against its input's schema, naming the input on error,
4. parses file inputs with the one URL parser and applies the URL policy.

Schemas are normalised for validation: OpenAPI 3.0 forms (``nullable``, boolean
``exclusiveMinimum``) become JSON Schema 2020-12, and ``oneOf`` is read as ``anyOf``
(CWL unions such as ``int | float`` would otherwise reject every integer).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from opendps.errors import InvalidInput
from opendps.net.safety import UrlPolicy
from opendps.net.urls import parse_urls
from opendps.registry.spec import AlgorithmSpec, InputSpec

SCALAR_TYPES = ["string", "number", "integer", "boolean"]
MAX_MESSAGE = 300  # characters of a validation message (values can be long)


# -- the schema ---------------------------------------------------------------------------------


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
        "required": [name for name in described if _mandatory(spec, name, described[name])],
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


def _describe_error(validator: Any, value: Any, where: str) -> str | None:
    try:
        if validator.is_valid(value):
            return None
        error = best_match(validator.iter_errors(value))
    except jsonschema.exceptions.SchemaError as exc:  # a registration's own bad schema
        return f"{where}: the process declares an unusable schema ({exc.message[:100]})"
    except RecursionError:
        return f"{where}: the value is nested too deeply"
    if error is None:
        return None
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    message = error.message
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "…"
    return f"{where}{path}: {message}"


def validation_error(schema: Any, value: Any, where: str) -> str | None:
    """Why ``value`` does not satisfy ``schema`` (``where``: the input's name), or None."""
    return _describe_error(jsonschema.Draft202012Validator(schema), value, where)


@dataclass(frozen=True)
class _Input:
    name: str
    kind: str
    mandatory: bool
    default: Any
    schema: Any
    validator: Any


@dataclass(frozen=True)
class InputModel:
    """An algorithm's inputs compiled once: the schema and a validator per input."""

    process_id: str
    inputs: tuple[_Input, ...]

    @classmethod
    def of(cls, spec: AlgorithmSpec) -> InputModel:
        # Keyed by the spec's content: a 100,000-job batch compiles its schema once.
        return _compiled(spec.model_dump_json())

    @property
    def names(self) -> list[str]:
        return [i.name for i in self.inputs]


@lru_cache(maxsize=128)
def _compiled(spec_json: str) -> InputModel:
    spec = AlgorithmSpec.model_validate_json(spec_json)
    described = described_inputs(spec)
    properties = inputs_schema(spec)["properties"]
    entries = []
    for name, description in described.items():
        declared = spec.input(name)
        default = declared.default if declared is not None else None
        if default is None and isinstance(description.get("schema"), dict):
            default = description["schema"].get("default")
        schema = properties.get(name, {})
        entries.append(
            _Input(
                name=name,
                kind=declared.kind if declared is not None else "config",
                mandatory=_mandatory(spec, name, description),
                default=default,
                schema=schema,
                validator=jsonschema.Draft202012Validator(schema),
            )
        )
    return InputModel(spec.process_id, tuple(entries))


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


# -- validation ---------------------------------------------------------------------------------


def _mandatory(spec: AlgorithmSpec, name: str, description: Mapping[str, Any]) -> bool:
    declared = spec.input(name)
    if declared is not None and "x-dps-kind" in description:
        return declared.mandatory
    schema = description.get("schema") if isinstance(description.get("schema"), dict) else {}
    try:
        low = int(description.get("minOccurs", 1) or 0)
    except (TypeError, ValueError):
        low = 1
    return low > 0 and "default" not in schema


def _check_finite(name: str, value: Any) -> None:
    """inf/nan (``1e400`` in JSON) cannot be stored as JSON: refuse them here."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise InvalidInput(f"input {name!r}: {item!r} is not a finite number")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def normalise_inputs(
    spec: AlgorithmSpec, given: Mapping[str, Any] | None, policy: UrlPolicy | None = None
) -> dict[str, Any]:
    """Check names, presence and types; fill in defaults. Raises InvalidInput naming the input."""
    given = dict(given or {})
    policy = policy or UrlPolicy()
    model = InputModel.of(spec)
    unknown = sorted(str(u) for u in set(given) - set(model.names))
    if unknown:
        choices = ", ".join(sorted(model.names)) or "none"
        raise InvalidInput(
            f"unknown input(s) {', '.join(repr(u) for u in unknown)}; "
            f"{spec.process_id} takes: {choices}"
        )
    values: dict[str, Any] = {}
    for item in model.inputs:
        name, kind = item.name, item.kind
        value = given.get(name)
        if value is None or (value == "" and kind == "file"):
            if item.mandatory:
                raise InvalidInput(f"missing required input {name!r}")
            if item.default is None:
                values[name] = "" if kind == "positional" else None
                continue
            value = copy.deepcopy(item.default)
        if kind == "positional" and isinstance(value, dict | list):
            raise InvalidInput(
                f"input {name!r} is positional (a command-line argument): give a single value"
            )
        _check_finite(name, value)
        if kind == "file":
            values[name] = _file_value(name, value, policy)
            continue
        if value == "" and kind == "positional":  # an empty string is a value (§9)
            values[name] = value
            continue
        value = coerce(item.schema, value)
        if (error := _describe_error(item.validator, value, f"input {name!r}")) is not None:
            raise InvalidInput(error)
        values[name] = value
    return values


def _file_value(name: str, value: Any, policy: UrlPolicy) -> Any:
    urls = parse_urls(value, name)
    for url in urls:
        policy.check_input(url, name)
    if isinstance(value, list | tuple) or len(urls) > 1:
        return urls
    return urls[0] if urls else None


def positional_args(spec: AlgorithmSpec, values: Mapping[str, Any]) -> list[str]:
    """Positional values in registration order; an omitted optional one is ``""``."""
    args = []
    for item in spec.inputs_of("positional"):
        value = values.get(item.name)
        if value is None:
            value = ""
        elif isinstance(value, bool):
            value = str(value).lower()
        args.append(str(value))
    return args


def parse_priority(value: Any) -> int:
    """A job's priority, 0..9, as every dialect gives it: an int or a string of digits.
    ``true``, ``5.7``, ``null`` and ``1e400`` are refused, not read as 1, 5 or 0."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,3}\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"priority must be an integer 0..9; got {str(value)[:40]!r}")
    if not 0 <= value <= 9:
        raise InvalidInput(f"priority must be 0..9; got {value}")
    return value
