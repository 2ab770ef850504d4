"""The one input model: each algorithm's inputs are ONE JSON Schema, checked with the
``jsonschema`` library for every dialect (OGC, MAAP OGC-JSON, MAAP WPS, batches, CLI).

The schema comes from the registration (``service/input_schema.py``). Dialects only
decode their value encodings (OGC links and qualified values, WPS strings) and hand plain
values to :func:`normalise_inputs`, which

1. refuses unknown names and missing mandatory inputs (DESIGN §9 "Required inputs"),
2. turns strings into the declared type where that is obviously meant (``"5"`` for an
   integer: WPS and the command line only have strings), and numbers into strings,
3. validates every value against its input's schema, naming the input on error,
4. parses file inputs with the one URL parser and applies the URL policy.
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
from opendps.registry.spec import AlgorithmSpec
from opendps.service.input_schema import (
    coerce,
    described_inputs,
    inputs_schema,
    mandatory,
    normalise_schema,
)

__all__ = [
    "InputModel",
    "described_inputs",
    "inputs_schema",
    "normalise_inputs",
    "normalise_schema",
    "parse_priority",
    "positional_args",
    "validation_error",
]
MAX_MESSAGE = 300  # characters of a validation message (values can be long)


# -- validation ---------------------------------------------------------------------------------


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
    urls: bool  # a URL that is not downloaded for the job (a CWL Directory): policy applies


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
                mandatory=mandatory(spec, name, description),
                default=default,
                schema=schema,
                validator=jsonschema.Draft202012Validator(schema),
                urls=_takes_urls(schema),
            )
        )
    return InputModel(spec.process_id, tuple(entries))


def _check_finite(name: str, value: Any) -> None:
    """inf/nan (``1e400`` in JSON) cannot be stored as JSON: refuse them here."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise InvalidInput(f"input {name!r}: {item!r} is not a finite number", input=name)
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
            f"{spec.process_id} takes: {choices}",
            input=unknown[0],
        )
    values: dict[str, Any] = {}
    for item in model.inputs:
        name, kind = item.name, item.kind
        value = given.get(name)
        if value is None or (value == "" and kind == "file"):
            if item.mandatory:
                raise InvalidInput(f"missing required input {name!r}", input=name)
            if item.default is None:
                values[name] = "" if kind == "positional" else None
                continue
            value = copy.deepcopy(item.default)
        if kind == "positional" and isinstance(value, dict | list):
            raise InvalidInput(
                f"input {name!r} is positional (a command-line argument): give a single value",
                input=name,
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
            raise InvalidInput(error, input=name)
        if item.urls:  # cwltool fetches these itself: the same URL rules as file inputs
            texts = value if isinstance(value, list) else [value]
            for url in (t.strip() for t in texts if isinstance(t, str) and t.strip()):
                policy.check_input(url, name)
        values[name] = value
    return values


def _takes_urls(schema: Any) -> bool:
    """Whether the schema (or one of its alternatives) is a URI string."""
    stack = [schema]
    while stack:
        part = stack.pop()
        if isinstance(part, dict):
            if part.get("format") == "uri":
                return True
            stack.extend(p for key in ("anyOf", "allOf") for p in part.get(key, []))
            stack.append(part.get("items"))
    return False


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
