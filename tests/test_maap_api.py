"""The MAAP dialect in process (no executor): shapes, filters, identity and bad input.

Jobs stay ``accepted`` here (nothing runs them), which makes listings deterministic. The
end-to-end runs with the real clients are in test_maap_py5.py and test_maap_py42.py.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from opendps.api.app import create_app
from opendps.api.maap import xml
from opendps.api.maap.common import MaapError, parse_bool, parse_status_filter
from opendps.models import JobStatus
from opendps.settings import QueueConfig
from tests.support.dps import fast_settings

ECHO10 = {"Accept": "application/echo10+xml", "Content-Type": "application/echo10+xml"}
QUEUES = [
    QueueConfig(name="dps-sandbox", slots=1, guest=True),
    QueueConfig(name="dps-worker-8gb", slots=2, default=True),
    QueueConfig(name="dps-worker-16gb", slots=1),
]


def algorithm(name: str = "demo", version: str = "main", **extra: Any) -> dict[str, Any]:
    """A MAAP algorithm YAML, as the 4.x client posts it (JSON)."""
    return {
        "algorithm_name": name,
        "algorithm_version": version,
        "algorithm_description": "a test algorithm",
        "repository_url": "https://example.invalid/org/demo_repo.git",
        "docker_container_url": "mas.maap-project.org/root/maap-workspaces/base_images/vanilla",
        "run_command": "demo_repo/run.sh",
        "disk_space": "1GB",
        "queue": "maap-dps-worker-8gb",
        "inputs": {
            "file": [{"name": "input_file", "required": True, "description": ""}],
            "positional": [{"name": "size", "default": "10", "data_type": "number"}],
            "config": [],
        },
        **extra,
    }


def make_client(tmp_path: Path, **settings: Any) -> TestClient:
    app = create_app(fast_settings(tmp_path / "dps", queues=QUEUES, **settings), run_jobs=False)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path) as client:
        yield client


@pytest.fixture
def auth_api(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, auth=True) as client:
        yield client


def tokens(client: TestClient, *names: str, guest: tuple[str, ...] = ()) -> dict[str, str]:
    identity = client.app.state.services.identity
    return {n: identity.create_user(n, is_guest=n in guest) for n in (*names, *guest)}


def register(client: TestClient, headers: dict[str, str] | None = None, **kwargs: Any) -> int:
    response = client.post(
        "/api/mas/algorithm",
        content=json.dumps(algorithm(**kwargs)),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    assert response.status_code == 200, response.text
    return response.json()["message"]["processID"]


def submit(client: TestClient, pid: Any, headers: dict[str, str] | None = None, **body: Any) -> Any:
    payload = {
        "inputs": {"input_file": "https://example.invalid/a.tif"},
        "queue": "maap-dps-worker-8gb",
        **body,
    }
    return client.post(f"/api/ogc/processes/{pid}/execution", json=payload, headers=headers or {})


# -- bootstrap ------------------------------------------------------------------------------


def test_config_document_has_what_maap_py_reads(api: TestClient) -> None:
    doc = api.get("/api/environment/config").json()
    assert doc["service"]["maap_api_root"].endswith("/api")
    assert isinstance(doc["service"]["maap_token"], str)
    assert not doc["service"]["maap_token"].lower().startswith(("bearer", "basic"))
    for key in (
        "processes_ogc",
        "jobs_ogc",
        "deployment_jobs_ogc",
        "member",
        "algorithm_register",
        "dps_job",
        "mas_algo",
    ):
        assert doc["maap_endpoint"][key]
    assert doc["search"]["indexed_attributes"] == []
    assert api.get("/api/environment/config/some-ade-host").status_code == 200


# -- algorithms -----------------------------------------------------------------------------


def test_numeric_process_id_and_name_both_work(api: TestClient) -> None:
    pid = register(api)
    by_number = api.get(f"/api/ogc/processes/{pid}", headers=ECHO10).json()
    by_name = api.get("/api/ogc/processes/demo:main").json()
    assert by_number["processID"] == by_name["processID"] == pid
    assert by_number["id"] == "demo" and by_number["version"] == "main"
    assert by_number["inputs"]["input_file"]["type"] == "file"
    assert by_number["inputs"]["size"]["default"] == "10"
    assert by_number["queue"] == "dps-worker-8gb"  # MAAP's queue name, mapped
    listed = api.get("/api/ogc/processes").json()["processes"]
    assert pid in [p["processID"] for p in listed]
    package = api.get(f"/api/ogc/processes/{pid}/package").json()
    assert "demo_repo" in package["package"]


def test_register_again_replaces_and_legacy_list_describe_delete(api: TestClient) -> None:
    first = register(api)
    again = register(api, algorithm_description="changed")
    assert again == first
    listed = api.get("/api/mas/algorithm").json()
    assert listed["code"] == 200 and listed["message"] == "success"
    assert {"type": "demo", "version": "main"} in listed["algorithms"]
    offering = ET.fromstring(api.get("/api/mas/algorithm/demo:main", headers=ECHO10).text)
    assert offering.tag.endswith("ProcessOfferings")
    assert "job-demo:main" in ET.tostring(offering, encoding="unicode")
    deleted = api.delete("/api/mas/algorithm/demo:main").json()
    assert deleted["code"] == 200 and "demo:main" in deleted["message"]
    assert {"type": "demo", "version": "main"} not in api.get("/api/mas/algorithm").json()[
        "algorithms"
    ]


@pytest.mark.parametrize("missing", ["repository_url", "run_command"])
def test_registration_missing_field_is_maap_400(api: TestClient, missing: str) -> None:
    body = algorithm()
    del body[missing]
    response = api.post(
        "/api/mas/algorithm", content=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": f"{missing}: this field is required"}


def test_registration_tolerates_trailing_commas_and_old_schema(api: TestClient) -> None:
    text = json.dumps(algorithm(name="commas")).replace("}", ",}")
    assert api.post("/api/mas/algorithm", content=text).status_code == 200
    old = {
        "algo_name": "old",
        "version": "v1",
        "repo_url": "https://example.invalid/x/old.git",
        "script_command": "old/run.sh",
        "algorithm_params": [{"field": "in", "download": True}],
    }
    response = api.post("/api/mas/algorithm", content=json.dumps(old))
    assert response.status_code == 200, response.text
    inputs = api.get("/api/ogc/processes/old:v1").json()["inputs"]
    assert inputs["in"]["type"] == "file"


CWL = """cwlVersion: v1.2
$graph:
- class: Workflow
  id: my-algo
  label: My algorithm
  doc: What it does
  inputs: {bbox: {type: string}}
  outputs: {out: {type: Directory, outputSource: process/outputs_result}}
  steps:
    process: {run: '#main', in: {bbox: bbox}, out: [outputs_result]}
- class: CommandLineTool
  id: main
  requirements:
    ResourceRequirement: {ramMin: 5, coresMin: 1}
  baseCommand: echo
  inputs: {bbox: {type: string, inputBinding: {prefix: --bbox}}}
  outputs: {outputs_result: {type: Directory, outputBinding: {glob: .}}}
s:version: "1.0.0"
s:codeRepository: https://github.com/org/my-algo.git
$namespaces: {s: https://schema.org/}
"""


def test_cwl_deploy_without_cwl_support_says_so(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("opendps.api.maap.registration.cwl_available", lambda: False)
    response = api.post("/api/ogc/processes", json={"cwlRawText": CWL})
    assert response.status_code == 400
    assert "CWL deploy is not available" in response.json()["detail"]


def test_cwl_deploy_raw_text_and_href(api: TestClient, http_files: Any) -> None:
    from opendps.api.maap.registration import cwl_available

    if not cwl_available():
        pytest.skip("this server has no CWL support")
    response = api.post("/api/ogc/processes", json={"cwlRawText": CWL})
    assert response.status_code == 202, response.text
    deployed = response.json()
    assert (deployed["id"], deployed["version"]) == ("my-algo", "1.0.0")
    described = api.get(f"/api/ogc/processes/{deployed['processID']}").json()
    assert "bbox" in described["inputs"]
    http_files.add("algo.cwl", CWL.replace("1.0.0", "2.0.0").encode())
    by_href = api.post(
        "/api/ogc/processes", json={"executionUnit": {"href": http_files.url("algo.cwl")}}
    )
    assert by_href.status_code == 202, by_href.text
    assert by_href.json()["version"] == "2.0.0"
    replaced = api.put(f"/api/ogc/processes/{deployed['processID']}", json={"cwlRawText": CWL})
    assert replaced.status_code == 202
    mismatch = api.put(
        f"/api/ogc/processes/{deployed['processID']}",
        json={"executionUnit": {"href": http_files.url("algo.cwl")}},
    )
    assert mismatch.status_code == 400 and "must match" in mismatch.json()["detail"]
    unreachable = api.post(
        "/api/ogc/processes", json={"executionUnit": {"href": http_files.url("missing.cwl")}}
    )
    assert unreachable.status_code == 400 and "404" in unreachable.json()["detail"]


def test_ogc_deploy_of_a_maap_yaml_and_its_deployment_status(api: TestClient) -> None:
    import yaml

    response = api.post(
        "/api/ogc/processes", json={"cwlRawText": yaml.safe_dump(algorithm(name="viayaml"))}
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["id"] == "viayaml" and answer["status"] == "accepted"
    status = api.get(f"/api/ogc/deploymentJobs/{answer['deploymentJobID']}").json()
    assert status["status"] == "accepted" and status["id"] == "viayaml"
    duplicate = api.post(
        "/api/ogc/processes", json={"cwlRawText": yaml.safe_dump(algorithm(name="viayaml"))}
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["additionalProperties"]["processID"] == answer["processID"]
    both = api.post("/api/ogc/processes", json={"cwlRawText": "x", "executionUnit": {}})
    assert both.status_code == 400 and "not both" in both.json()["detail"]
    assert api.get("/api/ogc/deploymentJobs/999").status_code == 404


# -- jobs -----------------------------------------------------------------------------------


def test_submit_is_202_visible_at_once_and_results_are_empty(api: TestClient) -> None:
    pid = register(api)
    response = submit(api, pid, dedup=False, tag="run-1")
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "accepted" and job["processID"] == pid
    status = api.get(f"/api/ogc/jobs/{job['jobID']}", headers=ECHO10).json()
    assert status == {
        "jobID": job["jobID"],
        "processID": pid,
        "type": "process",
        "status": "accepted",
    }
    details = api.get(f"/api/ogc/jobs/{job['jobID']}?getJobDetails=TRUE").json()
    assert details["tags"] == ["run-1"] and details["job_queue"] == "dps-worker-8gb"
    assert api.get(f"/api/ogc/jobs/{job['jobID']}/results").json() == {}
    assert api.get(f"/api/ogc/jobs/{job['jobID']}?fields=job_queue").json()["job_queue"]
    assert api.get(f"/api/ogc/jobs/{job['jobID']}?fields=nope").status_code == 400
    metrics = api.get(f"/api/ogc/jobs/{job['jobID']}/metrics").json()
    assert metrics["job_start_time"] is None and "max_mem_usage" in metrics


def test_submit_bad_inputs_are_400_naming_the_input(api: TestClient) -> None:
    pid = register(api)
    missing = api.post(f"/api/ogc/processes/{pid}/execution", json={"inputs": {}, "queue": None})
    assert missing.status_code == 400 and "input_file" in missing.json()["detail"]
    unknown = submit(api, pid, inputs={"input_file": "https://x/y", "nope": 1})
    assert unknown.status_code == 400 and "nope" in unknown.json()["detail"]
    queue = submit(api, pid, queue="no-such-queue")
    assert queue.status_code == 400 and "no-such-queue" in queue.json()["detail"]
    assert submit(api, 9999).status_code == 404


def test_list_honours_every_filter_and_pages(api: TestClient) -> None:
    pid = register(api)
    other = register(api, name="other")
    ids = [submit(api, pid, tag=f"t{n % 2}").json()["jobID"] for n in range(5)]
    submit(api, other, queue="dps-worker-16gb")
    services = api.app.state.services
    services.jobs.cancel(ids[0], "anonymous")

    def listing(query: str) -> dict[str, Any]:
        response = api.get(f"/api/ogc/jobs?{query}", headers=ECHO10)
        assert response.status_code == 200, response.text
        return response.json()

    everything = listing("getJobDetails=True&offset=0&pageSize=10")
    assert everything["numberMatched"] == 6 and len(everything["jobs"]) == 6
    assert everything["jobs"][0]["title"] == "other"  # newest first, with details
    assert listing(f"processID={pid}")["numberMatched"] == 5
    assert listing("processID=demo:main")["numberMatched"] == 5
    assert listing("processID=424242")["numberMatched"] == 0
    assert listing("tag=t1")["numberMatched"] == 2
    assert listing("queue=dps-worker-16gb")["numberMatched"] == 1
    for word in ("dismissed", "Dismissed", "job-revoked", "DISMISSED"):
        assert [j["jobID"] for j in listing(f"status={word}")["jobs"]] == [ids[0]]
    assert listing("status=job-queued")["numberMatched"] == 5
    assert listing("status=deduped")["numberMatched"] == 0
    assert listing("priority=5")["numberMatched"] == 6
    assert listing("priority=3")["numberMatched"] == 0
    assert listing("type=process&datetime=2000-01-01T00:00:00Z/..")["numberMatched"] == 6
    assert listing("datetime=../2000-01-01T00:00:00Z")["numberMatched"] == 0
    assert listing("minDuration=1&maxDuration=100")["numberMatched"] == 0
    assert listing("getJobDetails=false")["jobs"][0].keys() >= {"jobID", "status", "job_type"}
    # limit first, then pageSize; offset pages in a stable order with a next link
    page = listing("limit=2&pageSize=10&offset=0")
    assert len(page["jobs"]) == 2
    assert [link["rel"] for link in page["links"]] == ["self", "next"]
    seen = []
    offset = 0
    while True:
        page = listing(f"pageSize=4&offset={offset}")
        seen += [j["jobID"] for j in page["jobs"]]
        if not any(link["rel"] == "next" for link in page["links"]):
            break
        offset += 4
    assert len(seen) == len(set(seen)) == 6
    bad = api.get("/api/ogc/jobs?status=exploded")
    assert bad.status_code == 400 and "Invalid status" in bad.json()["detail"]
    assert api.get("/api/ogc/jobs?limit=zero").status_code == 400


def test_cancel_accepts_both_wait_spellings(api: TestClient) -> None:
    pid = register(api)
    first, second = (submit(api, pid).json()["jobID"] for _ in range(2))
    answer = api.delete(f"/api/ogc/jobs/{first}?wait_for_completion=true", headers=ECHO10)
    assert answer.status_code == 202
    assert answer.json() == {
        "jobID": first,
        "type": "process",
        "status": "dismissed",
        "current_status": "dismissed",
    }
    assert api.delete(f"/api/ogc/jobs/{second}?waitForCompletion=True").status_code == 202
    again = api.delete(f"/api/ogc/jobs/{first}")
    assert again.status_code == 400 and "Not allowed to cancel" in again.json()["detail"]
    assert api.get(f"/api/ogc/jobs/{first}/results").json() == {}


# -- WPS XML (maap-py 4.x) ------------------------------------------------------------------

EXECUTE = """<wps:Execute xmlns:wps="http://www.opengis.net/wps/2.0"
 xmlns:ows="http://www.opengis.net/ows/2.0" service="WPS" version="2.0.0" response="document"
 mode="sync">
  <ows:Identifier>job-{algo}</ows:Identifier>
  <wps:Input id="identifier"><wps:Data><wps:LiteralValue><![CDATA[wps-tag]]></wps:LiteralValue>
  </wps:Data></wps:Input>
  <wps:Input id="queue"><wps:Data><wps:LiteralValue><![CDATA[maap-dps-worker-8gb]]>
  </wps:LiteralValue></wps:Data></wps:Input>
  <wps:Input id="input_file"><wps:Data><wps:LiteralValue><![CDATA[https://example.invalid/a.tif]]>
  </wps:LiteralValue></wps:Data></wps:Input>
  <wps:Input id="size"><wps:Data><wps:LiteralValue><![CDATA[12]]></wps:LiteralValue></wps:Data>
  </wps:Input>
  <wps:Input id="username"><wps:Data><wps:LiteralValue><![CDATA[someone]]></wps:LiteralValue>
  </wps:Data></wps:Input>
  <wps:Output id="result" transmission="value"/>
</wps:Execute>"""


def test_wps_execute_status_result_metrics_cancel(api: TestClient) -> None:
    register(api)
    response = api.post("/api/dps/job", content=EXECUTE.format(algo="demo:main"), headers=ECHO10)
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.text)
    job_id = root[0].text  # what DpsHelper.submit_job reads
    assert root[0].tag == f"{{{xml.WPS}}}JobID" and "Exception" not in response.text
    job = api.app.state.services.jobs.get(job_id, "anonymous")
    assert job.tags == ["wps-tag"] and job.inputs["size"] == 12 and job.owner == "anonymous"
    status = ET.fromstring(api.get(f"/api/dps/job/{job_id}/status").text)
    assert [c.text for c in status if c.tag.endswith("Status")] == ["Accepted"]
    result = ET.fromstring(api.get(f"/api/dps/job/{job_id}").text)
    assert [c for c in result if c.tag.endswith("Output")] == []
    metrics = ET.fromstring(api.get(f"/api/dps/job/{job_id}/metrics").text)
    assert metrics.tag == "metrics" and metrics[0].tag == "machine_type"
    cancelled = api.post(f"/api/dps/job/cancel/{job_id}")
    assert cancelled.status_code == 202
    assert ET.fromstring(cancelled.text)[1].text == "Dismissed"
    listing = api.get(
        "/api/dps/job/list?get_job_details=True&offset=0&page_size=10"
        "&status=Dismissed&job_type=demo:main"
    ).json()
    assert listing["status"] == 200
    (entry,) = listing["jobs"]
    assert entry[job_id]["status"] == "job-revoked" and entry[job_id]["type"] == "job-demo:main"
    capabilities = api.get("/api/dps/job").text
    assert "job-demo:main" in capabilities


@pytest.mark.parametrize(
    "body, words",
    [
        (b"<wps:Execute", "not well-formed XML"),
        (b"", "empty"),
        (b"<a/>", "expected a wps:Execute"),
        (EXECUTE.format(algo="nope:main").encode(), "nope:main"),
    ],
)
def test_wps_execute_errors_are_exception_reports(api: TestClient, body: bytes, words: str) -> None:
    register(api)
    response = api.post("/api/dps/job", content=body)
    assert 400 <= response.status_code < 500
    root = ET.fromstring(response.text)
    assert root.tag == f"{{{xml.OWS}}}ExceptionReport"
    assert root[0].get("exceptionCode") == "FailedJobSubmit"
    assert words in root[0][0].text
    assert "Traceback" not in response.text


def test_unknown_job_in_wps_is_deleted_status_or_exception(api: TestClient) -> None:
    status = ET.fromstring(api.get("/api/dps/job/nope/status").text)
    assert [c.text for c in status if c.tag.endswith("Status")] == ["Deleted"]
    for path in ("/api/dps/job/nope", "/api/dps/job/nope/metrics"):
        root = ET.fromstring(api.get(path).text)
        assert root.tag.endswith("ExceptionReport")
    assert ET.fromstring(api.post("/api/dps/job/cancel/nope").text).tag.endswith("ExceptionReport")


# -- identity, users, queues, secrets --------------------------------------------------------


def test_identity_headers_and_other_users_jobs(auth_api: TestClient) -> None:
    users = tokens(auth_api, "alice", "bob")
    for header in (
        {"proxy-ticket": users["alice"]},
        {"Authorization": f"Bearer {users['alice']}"},
        {"X-MAAP-API-Key": users["alice"]},
    ):
        assert auth_api.get("/api/members/self", headers=header).json()["username"] == "alice"
    denied = auth_api.get("/api/members/self", headers={"proxy-ticket": "wrong"})
    assert denied.status_code == 401 and denied.json()["code"] == 401
    alice = {"proxy-ticket": users["alice"]}
    bob = {"proxy-ticket": users["bob"]}
    pid = register(auth_api, headers=alice)
    job_id = submit(auth_api, pid, headers=alice).json()["jobID"]
    for path in (
        f"/api/ogc/jobs/{job_id}",
        f"/api/ogc/jobs/{job_id}/results",
        f"/api/ogc/jobs/{job_id}/metrics",
    ):
        response = auth_api.get(path, headers=bob)
        assert response.status_code == 404 and "no job" in response.json()["detail"]
    assert auth_api.delete(f"/api/ogc/jobs/{job_id}", headers=bob).status_code == 404
    assert auth_api.get("/api/ogc/jobs", headers=bob).json()["numberMatched"] == 0
    assert auth_api.get("/api/ogc/jobs", headers=alice).json()["numberMatched"] == 1
    other = ET.fromstring(auth_api.get(f"/api/dps/job/{job_id}/status", headers=bob).text)
    assert [c.text for c in other if c.tag.endswith("Status")] == ["Deleted"]


def test_job_token_acts_as_the_owner_until_the_job_ends(auth_api: TestClient) -> None:
    users = tokens(auth_api, "alice")
    alice = {"proxy-ticket": users["alice"]}
    pid = register(auth_api, headers=alice)
    job_id = submit(auth_api, pid, headers=alice).json()["jobID"]
    services = auth_api.app.state.services
    job_token = {"proxy-ticket": services.identity.job_token(job_id)}
    assert auth_api.get("/api/members/self", headers=job_token).json()["username"] == "alice"
    services.jobs.cancel(job_id, "alice")
    ended = auth_api.get("/api/members/self/secrets", headers=job_token)
    assert ended.status_code == 401 and "ended" in ended.json()["message"]


def test_guest_queues(auth_api: TestClient) -> None:
    users = tokens(auth_api, "alice", guest=("guest",))
    guest = {"proxy-ticket": users["guest"]}
    pid = register(auth_api, headers={"proxy-ticket": users["alice"]})
    queues = auth_api.get("/api/mas/algorithm/resource", headers=guest).json()
    assert queues == {"code": 200, "queues": ["dps-sandbox"], "message": "success"}
    all_queues = auth_api.get(
        "/api/mas/algorithm/resource", headers={"proxy-ticket": users["alice"]}
    ).json()["queues"]
    assert all_queues == ["dps-sandbox", "dps-worker-8gb", "dps-worker-16gb"]
    denied = submit(auth_api, pid, headers=guest, queue="dps-worker-8gb")
    assert denied.status_code == 400
    assert denied.json()["detail"].startswith(
        "FailedJobSubmit: User guest does not have access to queue dps-worker-8gb"
    )
    allowed = submit(auth_api, pid, headers=guest, queue=None)
    assert allowed.status_code == 202 and allowed.json()["queue"] == "dps-sandbox"


def test_secrets_round_trip_and_update(auth_api: TestClient) -> None:
    users = tokens(auth_api, "alice", "bob")
    alice = {"proxy-ticket": users["alice"], "Content-Type": "application/json"}
    bob = {"proxy-ticket": users["bob"]}
    base = "/api/members/self/secrets"
    added = auth_api.post(
        base, content=json.dumps({"secret_name": "s1", "secret_value": "v1"}), headers=alice
    )
    assert added.json() == {"secret_name": "s1"}
    again = auth_api.post(base, json={"secret_name": "s1", "secret_value": "v2"}, headers=alice)
    assert again.status_code == 400 and "already exists" in again.json()["message"]
    assert auth_api.get(base, headers=alice).json() == [{"secret_name": "s1"}]
    assert auth_api.get(base, headers=bob).json() == []
    assert auth_api.get(f"{base}/s1", headers=bob).status_code == 404
    assert auth_api.put(f"{base}/s1", json={"secret_value": "v3"}, headers=alice).status_code == 200
    assert auth_api.get(f"{base}/s1", headers=alice).json() == {
        "secret_name": "s1",
        "secret_value": "v3",
    }
    empty = auth_api.post(base, json={"secret_name": "s2", "secret_value": ""}, headers=alice)
    assert empty.status_code == 400 and "secret_value" in empty.json()["message"]
    assert auth_api.post(base, content=b"{", headers=alice).json()["code"] == 400
    gone = auth_api.delete(f"{base}/s1", headers=alice).json()
    assert gone == {"code": 200, "message": "Successfully deleted secret s1"}
    missing = auth_api.delete(f"{base}/s1", headers=alice)
    assert missing.json() == {"code": 400, "message": "No secret exists with name s1"}
    # encrypted at rest: the plain value is nowhere in the database file
    auth_api.post(
        base, json={"secret_name": "s9", "secret_value": "plain-text-value"}, headers=alice
    )
    database = Path(auth_api.app.state.services.settings.data_dir) / "dps.db"
    assert b"plain-text-value" not in database.read_bytes()


def test_unknown_routes_and_unavailable_services_answer_json(api: TestClient) -> None:
    missing = api.get("/api/nothing/here")
    assert missing.status_code == 404 and "not an endpoint" in missing.json()["message"]
    aws = api.get("/api/members/self/awsAccess/workspaceBucket")
    assert aws.status_code == 501 and "opendps" in aws.json()["message"]


JUNK_BODIES = [
    b"",
    b"null",
    b"[]",
    b"<x>",
    b"\xff\xfe",
    b'{"inputs": [1], "queue": {"a": 1}}',
    b'{"executionUnit": 3, "secret_name": 1}',
    b'{"algorithm_name": {"a": 1}}',
]


def test_junk_never_answers_500(api: TestClient) -> None:
    from opendps.api.maap import config, jobs, mas, members, processes, secrets, wps

    register(api)
    job_id = submit(api, "demo:main").json()["jobID"]
    paths = [
        r.path
        for m in (config, processes, jobs, wps, mas, secrets, members)
        for r in m.router.routes
    ]
    for path in paths:
        for name in (
            "{process_id}",
            "{job_id}",
            "{name}",
            "{algo_id}",
            "{deployment_id}",
            "{username}",
            "{ade_host:path}",
            "{endpoint_uri:path}",
            "{bucket}",
            "{key:path}",
            "{rest:path}",
        ):
            path = path.replace(name, job_id if "job" in name else "demo:main")
        for method in ("GET", "POST", "PUT", "DELETE"):
            for body in JUNK_BODIES:
                for query in ("", "?limit=-1&minDuration=nan&getJobDetails=2&datetime=a/b"):
                    response = api.request(
                        method,
                        path + query,
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                    assert response.status_code < 500 or response.status_code == 501, (
                        method,
                        path,
                        body,
                        response.text,
                    )
                    assert "Traceback" not in response.text


# -- helpers ----------------------------------------------------------------------------------


def test_booleans_and_status_words() -> None:
    assert parse_bool("True", "x") and parse_bool("TRUE", "x") and not parse_bool("False", "x")
    with pytest.raises(MaapError):
        parse_bool("maybe", "x")
    statuses, matchable = parse_status_filter("Succeeded,job-failed,running")
    assert statuses == (JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.RUNNING) and matchable
    assert parse_status_filter("deduped") == ((), False)


def test_execute_parser_keeps_text_and_decodes_lists() -> None:
    parsed = xml.parse_execute(EXECUTE.format(algo="a:b").encode())
    assert parsed.identifier == "job-a:b"
    assert parsed.inputs["size"] == "12" and parsed.inputs["identifier"] == "wps-tag"
    listed = xml.parse_execute(
        b'<Execute><Identifier>job-x</Identifier><Input id="f"><Data><LiteralValue>'
        b'["https://a/1", "https://a/2"]</LiteralValue></Data></Input></Execute>'
    )
    assert listed.inputs["f"] == ["https://a/1", "https://a/2"]
    with pytest.raises(MaapError, match="DOCTYPE"):
        xml.parse_execute(b'<!DOCTYPE x [<!ENTITY a "b">]><Execute/>')
