"""OWSLib (``owslib.ogcapi.processes``, from PyPI, unmodified) end to end against a real
``dps server``: landing page, conformance, the OpenAPI document, processes, a process
description, synchronous and asynchronous execution.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from owslib.ogcapi import REQUEST_HEADERS
from owslib.ogcapi.processes import Processes

from tests.support.live_server import LiveServer
from tests.support.ogc import running_server, wait_job


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, httpx.Client]]:
    with running_server(tmp_path_factory, "owslib") as pair:
        yield pair


@pytest.fixture
def owslib(served: tuple[LiveServer, httpx.Client]) -> Iterator[Processes]:
    saved = dict(REQUEST_HEADERS)  # OWSLib keeps request headers module-global
    yield Processes(served[0].url)
    REQUEST_HEADERS.clear()
    REQUEST_HEADERS.update(saved)


def test_landing_page_and_conformance(owslib: Processes) -> None:
    assert any(link["rel"] == "service-desc" for link in owslib.links)
    classes = owslib.conformance()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core" in classes


def test_api_document(owslib: Processes) -> None:
    document = owslib.api()
    assert document["openapi"].startswith("3.0")
    assert "/processes/{process_id}/execution" in document["paths"]


def test_processes_and_description(owslib: Processes) -> None:
    ids = {p["id"] for p in owslib.processes()}
    assert {"echo:1.0.0", "hello-world:1.0.0"} <= ids
    description = owslib.process("echo")
    assert "echoInput" in description["inputs"]
    assert "echoInput" in description["outputs"]


def test_execute_synchronously(owslib: Processes) -> None:
    # OWSLib sends "Prefer: respond-sync" (not a standard token: ignored) and asks for a
    # results document.
    result = owslib.execute("echo", inputs={"echoInput": "from owslib", "arrayInput": [1, 2]})
    assert result == {"echoInput": "from owslib", "arrayInput": [1, 2]}
    assert "monitor" in owslib.response_headers["Link"]
    greeting = owslib.execute("hello-world", inputs={"name": "OWSLib"})
    assert greeting == {"greeting": "Hello OWSLib!"}


def test_execute_asynchronously(owslib: Processes, served: tuple[LiveServer, httpx.Client]) -> None:
    status = owslib.execute("echo", inputs={"echoInput": "later"}, async_=True)
    assert status["status"] in ("accepted", "running", "successful")
    location = owslib.response_headers["Location"]
    assert location.endswith(f"/jobs/{status['jobID']}")
    assert owslib.response_headers["Preference-Applied"] == "respond-async"
    http = served[1]
    assert wait_job(http, status["jobID"])["status"] == "successful"
    assert http.get(location + "/results").json() == {"echoInput": "later"}


def test_execute_errors_raise(owslib: Processes) -> None:
    with pytest.raises(RuntimeError, match="echoInput"):
        owslib.execute("echo", inputs={"nothing": "x"})
