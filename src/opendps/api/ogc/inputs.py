"""OGC value encodings of an execute request → plain values, and the requested outputs.

This layer only decodes; whether a value is valid is decided once, for every dialect,
by the service's input model (``opendps.service.inputs``: one JSON Schema per algorithm).

Encodings: literals and arrays, qualified values ``{"value", "mediaType", "encoding"}``
(also with a nested ``format``), links ``{"href", "type"}``, base64 strings for binary
content (checked to be base64), and for inputs with ``maxOccurs > 1`` an array of any of
these (or a single one). A ``mediaType`` or link ``type`` that contradicts the input's
``contentMediaType`` is refused. Bounding boxes ``{"bbox", "crs"}`` are plain objects.

Built-in processes receive the values as sent (the echo gives them back verbatim); other
processes receive the plain values: a link becomes its URL, a qualified value its value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from opendps.errors import InvalidInput

QUALIFIED_KEYS = {"value", "mediaType", "encoding", "schema", "format"}
TRANSMISSION_MODES = ("value", "reference")

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


def decode_value(value: Any, name: str = "input", schema: Mapping[str, Any] | None = None) -> Any:
    """One value of input ``name`` as a plain value: a link → its URL, a qualified value →
    its value (arrays element-wise). With the input's schema, media types and links are
    checked against what it declares."""
    if isinstance(value, list):
        return [decode_value(v, name, schema) for v in value]
    if not isinstance(value, dict):
        return value
    if isinstance(value.get("href"), str):
        if schema is not None:
            if not (accepts(schema, "string") or declared_media_types(schema)):
                raise InvalidInput(f"input {name!r} cannot be given by reference (href)")
            _check_media(name, value.get("type"), schema)
        return value["href"]
    if "value" in value and set(value) <= QUALIFIED_KEYS:
        fmt = value.get("format") if isinstance(value.get("format"), dict) else {}
        if schema is not None:
            _check_media(name, value.get("mediaType") or fmt.get("mediaType"), schema)
        if str(value.get("encoding") or fmt.get("encoding") or "").lower() == "base64":
            _check_base64(name, value["value"])
        return value["value"]
    return value


def _check_base64(name: str, value: Any) -> None:
    try:
        text = "".join(value.split()) if isinstance(value, str) else "!"
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"input {name!r}: the value is not valid base64") from None


def _as_sent(value: Any, schema: Mapping[str, Any]) -> Any:
    """What a built-in receives: the value as sent, except that a number, integer or
    boolean is never left wrapped (it is useless so)."""
    if _scalar_only(dict(schema)) and isinstance(value, dict):
        return decode_value(value)
    if isinstance(value, list):
        return [_as_sent(v, schema) for v in value]
    return value


def decode_inputs(
    described: Mapping[str, Mapping[str, Any]], given: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain values, values as sent) of an execute request's inputs. Unknown names are
    passed through: the input model refuses them, naming them."""
    plain: dict[str, Any] = {}
    as_sent: dict[str, Any] = {}
    for name, value in given.items():
        description = described.get(name)
        schema = description.get("schema") if isinstance(description, Mapping) else None
        schema = schema if isinstance(schema, Mapping) else None
        plain[name] = decode_value(value, str(name), schema)
        as_sent[name] = _as_sent(value, schema) if schema is not None else value
    return plain, as_sent


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
