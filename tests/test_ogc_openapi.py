"""The OpenAPI 3.0 class (``/conf/oas30/*``) and schemathesis against ``/openapi.json``.

The abstract tests check the document: valid OpenAPI 3.0, linked as ``service-desc`` with
the OpenAPI 3.0 media type and rendered as HTML (``service-doc``), every route and status
code documented, the security schemes declared. schemathesis then generates requests from
the document for every OGC operation (bounded in count and time) and checks that the server
never answers 5xx and that its answers match the documented status codes, media types and
schemas.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.definitions import OPENAPI_30

from tests.support.live_server import LiveServer
from tests.support.ogc import link, running_server

OGC_PATHS = r"^/($|conformance$|processes|jobs)"
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, httpx.Client]]:
    with running_server(tmp_path_factory, "openapi") as pair:
        yield pair


@pytest.fixture(scope="module")
def http(served: tuple[LiveServer, httpx.Client]) -> httpx.Client:
    return served[1]


@pytest.fixture(scope="module")
def document(http: httpx.Client) -> dict[str, Any]:
    return http.get("/openapi.json").json()


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


# == /conf/oas30 ===============================================================================


def test_oas_definition_1(http: httpx.Client) -> None:
    page = http.get("/").json()
    desc, doc = link(page, "service-desc"), link(page, "service-doc")
    assert desc["type"] == "application/vnd.oai.openapi+json;version=3.0"
    assert http.get(desc["href"]).json()["openapi"] == "3.0.3"
    rendered = http.get(doc["href"])
    assert rendered.status_code == 200 and rendered.headers["content-type"].startswith("text/html")


def test_oas_definition_2(document: dict[str, Any]) -> None:
    errors = [str(e) for e in jsonschema_rs.Draft4Validator(OPENAPI_30).iter_errors(document)]
    assert errors == []


def test_completeness(served: tuple[LiveServer, httpx.Client], document: dict[str, Any]) -> None:
    """Every OGC route is documented with its success answers and operation id."""
    ids = {op.get("operationId") for _, _, op in _operations(document)}
    assert {
        "getLandingPage",
        "getConformanceClasses",
        "getProcesses",
        "getProcessDescription",
        "execute",
        "getJobs",
        "getStatus",
        "dismiss",
        "getResult",
        "deploy",
        "replace",
        "undeploy",
        "getPackage",
    } <= ids
    execute = document["paths"]["/processes/{process_id}/execution"]["post"]
    assert {"200", "201", "204"} <= set(execute["responses"])
    assert "Location" in execute["responses"]["201"]["headers"]
    assert any(p["name"] == "Prefer" and p["in"] == "header" for p in execute["parameters"])
    assert execute["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Execute"
    }


def test_exceptions_codes(document: dict[str, Any]) -> None:
    """Error answers are documented (FastAPI's 422 is replaced by the 400 it really is)."""
    for path, method, operation in _operations(document):
        codes = set(operation["responses"])
        assert "500" in codes and "422" not in codes, (method, path)
        if "{" in path:
            assert "404" in codes, (method, path)
    deploy = document["paths"]["/processes"]["post"]["responses"]
    assert {"400", "409", "415"} <= set(deploy)
    assert deploy["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Exception"
    }


def test_oas_impl(http: httpx.Client, document: dict[str, Any]) -> None:
    """What the document offers exists: parameterless GETs answer, others are routed."""
    for path, method, _ in _operations(document):
        if not re.match(OGC_PATHS, path):
            continue
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        answer = http.request(method.upper(), concrete, headers={"Accept": "application/json"})
        assert answer.status_code not in (405, 501), (method, path)
        if "{" not in path and method == "get":
            assert answer.status_code == 200, (method, path)


def test_security(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerAuth"]["description"],
    }
    assert schemes["dpsToken"]["in"] == "header"
    assert {"bearerAuth": []} in document["security"]


# == schemathesis ==============================================================================


POSITIVE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# (negative_data_rejection is left out: it takes "5.0" for a number where a query string is
# all text, and refuses every string-typed query parameter.)
NEGATIVE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis(served: tuple[LiveServer, httpx.Client], mode: GenerationMode) -> None:
    """Generated requests for every OGC operation: no 5xx, answers as documented (positive
    data), invalid data refused with a documented 4xx (negative data)."""
    schema = schemathesis.openapi.from_url(served[0].url + "/openapi.json").include(
        path_regex=OGC_PATHS
    )
    positive = mode == GenerationMode.POSITIVE
    checks = POSITIVE_CHECKS if positive else NEGATIVE_CHECKS
    # Positive data reaches real resources: the echo process and one of its jobs.
    http = served[1]
    job_id = http.post(
        "/processes/echo/execution",
        json={"inputs": {"echoInput": "x"}},
        headers={"Prefer": "respond-async"},
    ).json()["jobID"]
    known = {"process_id": "echo", "job_id": job_id, "output_id": "echoInput"}
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        tested += 1

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=10,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate],
        )
        def exercise(case: Any) -> None:
            if positive:
                for name in set(known) & set(case.path_parameters or {}):
                    case.path_parameters[name] = known[name]
            # respond-async: executions answer at once instead of waiting for their jobs.
            case.call_and_validate(headers={"Prefer": "respond-async"}, timeout=30, checks=checks)

        try:
            exercise()
        except Unsatisfiable:  # nothing invalid can be made for it (no parameters, no body)
            continue
        except (Exception, BaseExceptionGroup) as exc:  # report them all at the end
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert tested >= 15
    assert not failures, "\n\n".join(failures)
