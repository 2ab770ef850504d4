"""Validate and normalise submitted input values against an algorithm's declared inputs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from opendps.errors import InvalidInput
from opendps.registry.spec import AlgorithmSpec, InputSpec

URL_SCHEMES = ("http://", "https://", "s3://", "file://", "gs://")


def split_urls(value: Any) -> list[str]:
    """A file input's value: one URL, a list, a JSON array string, or comma-separated URLs."""
    if value is None or value == "":
        return []
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list):
            return [str(v).strip() for v in parsed if str(v).strip()]
    if "," in text and all(p.strip().startswith(URL_SCHEMES) for p in text.split(",")):
        return [p.strip() for p in text.split(",")]
    return [text]


def _number(spec: InputSpec, value: Any) -> int | float:
    if isinstance(value, bool):
        raise InvalidInput(f"input {spec.name!r} must be a number, not a boolean", input=spec.name)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"input {spec.name!r} must be a number (data_type {spec.data_type}); got {value!r}",
            input=spec.name,
        ) from None
    if spec.is_integer:
        if not number.is_integer():
            raise InvalidInput(
                f"input {spec.name!r} must be an integer; got {value!r}", input=spec.name
            )
        return int(number)
    if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("+-").isdigit()):
        return int(number)  # "3" stays 3 on the command line, not 3.0
    return number


def _file(spec: InputSpec, value: Any) -> Any:
    urls = split_urls(value)
    for url in urls:
        if not url.startswith(URL_SCHEMES) and not url.startswith("/"):
            raise InvalidInput(
                f"input {spec.name!r} is a file input: give a URL (https, http, s3, file) "
                f"or a list of them; got {url!r}",
                input=spec.name,
            )
    return urls if isinstance(value, list | tuple) or len(urls) > 1 else value


def _scalar(spec: InputSpec, value: Any) -> Any:
    if isinstance(value, dict | list) and spec.kind == "positional":
        raise InvalidInput(
            f"input {spec.name!r} is positional (a command-line argument): give a single value",
            input=spec.name,
        )
    return value


def normalise_inputs(spec: AlgorithmSpec, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check names, presence and types; fill in defaults. Raises InvalidInput naming the input."""
    given = dict(given or {})
    known = {i.name for i in spec.inputs}
    unknown = sorted(set(given) - known)
    if unknown:
        choices = ", ".join(sorted(known)) or "none"
        raise InvalidInput(
            f"unknown input(s) {', '.join(repr(u) for u in unknown)}; "
            f"{spec.process_id} takes: {choices}",
            input=unknown[0],
        )
    values: dict[str, Any] = {}
    for item in spec.inputs:
        value = given.get(item.name)
        if value is None or (value == "" and item.kind == "file" and item.mandatory):
            if item.mandatory:
                raise InvalidInput(f"missing required input {item.name!r}", input=item.name)
            value = item.default
        if value is None:
            values[item.name] = "" if item.kind == "positional" else None
            continue
        if item.kind == "file":
            values[item.name] = _file(item, value)
        elif item.is_number and value != "":
            values[item.name] = _number(item, value)
        else:
            values[item.name] = _scalar(item, value)
    return values


def check_local_inputs(spec: AlgorithmSpec, values: Mapping[str, Any]) -> None:
    """Refuse file:// URLs and paths (used when they are not allowed, e.g. with auth on)."""
    for item in spec.inputs_of("file"):
        for url in split_urls(values.get(item.name)):
            if url.startswith(("file://", "/")):
                raise InvalidInput(
                    f"input {item.name!r}: local files ({url!r}) are not allowed on this "
                    "server; give an http(s) or s3 URL",
                    input=item.name,
                )


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
