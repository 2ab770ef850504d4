"""What ``/openapi.json`` says about the OGC operations: the project's own JSON Schemas of
the OGC 1.0 documents (landing page, conformance, process list and description,
statusInfo, job list, results, exception, execute request) and, per operation, its
operation id (the ones the OGC test suite looks up), success answers and error codes.
"""

from __future__ import annotations

from typing import Any

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


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def array_of(items: dict[str, Any]) -> dict[str, Any]:
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
            "links": array_of(ref("Link")),
        },
    },
    "ConfClasses": {
        "type": "object",
        "required": ["conformsTo"],
        "properties": {"conformsTo": array_of({"type": "string"})},
    },
    "ProcessSummary": {
        "type": "object",
        "required": ["id", "version"],
        "properties": {
            "id": {"type": "string"},
            "version": {"type": "string"},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "keywords": array_of({"type": "string"}),
            "jobControlOptions": array_of(
                {"type": "string", "enum": ["sync-execute", "async-execute", "dismiss"]}
            ),
            "outputTransmission": array_of({"type": "string", "enum": ["value", "reference"]}),
            "mutable": {"type": "boolean"},
            "links": array_of(ref("Link")),
        },
    },
    "ProcessList": {
        "type": "object",
        "required": ["processes", "links"],
        "properties": {
            "processes": array_of(ref("ProcessSummary")),
            "links": array_of(ref("Link")),
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
            ref("ProcessSummary"),
            {
                "type": "object",
                "properties": {
                    "inputs": {"type": "object", "additionalProperties": ref("InputDescription")},
                    "outputs": {
                        "type": "object",
                        "additionalProperties": ref("OutputDescription"),
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
            "links": array_of(ref("Link")),
        },
    },
    "JobList": {
        "type": "object",
        "required": ["jobs", "links"],
        "properties": {
            "jobs": array_of(ref("StatusInfo")),
            "links": array_of(ref("Link")),
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
            "tags": array_of({"type": "string"}),
            "dedup": {"type": "boolean"},
        },
    },
}


def json_content(schema: str) -> dict[str, Any]:
    return {JSON: {"schema": ref(schema)}}


def error_response(description: str) -> dict[str, Any]:
    schema = {"schema": ref("Exception")}
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
            "200": {"description": "the landing page", "content": json_content("LandingPage")},
            "303": {"description": "a browser is sent to the web UI"},
        },
        (),
    ),
    ("get", "/conformance"): (
        "getConformanceClasses",
        {"200": {"description": "the conformance classes", "content": json_content("ConfClasses")}},
        (),
    ),
    ("get", "/processes"): (
        "getProcesses",
        {"200": {"description": "the processes", "content": json_content("ProcessList")}},
        (400,),
    ),
    ("post", "/processes"): (
        "deploy",
        {
            "201": {
                "description": "deployed",
                "headers": LOCATION,
                "content": json_content("ProcessSummary"),
            }
        },
        (400, 403, 409, 415),
    ),
    ("get", "/processes/{process_id}"): (
        "getProcessDescription",
        {"200": {"description": "the process description", "content": json_content("Process")}},
        (404,),
    ),
    ("put", "/processes/{process_id}"): (
        "replace",
        {
            "200": {
                "description": "replaced (MAAP registrations)",
                "content": json_content("ProcessSummary"),
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
                    JSON: {"schema": ref("Results")},
                    "multipart/related": {"schema": {}},
                    **ANY,
                },
            },
            "201": {
                "description": "job created (asynchronous)",
                "headers": LOCATION,
                "content": json_content("StatusInfo"),
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
        {"200": {"description": "the jobs", "content": json_content("JobList")}},
        (400,),
    ),
    ("get", "/jobs/{job_id}"): (
        "getStatus",
        {"200": {"description": "the job's status", "content": json_content("StatusInfo")}},
        (400, 404),  # 400: a ``wait`` that is not a number of seconds 0..600
    ),
    ("delete", "/jobs/{job_id}"): (
        "dismiss",
        {"200": {"description": "dismissed", "content": json_content("StatusInfo")}},
        (404,),
    ),
    ("get", "/jobs/{job_id}/results"): (
        "getResult",
        {
            "200": {
                "description": "the results",
                "headers": LINKS,
                "content": {
                    JSON: {"schema": ref("Results")},
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
