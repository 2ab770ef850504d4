"""OGC API - Processes - Part 1: Core 1.0, as its Abstract Test Suite (OGC 18-062r2 annex
A) tests it, for the classes the server claims: Core, OGC Process Description, JSON, Job
list, Dismiss, Callback. One test per abstract test, named after it; the OpenAPI 3.0 class
is in test_ogc_openapi.py. The ``test_ets_*`` tests send the requests of the OGC CITE
suite (ets-ogcapi-processes10) to the ``echo`` process exactly as it sends them.

Everything runs against one real ``dps server`` (module-scoped): every execution is a job
run by the executor and the runner.
"""

from __future__ import annotations

import base64
import email
import email.policy
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.dps import algorithm_yaml
from tests.support.git_repos import commit_files, git
from tests.support.live_server import LiveServer
from tests.support.ogc import (
    CONF_CLASSES,
    JOB_LIST,
    LANDING_PAGE,
    OGC,
    PROCESS,
    PROCESS_LIST,
    REL,
    RESULTS,
    STATUS_INFO,
    CallbackReceiver,
    assert_exception,
    assert_valid,
    link,
    running_server,
    wait_build,
    wait_job,
    wait_status,
)

CORE = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/"
OPENAPI_30 = "application/vnd.oai.openapi+json;version=3.0"
ASYNC = {"Prefer": "respond-async"}
ACCEPT_JSON = {"Accept": "application/json"}
TIFF = b"II*\x00" + bytes(range(64))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, httpx.Client]]:
    with running_server(tmp_path_factory, "ats") as pair:
        yield pair


@pytest.fixture(scope="module")
def ogc_server(served: tuple[LiveServer, httpx.Client]) -> LiveServer:
    return served[0]


@pytest.fixture(scope="module")
def http(served: tuple[LiveServer, httpx.Client]) -> httpx.Client:
    return served[1]


@pytest.fixture(scope="module")
def exiter(http: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A registered MAAP algorithm (async-only, like every registered one): writes a file
    into output/ and exits with the code it is given."""
    repo = tmp_path_factory.mktemp("repos") / "exiter"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch", "main")
    commit_files(
        repo,
        {"run.sh": '#!/bin/sh\necho "args: $*"\necho result > output/result.txt\nexit "$1"\n'},
        executable=["run.sh"],
    )
    text = algorithm_yaml(
        repo,
        name="exiter",
        version="main",
        inputs="  positional:\n  - name: code\n    data_type: int\n",
    )
    answer = http.post("/processes", content=text, headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 201, answer.text
    wait_build(http, "exiter:main")
    return "exiter:main"


def echo(
    http: httpx.Client, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    return http.post("/processes/echo/execution", json=body, headers=headers or {})


def submit_async(http: httpx.Client, process: str, body: dict[str, Any]) -> str:
    answer = http.post(f"/processes/{process}/execution", json=body, headers=ASYNC)
    assert answer.status_code == 201, answer.text
    return answer.json()["jobID"]


def multipart_parts(response: httpx.Response) -> dict[str, tuple[dict[str, str], bytes]]:
    """Content-ID -> (headers, body) of a multipart/related answer."""
    assert response.headers["content-type"].startswith("multipart/related")
    raw = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode() + response.content
    message = email.message_from_bytes(raw, policy=email.policy.HTTP)
    parts = {}
    for part in message.iter_parts():
        cid = part["Content-ID"].strip("<>")
        parts[cid] = ({k: v for k, v in part.items()}, part.get_payload(decode=True) or b"")
    return parts


# == Core: landing page, API definition, conformance, HTTP =====================================


def test_landingpage_op(http: httpx.Client) -> None:
    answer = http.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")


def test_landingpage_success(http: httpx.Client) -> None:
    page = http.get("/").json()
    assert_valid(LANDING_PAGE, page)
    assert link(page, "service-desc")["type"] == OPENAPI_30
    assert link(page, "service-doc")["type"] == "text/html"
    assert link(page, REL + "conformance")["href"].endswith("/conformance")
    assert link(page, REL + "processes")["href"].endswith("/processes")
    assert link(page, REL + "job-list")["href"].endswith("/jobs")


def test_api_definition_op(http: httpx.Client) -> None:
    href = link(http.get("/").json(), "service-desc")["href"]
    answer = http.get(href)
    assert answer.status_code == 200
    assert answer.json()["openapi"].startswith("3.0")


def test_api_definition_success(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    for path in (
        "/",
        "/conformance",
        "/processes",
        "/processes/{process_id}",
        "/processes/{process_id}/execution",
        "/jobs/{job_id}",
        "/jobs/{job_id}/results",
    ):
        assert path in document["paths"], path


def test_conformance_op(http: httpx.Client) -> None:
    assert http.get("/conformance").status_code == 200


def test_conformance_success(http: httpx.Client) -> None:
    classes = http.get("/conformance").json()
    assert_valid(CONF_CLASSES, classes)
    for name in (
        "core",
        "ogc-process-description",
        "json",
        "oas30",
        "job-list",
        "dismiss",
        "callback",
    ):
        assert CORE + name in classes["conformsTo"]
    assert CORE + "html" not in classes["conformsTo"]  # not implemented, not claimed


def test_http(ogc_server: LiveServer) -> None:
    with httpx.Client(http1=True) as client:
        answer = client.get(ogc_server.url + "/processes")
    assert answer.http_version == "HTTP/1.1"


# == Core: process list and description ========================================================


def test_process_list_op(http: httpx.Client) -> None:
    assert http.get("/processes").status_code == 200


def test_process_list_success(http: httpx.Client) -> None:
    listing = http.get("/processes").json()
    assert_valid(PROCESS_LIST, listing)
    ids = [p["id"] for p in listing["processes"]]
    assert {"echo:1.0.0", "hello-world:1.0.0"} <= set(ids)
    for summary in listing["processes"]:
        assert link(summary, "self")["href"].endswith(f"/processes/{summary['id']}")
        assert isinstance(summary["mutable"], bool)


def test_pl_limit_definition(http: httpx.Client) -> None:
    operation = http.get("/openapi.json").json()["paths"]["/processes"]["get"]
    limit = next(p for p in operation["parameters"] if p["name"] == "limit")
    assert limit["in"] == "query"
    assert limit["schema"]["type"] == "integer"
    assert limit["schema"]["minimum"] == 1 and limit["schema"]["maximum"] == 10000
    assert_exception(http.get("/processes?limit=0"), 400)
    assert_exception(http.get("/processes?limit=10001"), 400)


def test_pl_limit_response(http: httpx.Client) -> None:
    assert len(http.get("/processes?limit=1").json()["processes"]) == 1


def test_pl_links(http: httpx.Client) -> None:
    first = http.get("/processes?limit=1").json()
    following = link(first, "next")
    assert following is not None
    second = http.get(following["href"]).json()
    assert second["processes"][0]["id"] != first["processes"][0]["id"]


def test_process_op(http: httpx.Client) -> None:
    assert http.get("/processes/echo").status_code == 200
    assert http.get("/processes/echo:1.0.0").status_code == 200


def test_process_success(http: httpx.Client) -> None:
    description = http.get("/processes/echo").json()
    assert_valid(PROCESS, description)
    assert next(iter(description["inputs"])) == "echoInput"
    assert description["inputs"]["echoInput"]["schema"] == {"type": "string"}
    assert "echoInput" in description["outputs"]
    assert set(description["jobControlOptions"]) == {"sync-execute", "async-execute", "dismiss"}
    execute = link(description, REL + "execute")
    assert execute["href"].endswith("/processes/echo:1.0.0/execution")


def test_process_exception_no_such_process(http: httpx.Client) -> None:
    assert_exception(http.get("/processes/no-such-thing"), 404, OGC + "no-such-process")
    assert_exception(
        http.post("/processes/no-such-thing/execution", json={"inputs": {}}),
        404,
        OGC + "no-such-process",
    )


# == Core: creating jobs =======================================================================


def test_job_creation_op(http: httpx.Client) -> None:
    answer = echo(http, {"inputs": {"echoInput": "hello"}}, ASYNC)
    assert answer.status_code == 201
    assert answer.headers["location"].endswith(f"/jobs/{answer.json()['jobID']}")
    assert http.get(answer.headers["location"]).status_code == 200


def test_job_creation_auto_execution_mode(http: httpx.Client, exiter: str) -> None:
    # Both modes allowed: respond-async is honoured, and said so.
    answer = echo(http, {"inputs": {"echoInput": "hello"}}, ASYNC)
    assert answer.status_code == 201
    assert answer.headers["preference-applied"] == "respond-async"
    # Asynchronous only (a registered algorithm): asynchronous whatever is preferred.
    answer = http.post(
        f"/processes/{exiter}/execution",
        json={"inputs": {"code": 0}},
        headers={"Prefer": "respond-sync"},
    )
    assert answer.status_code == 201


def test_job_creation_default_execution_mode(http: httpx.Client, exiter: str) -> None:
    answer = echo(http, {"inputs": {"echoInput": "hello"}})  # both allowed: synchronous
    assert answer.status_code == 200
    assert "preference-applied" not in answer.headers
    answer = http.post(f"/processes/{exiter}/execution", json={"inputs": {"code": 0}})
    assert answer.status_code == 201  # async-execute only
    assert_valid(STATUS_INFO, answer.json())


def test_job_creation_default_outputs(http: httpx.Client) -> None:
    inputs = {"echoInput": "a", "arrayInput": [1, 2], "textInput": "t"}
    document = echo(http, {"inputs": inputs, "response": "document"}).json()
    assert document == {"echoInput": "a", "arrayInput": [1, 2], "textInput": "t"}


def test_job_creation_input_array(http: httpx.Client) -> None:
    document = echo(
        http,
        {
            "inputs": {"echoInput": "a", "arrayInput": [1, 2, 3]},
            "outputs": {"arrayInput": {}},
            "response": "document",
        },
    ).json()
    assert document == {"arrayInput": [1, 2, 3]}
    assert_exception(echo(http, {"inputs": {"echoInput": "a", "arrayInput": [1, "x"]}}), 400)


def test_job_creation_input_inline_bbox(http: httpx.Client) -> None:
    bbox = {"bbox": [51.9, 7.0, 52.0, 7.1], "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}
    document = echo(
        http, {"inputs": {"echoInput": "a", "bboxInput": bbox}, "response": "document"}
    ).json()
    assert document["bboxInput"] == bbox
    assert_valid(RESULTS, document)
    assert_exception(echo(http, {"inputs": {"echoInput": "a", "bboxInput": {"bbox": [1, 2]}}}), 400)


def test_job_creation_input_inline_binary(http: httpx.Client) -> None:
    value = {
        "value": base64.b64encode(TIFF).decode(),
        "mediaType": "image/tiff",
        "encoding": "base64",
    }
    answer = echo(
        http,
        {
            "inputs": {"echoInput": "a", "binaryInput": value},
            "outputs": {"binaryInput": {}},
            "response": "raw",
        },
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/tiff"
    assert answer.content == TIFF


def test_job_creation_input_inline_mixed(http: httpx.Client) -> None:
    for value in ({"value": {"a": 1}}, "just a string"):
        document = echo(
            http,
            {
                "inputs": {"echoInput": "a", "objectInput": value},
                "outputs": {"objectInput": {}},
                "response": "document",
            },
        ).json()
        assert document["objectInput"] == value
    assert_exception(echo(http, {"inputs": {"echoInput": "a", "objectInput": [5]}}), 400)


def test_job_creation_input_inline_object(http: httpx.Client) -> None:
    answer = echo(
        http,
        {
            "inputs": {"echoInput": "a", "objectInput": {"value": {"k": [1, 2]}}},
            "outputs": {"objectInput": {}},
            "response": "raw",
        },
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"k": [1, 2]}


def test_job_creation_input_inline(http: httpx.Client) -> None:
    # Values are validated against the input's schema from the description.
    assert_exception(echo(http, {"inputs": {"echoInput": "a", "pause": "soon"}}), 400)
    assert_exception(echo(http, {"inputs": {"echoInput": "a", "pause": 1000}}), 400)
    assert_exception(echo(http, {"inputs": {"echoInput": ["a", "b"]}}), 400)
    assert echo(http, {"inputs": {"echoInput": {"value": "qualified"}}}).text == "qualified"


def test_job_creation_input_ref(http: httpx.Client) -> None:
    ref = {"href": "https://example.org/data.txt", "type": "text/plain"}
    document = echo(
        http, {"inputs": {"echoInput": "a", "textInput": ref}, "response": "document"}
    ).json()
    assert document["textInput"] == ref


def test_job_creation_input_validation(http: httpx.Client) -> None:
    wrong = [
        {"textInput": {"value": "x", "mediaType": "image/png"}},  # wrong mediaType
        {"textInput": {"href": "https://example.org/x.png", "type": "image/png"}},
        {"binaryInput": {"value": "AAAA", "format": {"mediaType": "application/pdf"}}},
        {"textInput": {"type": "wrong/type"}},  # not a value at all
        {"nonsense": 1},  # no such input
    ]
    for extra in wrong:
        body = assert_exception(
            echo(http, {"inputs": {"echoInput": "a", **extra}}),
            400,
            OGC + "invalid-parameter-value",
        )
        assert next(iter(extra)) in body["detail"]


def test_job_creation_inputs(http: httpx.Client) -> None:
    inputs = {
        "echoInput": "inline",
        "textInput": {"href": "https://example.org/t.txt", "type": "text/plain"},
    }
    document = echo(http, {"inputs": inputs, "response": "document"}).json()
    assert document == inputs


def test_job_creation_request(http: httpx.Client) -> None:
    assert_exception(
        http.post(
            "/processes/echo/execution",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        ),
        400,
    )
    assert_exception(echo(http, {"inputs": 5}), 400)  # type: ignore[dict-item]
    assert_exception(echo(http, {"inputs": {"echoInput": "a"}, "response": "pdf"}), 400)
    assert_exception(echo(http, {"inputs": {"echoInput": "a"}, "outputs": {"nope": {}}}), 400)
    assert_exception(
        echo(
            http,
            {"inputs": {"echoInput": "a"}, "outputs": {"echoInput": {"transmissionMode": "x"}}},
        ),
        400,
    )


def test_job_creation_success_async(http: httpx.Client) -> None:
    answer = echo(http, {"inputs": {"echoInput": "a"}}, ASYNC)
    assert answer.status_code == 201
    assert_valid(STATUS_INFO, answer.json())
    assert answer.json()["status"] in ("accepted", "running", "successful")
    status = http.get(answer.headers["location"])
    assert_valid(STATUS_INFO, status.json())


def test_job_creation_sync_document(http: httpx.Client) -> None:
    answer = echo(
        http, {"inputs": {"echoInput": "teststring", "arrayInput": [1]}, "response": "document"}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert_valid(RESULTS, answer.json())
    assert answer.json() == {"echoInput": "teststring", "arrayInput": [1]}


def test_job_creation_sync_raw_mixed_multi(http: httpx.Client) -> None:
    answer = echo(
        http,
        {
            "inputs": {"echoInput": "teststring", "textInput": "text"},
            "outputs": {
                "echoInput": {"transmissionMode": "value"},
                "textInput": {"transmissionMode": "reference"},
            },
            "response": "raw",
        },
    )
    assert answer.status_code == 200
    parts = multipart_parts(answer)
    assert parts["echoInput"][1] == b"teststring"
    headers, body = parts["textInput"]
    assert body == b""
    assert http.get(headers["Content-Location"]).text == "text"


def test_job_creation_sync_raw_ref(http: httpx.Client) -> None:
    answer = echo(
        http,
        {
            "inputs": {"echoInput": "teststring", "textInput": "text"},
            "outputs": {
                "echoInput": {"transmissionMode": "reference"},
                "textInput": {"transmissionMode": "reference"},
            },
            "response": "raw",
        },
    )
    assert answer.status_code == 204
    assert answer.content == b""
    links = [v for v in answer.headers.get_list("link") if 'rel="monitor"' not in v]
    assert len(links) == 2
    hrefs = {part.split(";")[0].strip("<> ") for part in links}
    assert {http.get(h).text for h in hrefs} == {"teststring", "text"}


def test_job_creation_sync_raw_value_multi(http: httpx.Client) -> None:
    answer = echo(
        http,
        {
            "inputs": {"echoInput": "teststring", "bboxInput": {"bbox": [1, 2, 3, 4]}},
            "response": "raw",
        },
    )
    assert answer.status_code == 200
    parts = multipart_parts(answer)
    headers, body = parts["echoInput"]
    assert body == b"teststring" and headers["Content-ID"] == "<echoInput>"
    assert headers["Content-Type"].startswith("text/plain")
    assert parts["bboxInput"][0]["Content-Type"] == "application/json"


def test_job_creation_sync_raw_value_one(http: httpx.Client) -> None:
    answer = echo(
        http,
        {
            "inputs": {"echoInput": "teststring"},
            "outputs": {"echoInput": {"transmissionMode": "value"}},
            "response": "raw",
        },
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text == "teststring"


# == Core: jobs and results ====================================================================


def test_job_exception_no_such_job(http: httpx.Client) -> None:
    assert_exception(http.get(f"/jobs/{uuid.uuid4()}"), 404, OGC + "no-such-job")


def test_job_op(http: httpx.Client) -> None:
    job_id = submit_async(http, "echo", {"inputs": {"echoInput": "a"}})
    assert http.get(f"/jobs/{job_id}").status_code == 200


def test_job_success(http: httpx.Client) -> None:
    job_id = submit_async(http, "echo", {"inputs": {"echoInput": "a"}})
    info = wait_job(http, job_id)
    assert_valid(STATUS_INFO, info)
    assert info["status"] == "successful" and info["progress"] == 100
    assert info["processID"] == "echo:1.0.0"
    for key in ("created", "started", "finished", "updated"):
        assert key in info
    assert link(info, REL + "results")["href"].endswith(f"/jobs/{job_id}/results")


def test_job_results_op(http: httpx.Client) -> None:
    job_id = submit_async(http, "echo", {"inputs": {"echoInput": "a"}})
    wait_job(http, job_id)
    answer = http.get(f"/jobs/{job_id}/results")
    assert answer.status_code == 200
    assert_valid(RESULTS, answer.json())


def test_job_results_exception_no_such_job(http: httpx.Client) -> None:
    assert_exception(http.get(f"/jobs/{uuid.uuid4()}/results"), 404, OGC + "no-such-job")


def test_job_results_exception_results_not_ready(http: httpx.Client) -> None:
    job_id = submit_async(http, "echo", {"inputs": {"echoInput": "a", "pause": 5}})
    answer = http.get(f"/jobs/{job_id}/results", headers=ACCEPT_JSON)
    assert_exception(answer, 404, OGC + "result-not-ready")
    assert answer.headers["content-type"] == "application/json"  # what the CITE suite wants
    http.delete(f"/jobs/{job_id}")


def test_job_results_failed(http: httpx.Client, exiter: str) -> None:
    job_id = submit_async(http, exiter, {"inputs": {"code": 3}})
    info = wait_job(http, job_id)
    assert info["status"] == "failed"
    assert link(info, REL + "exceptions")["href"].endswith(f"/jobs/{job_id}/results")
    body = assert_exception(http.get(f"/jobs/{job_id}/results"), 500, OGC + "job-failed")
    assert "exit code 3" in body["detail"]
    assert body["reason"] == "exit_code"


def test_job_results_async_document(http: httpx.Client) -> None:
    job_id = submit_async(
        http,
        "echo",
        {
            "inputs": {"echoInput": "a", "textInput": "b"},
            "outputs": {"textInput": {}},
            "response": "document",
        },
    )
    wait_job(http, job_id)
    answer = http.get(f"/jobs/{job_id}/results")
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"textInput": "b"}


def test_job_results_async_raw_mixed_multi(http: httpx.Client) -> None:
    job_id = submit_async(
        http,
        "echo",
        {
            "inputs": {"echoInput": "teststring", "textInput": "b"},
            "response": "raw",
            "outputs": {"echoInput": {}, "textInput": {"transmissionMode": "reference"}},
        },
    )
    wait_job(http, job_id)
    parts = multipart_parts(http.get(f"/jobs/{job_id}/results"))
    assert parts["echoInput"][1] == b"teststring"
    assert parts["textInput"][1] == b""
    assert http.get(parts["textInput"][0]["Content-Location"]).text == "b"


def test_job_results_async_raw_ref(http: httpx.Client) -> None:
    job_id = submit_async(
        http,
        "echo",
        {
            "inputs": {"echoInput": "teststring"},
            "response": "raw",
            "outputs": {"echoInput": {"transmissionMode": "reference"}},
        },
    )
    wait_job(http, job_id)
    answer = http.get(f"/jobs/{job_id}/results")
    assert answer.status_code == 204
    href = answer.headers["link"].split(";")[0].strip("<>")
    assert http.get(href).text == "teststring"


def test_job_results_async_raw_value_multi(http: httpx.Client) -> None:
    job_id = submit_async(
        http, "echo", {"inputs": {"echoInput": "teststring", "arrayInput": [4]}, "response": "raw"}
    )
    wait_job(http, job_id)
    parts = multipart_parts(http.get(f"/jobs/{job_id}/results"))
    assert parts["echoInput"][1] == b"teststring"
    assert parts["arrayInput"][1] == b"[4]"


def test_job_results_async_raw_value_one(http: httpx.Client) -> None:
    job_id = submit_async(
        http,
        "echo",
        {"inputs": {"echoInput": "teststring"}, "response": "raw", "outputs": {"echoInput": {}}},
    )
    wait_job(http, job_id)
    answer = http.get(f"/jobs/{job_id}/results")
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text == "teststring"


def test_job_results_sync(http: httpx.Client) -> None:
    answer = echo(http, {"inputs": {"echoInput": "teststring"}, "response": "document"})
    monitor = next(v for v in answer.headers.get_list("link") if 'rel="monitor"' in v)
    job_url = monitor.split(";")[0].strip("<>")
    info = http.get(job_url).json()
    assert info["status"] == "successful"
    assert http.get(job_url + "/results").json() == {"echoInput": "teststring"}


# == Job list ==================================================================================


def _jobs_parameter(http: httpx.Client, name: str) -> dict[str, Any]:
    operation = http.get("/openapi.json").json()["paths"]["/jobs"]["get"]
    return next(p for p in operation["parameters"] if p["name"] == name)


@pytest.fixture(scope="module")
def listed_jobs(http: httpx.Client, exiter: str) -> dict[str, str]:
    """A successful echo, a failed exiter, a dismissed and a running echo (tagged)."""
    tag = f"list-{uuid.uuid4().hex[:8]}"
    ok = submit_async(http, "echo", {"inputs": {"echoInput": "a"}, "tag": tag})
    failed = submit_async(http, exiter, {"inputs": {"code": 1}, "tag": tag})
    wait_job(http, ok)
    wait_job(http, failed)
    running = submit_async(http, "echo", {"inputs": {"echoInput": "a", "pause": 60}, "tag": tag})
    dismissed = submit_async(http, "echo", {"inputs": {"echoInput": "a", "pause": 60}, "tag": tag})
    wait_status(http, running, "running")
    wait_status(http, dismissed, "running")
    http.delete(f"/jobs/{dismissed}")
    wait_job(http, dismissed)
    time.sleep(5.2)  # the running job has run for more than five seconds
    jobs = {"tag": tag, "ok": ok, "failed": failed, "running": running, "dismissed": dismissed}
    yield jobs
    http.delete(f"/jobs/{running}")


def _listed(http: httpx.Client, query: str) -> list[dict[str, Any]]:
    answer = http.get("/jobs?" + query)
    assert answer.status_code == 200, answer.text
    assert_valid(JOB_LIST, answer.json())
    return answer.json()["jobs"]


def test_job_list_op(http: httpx.Client, listed_jobs: dict[str, str]) -> None:
    assert http.get("/jobs").status_code == 200


def test_job_list_success(http: httpx.Client, listed_jobs: dict[str, str]) -> None:
    jobs = _listed(http, f"tag={listed_jobs['tag']}&limit=100")
    assert {j["jobID"] for j in jobs} == {v for k, v in listed_jobs.items() if k != "tag"}


def test_processid_mandatory(http: httpx.Client, listed_jobs: dict[str, str]) -> None:
    for job in _listed(http, "limit=1000"):
        assert job["processID"]


def test_type_definition(http: httpx.Client) -> None:
    parameter = _jobs_parameter(http, "type")
    assert parameter["in"] == "query" and parameter["schema"]["type"] == "array"


def test_type_response(http: httpx.Client, listed_jobs: dict[str, str]) -> None:
    jobs = _listed(http, f"type=process&tag={listed_jobs['tag']}")
    assert jobs and all(j["type"] == "process" for j in jobs)
    assert _listed(http, f"type=wps&tag={listed_jobs['tag']}") == []


def test_processid_definition(http: httpx.Client) -> None:
    parameter = _jobs_parameter(http, "processID")
    assert parameter["in"] == "query" and parameter["schema"]["type"] == "array"


def test_processid_response(http: httpx.Client, listed_jobs: dict[str, str], exiter: str) -> None:
    tag = listed_jobs["tag"]
    assert {j["jobID"] for j in _listed(http, f"processID={exiter}&tag={tag}")} == {
        listed_jobs["failed"]
    }
    both = _listed(http, f"processID=echo&processID={exiter}&tag={tag}")
    assert len(both) == 4


def test_status_definition(http: httpx.Client) -> None:
    parameter = _jobs_parameter(http, "status")
    assert parameter["in"] == "query" and parameter["schema"]["type"] == "array"


def test_status_response(http: httpx.Client, listed_jobs: dict[str, str]) -> None:
    tag = listed_jobs["tag"]
    for status in ("successful", "failed", "running", "dismissed"):
        jobs = _listed(http, f"status={status}&tag={tag}")
        key = "ok" if status == "successful" else status
        assert [j["jobID"] for j in jobs] == [listed_jobs[key]], status
    assert len(_listed(http, f"status=failed&status=dismissed&tag={tag}")) == 2
    assert_exception(http.get("/jobs?status=bogus"), 400)


def test_datetime_definition(http: httpx.Client) -> None:
    parameter = _jobs_parameter(http, "datetime")
    assert parameter["in"] == "query" and parameter["schema"]["type"] == "string"


def test_datetime_response(http: httpx.Client, listed_jobs: dict[str, str]) -> None:
    tag = listed_jobs["tag"]
    now = datetime.now(UTC)
    hour_ago = (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    later = (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert len(_listed(http, f"datetime={hour_ago}/..&tag={tag}")) == 4
    assert len(_listed(http, f"datetime={hour_ago}/{later}&tag={tag}")) == 4
    assert _listed(http, f"datetime=../{hour_ago}&tag={tag}") == []
    assert _listed(http, f"datetime={later}/..&tag={tag}") == []
    assert_exception(http.get("/jobs?datetime=yesterday"), 400)


def test_duration_definition(http: httpx.Client) -> None:
    for name in ("minDuration", "maxDuration"):
        parameter = _jobs_parameter(http, name)
        assert parameter["in"] == "query" and parameter["schema"]["type"] in ("integer", "number")


def test_duration_response(http: httpx.Client, listed_jobs: dict[str, str]) -> None:
    tag = listed_jobs["tag"]
    # The running job has run for more than five seconds (its duration so far counts; a
    # quick echo stays well under that even on a loaded machine); the finished ones took
    # less than 30 s.
    long_ones = {j["jobID"] for j in _listed(http, f"minDuration=5&tag={tag}")}
    assert listed_jobs["running"] in long_ones and listed_jobs["ok"] not in long_ones
    short_ones = {j["jobID"] for j in _listed(http, f"maxDuration=30&tag={tag}")}
    assert {listed_jobs["ok"], listed_jobs["failed"]} <= short_ones
    assert listed_jobs["running"] in short_ones  # ~5-6 s so far
    assert _listed(http, f"minDuration=100000&tag={tag}") == []


def test_limit_definition(http: httpx.Client) -> None:
    schema = _jobs_parameter(http, "limit")["schema"]
    assert schema["type"] == "integer" and schema["minimum"] == 1 and schema["maximum"] == 10000


def test_limit_response(http: httpx.Client, listed_jobs: dict[str, str]) -> None:
    assert len(_listed(http, f"limit=2&tag={listed_jobs['tag']}")) == 2
    assert_exception(http.get("/jobs?limit=0"), 400)


def test_links(http: httpx.Client, listed_jobs: dict[str, str]) -> None:
    seen: list[str] = []
    page = http.get(f"/jobs?limit=3&tag={listed_jobs['tag']}").json()
    while True:
        seen += [j["jobID"] for j in page["jobs"]]
        assert link(page, "self") is not None
        following = link(page, "next")
        if following is None:
            break
        page = http.get(following["href"]).json()
    assert sorted(seen) == sorted(v for k, v in listed_jobs.items() if k != "tag")


# == Dismiss ===================================================================================


def test_job_dismiss_op(http: httpx.Client) -> None:
    job_id = submit_async(http, "echo", {"inputs": {"echoInput": "a", "pause": 60}})
    wait_status(http, job_id, "running")
    answer = http.delete(f"/jobs/{job_id}")
    assert answer.status_code == 200
    assert answer.json()["status"] == "dismissed"  # the running job was stopped
    info = http.get(f"/jobs/{job_id}").json()
    assert info["status"] == "dismissed" and info["reason"] == "cancelled"
    assert_exception(http.delete(f"/jobs/{uuid.uuid4()}"), 404, OGC + "no-such-job")


def test_job_dismiss_success(http: httpx.Client) -> None:
    job_id = submit_async(http, "echo", {"inputs": {"echoInput": "a", "pause": 60}, "queue": "q"})
    answer = http.delete(f"/jobs/{job_id}")
    assert answer.status_code == 200
    assert_valid(STATUS_INFO, answer.json())
    info = wait_job(http, job_id, timeout=20)
    assert info["status"] == "dismissed"


# == Callback ==================================================================================


def test_job_callback(http: httpx.Client, exiter: str) -> None:
    receiver = CallbackReceiver()
    try:
        subscriber = {
            "successUri": receiver.url("ok"),
            "inProgressUri": receiver.url("running"),
            "failedUri": receiver.url("failed"),
        }
        job_id = submit_async(
            http, "echo", {"inputs": {"echoInput": "called back"}, "subscriber": subscriber}
        )
        assert receiver.wait_for("ok") == {"echoInput": "called back"}
        running = receiver.wait_for("running")
        assert running["jobID"] == job_id and running["status"] == "running"
        failed = submit_async(
            http, exiter, {"inputs": {"code": 2}, "subscriber": {"failedUri": receiver.url("ko")}}
        )
        body = receiver.wait_for("ko")
        assert body["jobID"] == failed and body["type"].startswith(OGC)
    finally:
        receiver.close()
    assert_exception(
        echo(http, {"inputs": {"echoInput": "a"}, "subscriber": {"successUri": "ftp://x"}}), 400
    )


# == OGC Process Description ===================================================================


def _descriptions(http: httpx.Client) -> list[dict[str, Any]]:
    ids = [p["id"] for p in http.get("/processes?limit=1000").json()["processes"]]
    return [http.get(f"/processes/{i}").json() for i in ids]


def test_json_encoding(http: httpx.Client, exiter: str) -> None:
    for description in _descriptions(http):
        assert_valid(PROCESS, description)


def test_inputs_def(http: httpx.Client, exiter: str) -> None:
    for description in _descriptions(http):
        assert isinstance(description["inputs"], dict)


def test_input_def(http: httpx.Client, exiter: str) -> None:
    for description in _descriptions(http):
        for name, item in description["inputs"].items():
            assert isinstance(item["schema"], dict), name
            assert item.get("minOccurs", 1) >= 0
            assert item.get("maxOccurs", 1) == "unbounded" or item["maxOccurs"] >= 1
    exiter_inputs = http.get(f"/processes/{exiter}").json()["inputs"]
    assert exiter_inputs["code"]["schema"]["type"] == "integer"


def test_input_mixed_type(http: httpx.Client) -> None:
    schema = http.get("/processes/echo").json()["inputs"]["objectInput"]["schema"]
    assert [s["type"] for s in schema["oneOf"]] == ["object", "string"]


def test_outputs_def(http: httpx.Client, exiter: str) -> None:
    for description in _descriptions(http):
        assert isinstance(description["outputs"], dict) and description["outputs"]


def test_output_def(http: httpx.Client, exiter: str) -> None:
    for description in _descriptions(http):
        for item in description["outputs"].values():
            assert isinstance(item["schema"], dict)


def test_output_mixed_type(http: httpx.Client) -> None:
    schema = http.get("/processes/echo").json()["outputs"]["objectInput"]["schema"]
    assert len(schema["oneOf"]) == 2


# == JSON ======================================================================================


def test_json_definition(http: httpx.Client) -> None:
    for path in ("/", "/conformance", "/processes", "/processes/echo", "/jobs"):
        answer = http.get(path, headers=ACCEPT_JSON)
        assert answer.headers["content-type"] == "application/json", path


# == the OGC CITE suite's echo requests, as it sends them =====================================


def test_ets_sync_raw_value_one(http: httpx.Client) -> None:
    body = {
        "inputs": {
            "echoInput": "teststring",
            "binaryInput": "teststring",
            "textInput": "teststring",
            "bboxInput": {
                "crs": "urn:ogc:def:crs:EPSG:6.6:4326",
                "bbox": [345345345, 345345345, 345345345, 345345345],
            },
        },
        "outputs": {"echoInput": {"transmissionMode": "value"}},
        "response": "raw",
    }
    answer = echo(http, body, ACCEPT_JSON)
    assert answer.status_code == 200 and "teststring" in answer.text


def test_ets_sync_raw_multi_and_document(http: httpx.Client) -> None:
    outputs = {
        name: {"transmissionMode": "value"}
        for name in http.get("/processes/echo").json()["outputs"]
    }
    inputs = {
        "echoInput": "teststring",
        "objectInput": {"value": "teststring"},
        "textInput": "teststring",
    }
    raw = echo(http, {"inputs": inputs, "outputs": outputs, "response": "raw"}, ACCEPT_JSON)
    assert raw.status_code == 200 and b"teststring" in raw.content
    assert raw.headers["content-type"].startswith("multipart/related")
    document = echo(
        http, {"inputs": inputs, "outputs": outputs, "response": "document"}, ACCEPT_JSON
    )
    assert document.status_code == 200
    assert_valid(RESULTS, document.json())


def test_ets_binary_by_value_and_reference(http: httpx.Client) -> None:
    tiff = base64.b64encode(TIFF).decode()
    fmt = {"mediaType": "image/tiff; application=geotiff", "encoding": "base64"}
    answer = echo(
        http, {"inputs": {"echoInput": "teststring", "binaryInput": {"value": tiff, "format": fmt}}}
    )
    assert answer.status_code == 200
    answer = echo(
        http,
        {
            "inputs": {
                "echoInput": "teststring",
                "binaryInput": {"href": "https://example.org/test.tiff", "format": {}},
            }
        },
    )
    assert answer.status_code == 200


def test_ets_async_and_results(http: httpx.Client) -> None:
    answer = echo(
        http, {"inputs": {"echoInput": "teststring"}}, {"Prefer": "respond-async", **ACCEPT_JSON}
    )
    assert answer.status_code == 201
    info = wait_job(http, answer.json()["jobID"])
    results = link(info, REL + "results")
    assert "teststring" in http.get(results["href"]).text


def test_ets_wrong_media_type_input(http: httpx.Client) -> None:
    inputs = {
        "echoInput": "teststring",
        "textInput": {"type": "wrong/type_" + uuid.uuid4().hex},
        "binaryInput": {"type": "wrong/type_" + uuid.uuid4().hex},
    }
    answer = echo(http, {"inputs": inputs}, ACCEPT_JSON)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/json"
    assert_exception(answer, 400)


def test_ets_failed_results(http: httpx.Client) -> None:
    answer = echo(http, {"invalid-execute-request": "true)"}, ACCEPT_JSON)
    assert answer.status_code > 200
    assert_exception(answer, 400)


def test_ets_job_list_schema(http: httpx.Client) -> None:
    answer = http.get("/jobs", headers=ACCEPT_JSON)
    assert answer.status_code == 200
    assert_valid(JOB_LIST, answer.json())


# == this server's extensions around the standard ==============================================


def test_prefer_wait_answers_synchronously_or_falls_back(http: httpx.Client) -> None:
    quick = echo(http, {"inputs": {"echoInput": "a"}}, {"Prefer": "respond-async, wait=20"})
    assert quick.status_code == 200 and quick.headers["preference-applied"] == "wait=20"
    slow = echo(http, {"inputs": {"echoInput": "a", "pause": 30}}, {"Prefer": "wait=1"})
    assert slow.status_code == 201
    assert slow.headers["preference-applied"] == "wait=1"
    http.delete(slow.headers["location"])


def test_registered_algorithm_results_link_the_staged_files(
    http: httpx.Client, exiter: str
) -> None:
    job_id = submit_async(http, exiter, {"inputs": {"code": "0"}})  # "0": coerced to 0
    assert wait_job(http, job_id)["status"] == "successful"
    document = http.get(f"/jobs/{job_id}/results").json()
    (result,) = [x for x in document["output"] if x["title"] == "result.txt"]
    assert http.get(result["href"]).text == "result\n"


def test_hello_world(http: httpx.Client) -> None:
    answer = http.post("/processes/hello-world/execution", json={"inputs": {"name": "DPS"}})
    assert answer.text == "Hello DPS!"
    assert answer.headers["content-type"].startswith("text/plain")


def test_builtins_are_immutable(http: httpx.Client) -> None:
    from tests.support.ogc import OGC2

    assert_exception(http.delete("/processes/echo"), 403, OGC2 + "immutable-process")
    assert_exception(
        http.put("/processes/echo", content=b"x: 1", headers={"Content-Type": "application/yaml"}),
        403,
        OGC2 + "immutable-process",
    )
    assert http.get("/processes/echo").json()["mutable"] is False


def test_results_of_one_output_and_no_such_output(http: httpx.Client) -> None:
    job_id = submit_async(http, "echo", {"inputs": {"echoInput": "one"}})
    wait_job(http, job_id)
    assert http.get(f"/jobs/{job_id}/results/echoInput").text == "one"
    assert_exception(http.get(f"/jobs/{job_id}/results/nope"), 404, OGC + "no-such-output")


def test_logs_and_outputs_of_a_builtin_job(http: httpx.Client, tmp_path: Path) -> None:
    job_id = submit_async(http, "echo", {"inputs": {"echoInput": "logged"}})
    wait_job(http, job_id)
    assert "echoInput = logged" in http.get(f"/jobs/{job_id}/logs").json()["stdout"]
    paths = {o["path"] for o in http.get(f"/jobs/{job_id}/outputs").json()["outputs"]}
    assert {"_results.json", "_stdout.txt", "_stderr.txt"} <= paths
