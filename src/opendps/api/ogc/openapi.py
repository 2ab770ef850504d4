"""``/openapi.json`` as OpenAPI 3.0 (the OGC 1.0 ``oas30`` class).

FastAPI writes OpenAPI 3.1; this rewrites it as 3.0.3 (nullable instead of null types,
``example`` instead of ``examples``, boolean exclusive bounds), documents every status code
each operation answers, gives the OGC operations their response schemas (the project's
own JSON Schemas of the OGC 1.0 documents) and the operation ids the OGC test suite looks
for, and declares the security schemes.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from fastapi import FastAPI

from opendps.api.ogc.documented import (
    ERROR_TEXT,
    JSON,
    OPERATIONS,
    PACKAGE_BODY,
    SCHEMAS,
    error_response,
    ref,
)


def install_openapi(app: FastAPI) -> None:
    """Serve the 3.0 document at /openapi.json (and /docs renders it)."""
    previous = app.openapi

    def openapi() -> dict[str, Any]:
        cached = getattr(app.state, "openapi30", None)
        if cached is None:
            cached = app.state.openapi30 = openapi_30(copy.deepcopy(previous()), app)
        return cached

    app.openapi = openapi  # type: ignore[method-assign]


def openapi_30(document: dict[str, Any], app: FastAPI) -> dict[str, Any]:
    document["openapi"] = "3.0.3"
    for key in ("webhooks", "jsonSchemaDialect"):
        document.pop(key, None)
    document.get("info", {}).pop("summary", None)
    components = document.setdefault("components", {})
    components.pop("pathItems", None)
    schemas = components.setdefault("schemas", {})
    for name, schema in list(schemas.items()):
        schemas[name] = schema_30(schema)
    schemas.update(copy.deepcopy(SCHEMAS))
    components["securitySchemes"] = {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "a DPS token (Authorization: Bearer <token>)",
        },
        "dpsToken": {
            "type": "apiKey",
            "in": "header",
            "name": "dps-token",
            "description": "a DPS token in a header (MAAP clients send proxy-ticket)",
        },
    }
    auth = bool(getattr(app.state.services.settings, "auth", False))
    document["security"] = (
        [{"bearerAuth": []}, {"dpsToken": []}]
        if auth
        else [{}, {"bearerAuth": []}, {"dpsToken": []}]
    )
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if isinstance(operation, dict) and method in (
                "get",
                "put",
                "post",
                "delete",
                "patch",
                "head",
                "options",
            ):
                _operation_30(method, path, operation, auth)
    return document


def _operation_30(method: str, path: str, operation: dict[str, Any], auth: bool) -> None:
    for parameter in operation.get("parameters", []):
        if "schema" in parameter:
            parameter["schema"] = schema_30(parameter["schema"])
        if isinstance(parameter.get("examples"), list):
            parameter.pop("examples")
    for media in (operation.get("requestBody") or {}).get("content", {}).values():
        if "schema" in media:
            media["schema"] = schema_30(media["schema"])
    responses = operation.setdefault("responses", {})
    for response in responses.values():
        for media in response.get("content", {}).values():
            if "schema" in media:
                media["schema"] = schema_30(media["schema"])
    responses.pop("422", None)  # validation errors answer 400 (problems.py)
    ogc = path.startswith("/") and not path.startswith("/api/")
    known = OPERATIONS.get((method, path))
    if known is not None:
        operation_id, success, errors = known
        operation["operationId"] = operation_id
        for code in [c for c in responses if c.startswith("2")]:
            responses.pop(code)
        responses.update(copy.deepcopy(success))
        codes: tuple[int, ...] = errors
        if operation_id == "execute":
            operation.setdefault("parameters", []).append(
                {
                    "name": "Prefer",
                    "in": "header",
                    "required": False,
                    "description": "respond-async and/or wait=<seconds> (RFC 7240)",
                    "schema": {"type": "string"},
                }
            )
            operation["requestBody"] = {
                "required": False,
                "content": {JSON: {"schema": ref("Execute")}},
            }
        if operation_id in ("deploy", "replace"):
            operation["requestBody"] = copy.deepcopy(PACKAGE_BODY)
            operation.setdefault("parameters", []).append(
                {
                    "name": "w",
                    "in": "query",
                    "required": False,
                    "description": "the workflow of a CWL $graph to deploy",
                    "schema": {"type": "string"},
                }
            )
            operation["parameters"] = _unique(operation["parameters"])
    else:
        codes = (400, 404) if "{" in path or operation.get("parameters") else ()
        if "{" in path:
            codes = (400, 404)
    for code in (*codes, *((401, 403) if auth else ()), 500):
        if str(code) not in responses:
            responses[str(code)] = (
                error_response(ERROR_TEXT[code]) if ogc else {"description": ERROR_TEXT[code]}
            )


def _unique(parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, kept = set(), []
    for parameter in parameters:
        key = (parameter.get("name"), parameter.get("in"))
        if key not in seen:
            seen.add(key)
            kept.append(parameter)
    return kept


def schema_30(schema: Any) -> Any:
    """A JSON Schema (2020-12, as FastAPI writes it) as an OpenAPI 3.0 Schema Object."""
    if isinstance(schema, list):
        return [schema_30(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {k: schema_30(v) if k in _NESTED else v for k, v in schema.items()}
    for key in ("properties", "patternProperties", "$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            schema[key] = {k: schema_30(v) for k, v in schema[key].items()}
    schema.pop("patternProperties", None)
    kinds = schema.get("type")
    if isinstance(kinds, list):
        others = [k for k in kinds if k != "null"]
        if len(others) < len(kinds):
            schema["nullable"] = True
        if len(others) == 1:
            schema["type"] = others[0]
        else:
            schema.pop("type")
            if others:
                schema["anyOf"] = [{"type": k} for k in others]
    elif kinds == "null":
        schema.pop("type")
        schema["nullable"] = True
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        nulls = ({"type": "null"}, {"nullable": True})  # the latter: already rewritten
        if isinstance(options, list) and any(o in nulls for o in options):
            options = [o for o in options if o not in nulls]
            schema["nullable"] = True
            if len(options) == 1:
                schema.pop(key)
                only = options[0]
                if "$ref" in only:
                    schema["allOf"] = [only]
                else:
                    schema.update({k: v for k, v in only.items() if k not in schema})
            else:
                schema[key] = options
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    if isinstance(schema.get("examples"), list):
        examples = schema.pop("examples")
        if examples:
            schema.setdefault("example", examples[0])
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = schema.get(bound)
        if isinstance(value, int | float) and not isinstance(value, bool):
            schema[flag] = value
            schema[bound] = True
    if schema.get("contentEncoding") == "base64" and schema.get("type") == "string":
        schema.setdefault("format", "byte")
    for key in (
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
        "$schema",
        "$id",
        "$comment",
        "$defs",
        "definitions",
        "prefixItems",
        "unevaluatedProperties",
        "dependentRequired",
        "dependentSchemas",
        "if",
        "then",
        "else",
        "$anchor",
    ):
        schema.pop(key, None)
    if "$ref" in schema:  # 3.0 ignores siblings of $ref; keep only what is allowed
        ref = schema["$ref"]
        extras = {k: v for k, v in schema.items() if k != "$ref" and not re.match(r"x-", k)}
        if extras:
            return {
                "allOf": [{"$ref": ref}],
                **{
                    k: v
                    for k, v in extras.items()
                    if k in ("description", "title", "nullable", "default")
                },
            }
    return schema


_NESTED = {"items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"}
