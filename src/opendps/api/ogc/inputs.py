"""Execute requests against a process description: every OGC 1.0 value encoding is
accepted, each value is checked against its input's JSON Schema, and the requested
outputs are resolved.

Encodings: literals and arrays, qualified values ``{"value", "mediaType", "encoding"}``
(also with a nested ``format``), bounding boxes ``{"bbox", "crs"}``, links ``{"href",
"type"}``, base64 strings for binary content, and for inputs with ``maxOccurs > 1`` an
array of any of these (or a single one). A ``mediaType`` or link ``type`` that contradicts
the input's ``contentMediaType`` is refused.

Built-in processes receive the values as sent (the echo gives them back verbatim); other
processes receive plain values: a link becomes its URL, a qualified value its value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from opendps.errors import InvalidInput

QUALIFIED_KEYS = {"value", "mediaType", "encoding", "schema", "format"}
TRANSMISSION_MODES = ("value", "reference")

# -- a small JSON Schema checker (the subset process descriptions use) -----------------------

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def schema_error(schema: Any, value: Any, where: str) -> str | None:
    """Why ``value`` does not satisfy ``schema``, or None. ``oneOf`` is checked like
    ``anyOf``: CWL unions such as int|float would otherwise reject every integer."""
    if not isinstance(schema, dict) or not schema:
        return None
    if value is None and schema.get("nullable"):
        return None
    for part in schema.get("allOf", []):
        if (error := schema_error(part, value, where)) is not None:
            return error
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if options:
            errors = [schema_error(option, value, where) for option in options]
            if all(e is not None for e in errors):
                return (
                    errors[0]
                    if len(errors) == 1
                    else f"{where}: matches none of the "
                    f"allowed forms ({'; '.join(str(e) for e in errors)})"
                )
    if "not" in schema and schema_error(schema["not"], value, where) is None:
        return f"{where}: is of a form that is not allowed"
    return _type_error(schema, value, where) or _value_error(schema, value, where)


def _type_error(schema: dict[str, Any], value: Any, where: str) -> str | None:
    wanted = schema.get("type")
    if wanted is None:
        return None
    names = wanted if isinstance(wanted, list) else [wanted]
    if any(_TYPES.get(name, lambda v: True)(value) for name in names):
        return None
    return f"{where}: expected {' or '.join(map(str, names))}, got {_kind(value)}"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:60]!r}"
    return {dict: "an object", list: "an array"}.get(type(value), "null")


def _value_error(schema: dict[str, Any], value: Any, where: str) -> str | None:
    if "enum" in schema and value not in schema["enum"]:
        return f"{where}: {value!r} is not one of {schema['enum']}"
    if "const" in schema and value != schema["const"]:
        return f"{where}: must be {schema['const']!r}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number_error(schema, value, where)
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{where}: shorter than {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{where}: longer than {schema['maxLength']} characters"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{where}: does not match the pattern {schema['pattern']!r}"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            return f"{where}: fewer than {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{where}: more than {schema['maxItems']} items"
        for n, item in enumerate(value):
            if (error := schema_error(schema.get("items"), item, f"{where}[{n}]")) is not None:
                return error
    if isinstance(value, dict):
        return _object_error(schema, value, where)
    return None


def _number_error(schema: dict[str, Any], value: float, where: str) -> str | None:
    low, high = schema.get("minimum"), schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if ex_low is True:  # OpenAPI 3.0 / draft 4: a flag on minimum
        ex_low, low = low, None
    if ex_high is True:
        ex_high, high = high, None
    if low is not None and value < low:
        return f"{where}: {value!r} is less than the minimum {low}"
    if high is not None and value > high:
        return f"{where}: {value!r} is more than the maximum {high}"
    if isinstance(ex_low, int | float) and not isinstance(ex_low, bool) and value <= ex_low:
        return f"{where}: {value!r} must be more than {ex_low}"
    if isinstance(ex_high, int | float) and not isinstance(ex_high, bool) and value >= ex_high:
        return f"{where}: {value!r} must be less than {ex_high}"
    return None


def _object_error(schema: dict[str, Any], value: dict[str, Any], where: str) -> str | None:
    for name in schema.get("required", []):
        if name not in value:
            return f"{where}: the member {name!r} is required"
    properties = schema.get("properties") or {}
    for name, item in value.items():
        if name in properties:
            error = schema_error(properties[name], item, f"{where}.{name}")
        elif schema.get("additionalProperties") is False:
            error = f"{where}: unexpected member {name!r}"
        else:
            error = schema_error(schema.get("additionalProperties"), item, f"{where}.{name}")
        if error is not None:
            return error
    return None


# -- inputs -----------------------------------------------------------------------------------


def base_media_type(media: Any) -> str:
    return str(media or "").split(";")[0].strip().lower()


def media_types_agree(given: Any, declared: Any) -> bool:
    """``image/tiff; application=geotiff`` agrees with ``image/tiff``; ``*/*`` with all."""
    given, declared = base_media_type(given), base_media_type(declared)
    if not given or not declared or "*" in (given, declared) or declared == "*/*":
        return True
    if given == declared:
        return True
    return declared.endswith("/*") and given.startswith(declared[:-1])


def _schemas_in(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema and its alternatives (oneOf/anyOf/allOf members), flattened."""
    found = [schema]
    for key in ("oneOf", "anyOf", "allOf"):
        for part in schema.get(key, []) or []:
            if isinstance(part, dict):
                found += _schemas_in(part)
    return found


def declared_media_types(schema: dict[str, Any]) -> list[str]:
    return [s["contentMediaType"] for s in _schemas_in(schema) if s.get("contentMediaType")]


def accepts(schema: dict[str, Any], type_name: str) -> bool:
    """Whether some alternative of the schema takes values of this JSON type."""
    for part in _schemas_in(schema):
        wanted = part.get("type")
        if wanted is None and not any(k in part for k in ("oneOf", "anyOf", "allOf")):
            return True
        if wanted == type_name or (isinstance(wanted, list) and type_name in wanted):
            return True
    return False


def _coerce(schema: dict[str, Any], value: Any) -> Any:
    """Scalars in an obviously intended form: "5" for an integer, 5 for a string."""
    if isinstance(value, str) and not accepts(schema, "string"):
        text = value.strip()
        if accepts(schema, "integer") and re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        if accepts(schema, "number"):
            try:
                return float(text)
            except ValueError:
                return value
        if accepts(schema, "boolean") and text.lower() in ("true", "false"):
            return text.lower() == "true"
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and not accepts(schema, "number")
        and not accepts(schema, "integer")
        and accepts(schema, "string")
    ):
        return str(value)
    return value


def _check_media(name: str, given: Any, schema: dict[str, Any]) -> None:
    declared = declared_media_types(schema)
    if given and declared and not any(media_types_agree(given, d) for d in declared):
        raise InvalidInput(
            f"input {name!r}: media type {given!r} is not accepted; it takes "
            f"{' or '.join(declared)}"
        )


def _scalar_only(schema: dict[str, Any]) -> bool:
    """A number, integer or boolean input: its value is useless wrapped."""
    kinds = {p.get("type") for p in _schemas_in(schema) if p.get("type")}
    return bool(kinds) and kinds <= {"number", "integer", "boolean"}


def check_value(name: str, schema: dict[str, Any], value: Any, *, plain: bool) -> Any:
    """One value of input ``name``; answers it as the process will receive it."""
    plain = plain or _scalar_only(schema)
    if isinstance(value, dict) and isinstance(value.get("href"), str):
        if not (accepts(schema, "string") or declared_media_types(schema)):
            raise InvalidInput(f"input {name!r} cannot be given by reference (href)")
        _check_media(name, value.get("type"), schema)
        return value["href"] if plain else value
    if isinstance(value, dict) and "value" in value and set(value) <= QUALIFIED_KEYS:
        fmt = value.get("format") if isinstance(value.get("format"), dict) else {}
        _check_media(name, value.get("mediaType") or fmt.get("mediaType"), schema)
        inner = _coerce(schema, value["value"])
        if (error := schema_error(schema, inner, name)) is not None:
            raise InvalidInput(f"input {error}")
        return inner if plain else value
    value = _coerce(schema, value)
    if (error := schema_error(schema, value, name)) is not None:
        raise InvalidInput(f"input {error}")
    return value


def _max_occurs(description: Mapping[str, Any]) -> int | None:
    """None: unbounded."""
    value = description.get("maxOccurs", 1)
    if value == "unbounded":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1


def check_inputs(
    described: Mapping[str, Mapping[str, Any]], given: Mapping[str, Any], *, plain: bool
) -> dict[str, Any]:
    """Every given input checked against its description; missing mandatory ones refused.
    ``plain``: unwrap links and qualified values (for run commands and CWL)."""
    unknown = sorted(set(given) - set(described))
    if unknown:
        raise InvalidInput(
            f"unknown input(s) {', '.join(map(repr, unknown))}; this process "
            f"takes: {', '.join(described) or 'none'}"
        )
    values: dict[str, Any] = {}
    for name, description in described.items():
        schema = description.get("schema") if isinstance(description.get("schema"), dict) else {}
        value = given.get(name)
        if value is None:
            if int(description.get("minOccurs", 1) or 0) > 0 and "default" not in schema:
                raise InvalidInput(f"missing required input {name!r}")
            continue
        limit = _max_occurs(description)
        many = limit is None or limit > 1
        if (
            isinstance(value, list)
            and many
            and not (accepts(schema, "array") and not any(isinstance(v, list) for v in value))
        ):
            if limit is not None and len(value) > limit:
                raise InvalidInput(f"input {name!r} takes at most {limit} values")
            values[name] = [check_value(name, schema, v, plain=plain) for v in value]
        else:
            values[name] = check_value(name, schema, value, plain=plain)
    return values


# -- outputs ----------------------------------------------------------------------------------


def requested_outputs(described: Mapping[str, Any], requested: Mapping[str, Any]) -> dict[str, str]:
    """Output id -> transmission mode; all outputs by value when none are named."""
    if not requested:
        return dict.fromkeys(described, "value")
    chosen: dict[str, str] = {}
    for name, options in requested.items():
        if name not in described:
            raise InvalidInput(
                f"unknown output {name!r}; this process has: {', '.join(described) or 'none'}"
            )
        options = options if isinstance(options, dict) else {}
        mode = options.get("transmissionMode") or "value"
        if mode not in TRANSMISSION_MODES:
            raise InvalidInput(
                f"output {name!r}: transmissionMode must be 'value' or 'reference'; got {mode!r}"
            )
        chosen[name] = mode
    return chosen
