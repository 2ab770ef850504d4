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

JSON = "application/json"
PROBLEM = "application/problem+json"
REF = "#/components/schemas/"
CWL_MEDIA_TYPES = (
    "application/cwl+yaml",
    "application/cwl+json",
    "application/cwl",
    "application/ogcapppkg+json",
    "application/yaml",
    JSON,
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


STATUS_CODES = ["accepted", "running", "successful", "failed", "dismissed"]
SCHEMAS: dict[str, dict[str, Any]] = {
    "Link": {
        "type": "object",
        "required": ["href"],
        "properties": {
            name: {"type": "string"} for name in ("href", "rel", "type", "hreflang", "title")
        },
    },
    "Exception": {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
        },
        "additionalProperties": True,
    },
    "LandingPage": {
        "type": "object",
        "required": ["links"],
        "properties": {
            "title": {"type": "string"},
            "description": {"type": "string"},
            "links": _array(_ref("Link")),
        },
    },
    "ConfClasses": {
        "type": "object",
        "required": ["conformsTo"],
        "properties": {"conformsTo": _array({"type": "string"})},
    },
    "ProcessSummary": {
        "type": "object",
        "required": ["id", "version"],
        "properties": {
            "id": {"type": "string"},
            "version": {"type": "string"},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "keywords": _array({"type": "string"}),
            "jobControlOptions": _array(
                {"type": "string", "enum": ["sync-execute", "async-execute", "dismiss"]}
            ),
            "outputTransmission": _array({"type": "string", "enum": ["value", "reference"]}),
            "mutable": {"type": "boolean"},
            "links": _array(_ref("Link")),
        },
    },
    "ProcessList": {
        "type": "object",
        "required": ["processes", "links"],
        "properties": {
            "processes": _array(_ref("ProcessSummary")),
            "links": _array(_ref("Link")),
            "numberMatched": {"type": "integer"},
        },
    },
    "InputDescription": {
        "type": "object",
        "required": ["schema"],
        "properties": {
            "title": {"type": "string"},
            "description": {"type": "string"},
            "minOccurs": {"type": "integer"},
            "maxOccurs": {
                "oneOf": [{"type": "integer"}, {"type": "string", "enum": ["unbounded"]}]
            },
            "schema": {"type": "object"},
        },
    },
    "OutputDescription": {
        "type": "object",
        "required": ["schema"],
        "properties": {
            "title": {"type": "string"},
            "description": {"type": "string"},
            "schema": {"type": "object"},
        },
    },
    "Process": {
        "allOf": [
            _ref("ProcessSummary"),
            {
                "type": "object",
                "properties": {
                    "inputs": {"type": "object", "additionalProperties": _ref("InputDescription")},
                    "outputs": {
                        "type": "object",
                        "additionalProperties": _ref("OutputDescription"),
                    },
                },
            },
        ],
    },
    "StatusInfo": {
        "type": "object",
        "required": ["jobID", "status", "type"],
        "properties": {
            "processID": {"type": "string"},
            "type": {"type": "string", "enum": ["process"]},
            "jobID": {"type": "string"},
            "status": {"type": "string", "enum": STATUS_CODES},
            "message": {"type": "string"},
            "created": {"type": "string", "format": "date-time"},
            "started": {"type": "string", "format": "date-time"},
            "finished": {"type": "string", "format": "date-time"},
            "updated": {"type": "string", "format": "date-time"},
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            "links": _array(_ref("Link")),
        },
    },
    "JobList": {
        "type": "object",
        "required": ["jobs", "links"],
        "properties": {
            "jobs": _array(_ref("StatusInfo")),
            "links": _array(_ref("Link")),
            "numberMatched": {"type": "integer"},
        },
    },
    "Results": {"type": "object", "additionalProperties": True},
    "Execute": {
        "type": "object",
        "properties": {
            "inputs": {"type": "object", "additionalProperties": True},
            "outputs": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "format": {
                            "type": "object",
                            "properties": {
                                "mediaType": {"type": "string"},
                                "encoding": {"type": "string"},
                            },
                        },
                        "transmissionMode": {"type": "string", "enum": ["value", "reference"]},
                    },
                },
            },
            "response": {"type": "string", "enum": ["raw", "document"]},
            "subscriber": {
                "type": "object",
                "properties": {
                    "successUri": {"type": "string", "format": "uri"},
                    "inProgressUri": {"type": "string", "format": "uri"},
                    "failedUri": {"type": "string", "format": "uri"},
                },
            },
            "queue": {"type": "string"},
            "priority": {"type": "integer", "minimum": 0, "maximum": 9},
            "tag": {"type": "string"},
            "tags": _array({"type": "string"}),
            "dedup": {"type": "boolean"},
        },
    },
}


def _json(schema: str) -> dict[str, Any]:
    return {JSON: {"schema": _ref(schema)}}


def _error(description: str) -> dict[str, Any]:
    schema = {"schema": _ref("Exception")}
    return {"description": description, "content": {JSON: schema, PROBLEM: dict(schema)}}


LOCATION = {"Location": {"description": "the created resource", "schema": {"type": "string"}}}
LINKS = {
    "Link": {
        "description": "links to the outputs, or the job (rel=monitor)",
        "schema": {"type": "string"},
    }
}
ANY = {"*/*": {"schema": {}}}
PACKAGE_BODY = {"required": True, "content": {m: {"schema": {}} for m in CWL_MEDIA_TYPES}}

# (method, path) -> operation id, success responses, extra error codes
OPERATIONS: dict[tuple[str, str], tuple[str, dict[str, Any], tuple[int, ...]]] = {
    ("get", "/"): (
        "getLandingPage",
        {
            "200": {"description": "the landing page", "content": _json("LandingPage")},
            "303": {"description": "a browser is sent to the web UI"},
        },
        (),
    ),
    ("get", "/conformance"): (
        "getConformanceClasses",
        {"200": {"description": "the conformance classes", "content": _json("ConfClasses")}},
        (),
    ),
    ("get", "/processes"): (
        "getProcesses",
        {"200": {"description": "the processes", "content": _json("ProcessList")}},
        (400,),
    ),
    ("post", "/processes"): (
        "deploy",
        {
            "201": {
                "description": "deployed",
                "headers": LOCATION,
                "content": _json("ProcessSummary"),
            }
        },
        (400, 403, 409, 415),
    ),
    ("get", "/processes/{process_id}"): (
        "getProcessDescription",
        {"200": {"description": "the process description", "content": _json("Process")}},
        (404,),
    ),
    ("put", "/processes/{process_id}"): (
        "replace",
        {
            "200": {
                "description": "replaced (MAAP registrations)",
                "content": _json("ProcessSummary"),
            },
            "204": {"description": "replaced (application packages)"},
        },
        (400, 403, 404, 409, 415),
    ),
    ("delete", "/processes/{process_id}"): (
        "undeploy",
        {"204": {"description": "undeployed"}},
        (403, 404, 409),
    ),
    ("get", "/processes/{process_id}/package"): (
        "getPackage",
        {
            "200": {
                "description": "the package as deployed",
                "content": {m: {"schema": {}} for m in CWL_MEDIA_TYPES},
            }
        },
        (404,),
    ),
    ("post", "/processes/{process_id}/execution"): (
        "execute",
        {
            "200": {
                "description": "synchronous results: a results document, one output in its "
                "own media type, or multipart/related",
                "headers": LINKS,
                "content": {
                    JSON: {"schema": _ref("Results")},
                    "multipart/related": {"schema": {}},
                    **ANY,
                },
            },
            "201": {
                "description": "job created (asynchronous)",
                "headers": LOCATION,
                "content": _json("StatusInfo"),
            },
            "204": {
                "description": "synchronous results by reference (Link headers)",
                "headers": LINKS,
            },
        },
        (400, 403, 404),
    ),
    ("get", "/jobs"): (
        "getJobs",
        {"200": {"description": "the jobs", "content": _json("JobList")}},
        (400,),
    ),
    ("get", "/jobs/{job_id}"): (
        "getStatus",
        {"200": {"description": "the job's status", "content": _json("StatusInfo")}},
        (404,),
    ),
    ("delete", "/jobs/{job_id}"): (
        "dismiss",
        {"200": {"description": "dismissed", "content": _json("StatusInfo")}},
        (404,),
    ),
    ("get", "/jobs/{job_id}/results"): (
        "getResult",
        {
            "200": {
                "description": "the results",
                "headers": LINKS,
                "content": {
                    JSON: {"schema": _ref("Results")},
                    "multipart/related": {"schema": {}},
                    **ANY,
                },
            },
            "204": {"description": "results by reference (Link headers)", "headers": LINKS},
            "303": {"description": "the output lives elsewhere"},
        },
        (400, 404),
    ),
    ("get", "/jobs/{job_id}/logs"): (
        "getLogs",
        {
            "200": {
                "description": "stdout and stderr; with follow=true a server-sent event stream",
                "content": {
                    JSON: {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "stdout": {"type": "string"},
                                "stderr": {"type": "string"},
                            },
                        }
                    },
                    "text/event-stream": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "event": {"type": "string", "enum": ["stdout", "stderr", "end"]},
                                "data": {"type": "string"},
                            },
                        }
                    },
                },
            }
        },
        (400, 404),
    ),
    ("get", "/jobs/{job_id}/outputs/{path}"): (
        "getOutputFile",
        {"200": {"description": "the file's bytes", "content": ANY}},
        (400, 404),
    ),
    ("get", "/jobs/{job_id}/results/{output_id}"): (
        "getResultOutput",
        {
            "200": {"description": "the output's value", "content": ANY},
            "303": {"description": "the output lives elsewhere"},
        },
        (400, 404),
    ),
}
ERROR_TEXT = {
    400: "invalid request",
    401: "authentication required",
    403: "forbidden",
    404: "not found",
    409: "conflict",
    415: "unsupported media type",
    500: "server error",
}


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
                "content": {JSON: {"schema": _ref("Execute")}},
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
                _error(ERROR_TEXT[code]) if ogc else {"description": ERROR_TEXT[code]}
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
