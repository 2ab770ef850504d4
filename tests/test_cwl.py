"""CWL application packages end to end (OGC API - Processes Part 2 + CWL), against a real
``dps server``: deploy a CommandLineTool and an EO application package (``$graph`` with a
Workflow), execute them (cwltool inside the runner, ``--no-container`` here), stage their
outputs, replace, undeploy; and the Part 2 answers the OGC test suite checks (201 with one
Location, 409 duplicated-process, 415 for text/plain, 204 on replace and undeploy, 403
immutable-process, ``mutable`` on every summary).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.http_server import HttpFiles
from tests.support.live_server import LiveServer
from tests.support.ogc import (
    OGC,
    OGC2,
    REL,
    STATUS_INFO,
    assert_exception,
    assert_valid,
    link,
    running_server,
    wait_job,
    wait_status,
)

CWL_YAML = {"Content-Type": "application/cwl+yaml"}
ASYNC = {"Prefer": "respond-async"}

# A CommandLineTool: File + string + int inputs, a glob output, a JavaScript expression, and
# (as OGC Best Practice packages do) DockerRequirement under requirements.
TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
id: prefix-lines
label: Prefix lines
doc: Prefix the first N lines of a text file with a message
$namespaces: {s: https://schema.org/}
s:softwareVersion: 0.1.0
s:keywords: text, demo
requirements:
  DockerRequirement: {dockerPull: "python:3.12-slim"}
  InlineJavascriptRequirement: {}
baseCommand: [python3, -c]
arguments:
  - position: 0
    valueFrom: |
      import sys
      src, msg, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
      with open(src) as f, open("result.txt", "w") as out:
          for line in f.read().splitlines()[:n]:
              out.write(msg + " " + line + "\\n")
inputs:
  infile:
    type: File
    label: Text file
    inputBinding: {position: 1}
  message:
    type: string
    doc: What each line starts with
    inputBinding: {position: 2}
  lines:
    type: int
    default: 10
    inputBinding: {position: 3, valueFrom: "$(self * 1)"}
outputs:
  result:
    type: File
    outputBinding: {glob: result.txt}
"""

# An EO application package (OGC Best Practice 20-089 shape): a $graph whose Workflow runs
# two CommandLineTools and answers a STAC catalog (a Directory).
APP_PACKAGE = """\
cwlVersion: v1.2
$namespaces: {s: https://schema.org/}
s:softwareVersion: 1.4.0
s:author: [{class: s:Person, s:name: Tester}]
$graph:
  - class: Workflow
    id: water-bodies
    label: Water bodies detection
    doc: Detects water bodies in a scene and publishes a STAC catalog
    requirements: {SubworkflowFeatureRequirement: {}}
    inputs:
      scene: {type: File, label: Scene, doc: the input scene}
      threshold: {type: float, default: 0.5, label: NDWI threshold}
      bands: {type: "string[]", label: Bands}
    outputs:
      stac_catalog: {type: Directory, outputSource: stac/catalog}
      report: {type: File, outputSource: detect/report}
    steps:
      detect:
        run: "#detect"
        in: {scene: scene, threshold: threshold, bands: bands}
        out: [report]
      stac:
        run: "#stac"
        in: {report: detect/report}
        out: [catalog]
  - class: CommandLineTool
    id: detect
    requirements:
      DockerRequirement: {dockerPull: "ghcr.io/example/detect:1.0"}
    baseCommand: [python3, -c]
    arguments:
      - valueFrom: |
          import json, sys
          scene, threshold, bands = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
          pixels = len(open(scene).read().split())
          json.dump({"pixels": pixels, "threshold": threshold, "bands": bands},
                    open("report.json", "w"))
        position: 0
    inputs:
      scene: {type: File, inputBinding: {position: 1}}
      threshold: {type: float, inputBinding: {position: 2}}
      bands: {type: "string[]", inputBinding: {position: 3}}
    outputs:
      report: {type: File, outputBinding: {glob: report.json}}
  - class: CommandLineTool
    id: stac
    requirements:
      - class: DockerRequirement
        dockerPull: ghcr.io/example/stac:1.0
      - class: InitialWorkDirRequirement
        listing:
          - entryname: catalog/catalog.json
            entry: '{"type": "Catalog", "id": "water-bodies", "links": []}'
    baseCommand: [cp]
    arguments: ["$(inputs.report.path)", "catalog/report.json"]
    inputs:
      report: {type: File}
    outputs:
      catalog: {type: Directory, outputBinding: {glob: catalog}}
"""

SLEEPER = """\
cwlVersion: v1.2
class: CommandLineTool
id: sleeper
baseCommand: [sleep]
inputs:
  seconds: {type: int, inputBinding: {position: 1}}
outputs: {}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, httpx.Client]]:
    with running_server(tmp_path_factory, "cwl") as pair:
        yield pair


@pytest.fixture(scope="module")
def http(served: tuple[LiveServer, httpx.Client]) -> httpx.Client:
    return served[1]


@pytest.fixture(scope="module")
def tool(http: httpx.Client) -> str:
    answer = http.post("/processes", content=TOOL, headers=CWL_YAML)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "poem.txt"
    path.write_text("roses\nviolets\nsugar\n")
    return path


def run(http: httpx.Client, process: str, inputs: dict, timeout: float = 90) -> dict:
    answer = http.post(f"/processes/{process}/execution", json={"inputs": inputs}, headers=ASYNC)
    assert answer.status_code == 201, answer.text
    return wait_job(http, answer.json()["jobID"], timeout)


# -- deploy -----------------------------------------------------------------------------------


def test_deploy_answers_201_with_one_location(http: httpx.Client, tool: str) -> None:
    assert tool == "prefix-lines:0.1.0"
    summary = http.get("/processes/prefix-lines").json()
    assert summary["mutable"] is True
    assert summary["jobControlOptions"] == ["async-execute", "dismiss"]
    assert summary["keywords"] == ["text", "demo"]


def test_deploy_twice_is_409_duplicated_process(http: httpx.Client, tool: str) -> None:
    answer = http.post("/processes", content=TOOL, headers=CWL_YAML)
    assert_exception(answer, 409, OGC2 + "duplicated-process")


def test_unsupported_media_type_is_415(http: httpx.Client, tool: str) -> None:
    for answer in (
        http.post("/processes", content=b"", headers={"Content-Type": "text/plain"}),
        http.post("/processes", content=TOOL, headers={"Content-Type": "text/plain"}),
        http.put(f"/processes/{tool}", content=TOOL, headers={"Content-Type": "text/plain"}),
        http.put("/processes/echo", headers={"Content-Type": "text/plain"}),
    ):
        assert_exception(answer, 415, OGC2 + "unsupported-media-type")


def test_every_summary_says_whether_it_is_mutable(http: httpx.Client, tool: str) -> None:
    mutable = {p["id"]: p["mutable"] for p in http.get("/processes").json()["processes"]}
    assert all(isinstance(m, bool) for m in mutable.values())
    assert mutable["echo:1.0.0"] is False and mutable["hello-world:1.0.0"] is False
    assert mutable[tool] is True


def test_builtins_refuse_undeploy_with_403(http: httpx.Client) -> None:
    assert_exception(http.delete("/processes/hello-world"), 403, OGC2 + "immutable-process")


def test_invalid_packages_are_400_naming_the_cwl_error(http: httpx.Client) -> None:
    broken = TOOL.replace("type: int\n", "type: integer-ish\n").replace(
        "prefix-lines", "broken-tool"
    )
    body = assert_exception(http.post("/processes", content=broken, headers=CWL_YAML), 400)
    assert "integer-ish" in body["detail"]
    unknown_source = APP_PACKAGE.replace(
        "in: {report: detect/report}", "in: {report: detect/nothing}"
    )
    body = assert_exception(http.post("/processes", content=unknown_source, headers=CWL_YAML), 400)
    assert "detect/nothing" in body["detail"]
    body = assert_exception(
        http.post("/processes", content="cwlVersion: v1.2\nclass: Nope\n", headers=CWL_YAML), 400
    )
    assert "Nope" in body["detail"]


def test_w_names_a_workflow_that_must_exist(http: httpx.Client) -> None:
    answer = http.post("/processes?w=no-such-workflow", content=APP_PACKAGE, headers=CWL_YAML)
    body = assert_exception(answer, 400, OGC2 + "workflow-not-found")
    assert "water-bodies" in body["detail"]


def test_description_maps_cwl_types(http: httpx.Client, tool: str) -> None:
    description = http.get(f"/processes/{tool}").json()
    assert description["title"] == "Prefix lines"
    inputs = description["inputs"]
    assert list(inputs) == ["infile", "message", "lines"]
    assert inputs["infile"]["schema"] == {"type": "string", "format": "uri"}
    assert inputs["infile"]["title"] == "Text file"
    assert inputs["message"]["description"] == "What each line starts with"
    assert inputs["lines"]["schema"] == {"type": "integer", "format": "int32", "default": 10}
    assert inputs["lines"]["minOccurs"] == 0 and inputs["message"]["minOccurs"] == 1
    assert description["outputs"]["result"]["schema"]["format"] == "uri"
    assert link(description, REL + "execute")


def test_package_is_the_body_as_deployed(http: httpx.Client, tool: str) -> None:
    answer = http.get(f"/processes/{tool}/package")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/cwl+yaml")
    assert answer.text == TOOL


# -- execute ----------------------------------------------------------------------------------


def test_execute_commandlinetool(http: httpx.Client, tool: str, text_file: Path) -> None:
    info = run(
        http,
        tool,
        {"infile": {"href": text_file.as_uri(), "type": "text/plain"}, "message": ">", "lines": 2},
    )
    assert info["status"] == "successful", info
    assert_valid(STATUS_INFO, info)
    # No container engine here: DockerRequirement went to hints, and the job says so.
    assert any("python:3.12-slim" in w and "--no-container" in w for w in info["warnings"])
    results = http.get(f"/jobs/{info['jobID']}/results").json()
    assert results["result"]["type"] == "text/plain"
    assert http.get(results["result"]["href"]).text == "> roses\n> violets\n"
    staged = {o["path"] for o in http.get(f"/jobs/{info['jobID']}/outputs").json()["outputs"]}
    assert {"result.txt", "_results.json", "_stderr.txt"} <= staged
    assert (
        "Final process status is success"
        in http.get(f"/jobs/{info['jobID']}/logs").json()["stderr"]
    )
    metrics = http.get(f"/jobs/{info['jobID']}/metrics").json()
    assert metrics["localize"]["files"] == 1 and metrics["exit_code"] == 0


def test_execute_localizes_http_inputs(
    http: httpx.Client, tool: str, http_files: HttpFiles
) -> None:
    http_files.add("remote.txt", b"one\ntwo\nthree\n")
    info = run(http, tool, {"infile": http_files.url("remote.txt"), "message": "#"})
    assert info["status"] == "successful", info
    results = http.get(f"/jobs/{info['jobID']}/results").json()
    assert http.get(results["result"]["href"]).text == "# one\n# two\n# three\n"
    assert http_files.requests("remote.txt") == 1


def test_execute_validates_inputs(http: httpx.Client, tool: str, text_file: Path) -> None:
    execute = f"/processes/{tool}/execution"
    for inputs in (
        {"message": "x"},  # infile missing
        {"infile": text_file.as_uri(), "message": "x", "lines": "many"},
        {"infile": text_file.as_uri(), "message": "x", "colour": "red"},
    ):
        assert_exception(
            http.post(execute, json={"inputs": inputs}), 400, OGC + "invalid-parameter-value"
        )


def test_eo_application_package(http: httpx.Client, text_file: Path) -> None:
    answer = http.post("/processes", content=APP_PACKAGE, headers=CWL_YAML)
    assert answer.status_code == 201, answer.text
    assert answer.headers["location"].endswith("/processes/water-bodies:1.4.0")
    description = http.get("/processes/water-bodies").json()
    assert description["title"] == "Water bodies detection"
    assert description["inputs"]["bands"]["maxOccurs"] == "unbounded"
    assert description["inputs"]["bands"]["schema"] == {"type": "string"}
    assert description["inputs"]["threshold"]["schema"]["type"] == "number"
    assert set(description["outputs"]) == {"stac_catalog", "report"}
    info = run(
        http,
        "water-bodies",
        {"scene": {"href": text_file.as_uri()}, "threshold": 0.7, "bands": ["green", "nir"]},
    )
    assert info["status"] == "successful", http.get(f"/jobs/{info['jobID']}/logs").json()
    warning = " ".join(info["warnings"])
    assert "ghcr.io/example/detect:1.0" in warning and "ghcr.io/example/stac:1.0" in warning
    results = http.get(f"/jobs/{info['jobID']}/results").json()
    catalog = http.get(results["stac_catalog"]["href"]).json()
    assert catalog["type"] == "Catalog"
    report = http.get(results["report"]["href"]).json()
    assert report == {"pixels": 3, "threshold": 0.7, "bands": ["green", "nir"]}
    staged = {o["path"] for o in http.get(f"/jobs/{info['jobID']}/outputs").json()["outputs"]}
    assert {"catalog/catalog.json", "catalog/report.json", "report.json"} <= staged


def test_failed_cwl_run_is_a_failed_job(http: httpx.Client, tool: str, tmp_path: Path) -> None:
    missing = (tmp_path / "gone.txt").as_uri()
    info = run(http, tool, {"infile": missing, "message": "x"})
    assert info["status"] == "failed" and info["reason"] == "localize_error"
    assert_exception(http.get(f"/jobs/{info['jobID']}/results"), 400)


# -- replace and undeploy ---------------------------------------------------------------------


def test_replace_is_204_and_takes_effect(http: httpx.Client, tool: str) -> None:
    changed = TOOL.replace("label: Prefix lines", "label: Prefix some lines")
    answer = http.put(f"/processes/{tool}", content=changed, headers=CWL_YAML)
    assert answer.status_code == 204, answer.text
    assert http.get(f"/processes/{tool}").json()["title"] == "Prefix some lines"
    assert http.get(f"/processes/{tool}/package").text == changed
    other = TOOL.replace("0.1.0", "0.2.0")
    body = assert_exception(http.put(f"/processes/{tool}", content=other, headers=CWL_YAML), 400)
    assert "0.2.0" in body["detail"]
    assert_exception(
        http.put("/processes/nothing-here", content=TOOL, headers=CWL_YAML),
        404,
        OGC + "no-such-process",
    )


def test_undeploy_is_204_and_refused_while_jobs_run(http: httpx.Client) -> None:
    assert http.post("/processes", content=SLEEPER, headers=CWL_YAML).status_code == 201
    job = http.post("/processes/sleeper/execution", json={"inputs": {"seconds": 60}}).json()
    wait_status(http, job["jobID"], "running")
    assert_exception(http.delete("/processes/sleeper"), 409)
    http.delete(f"/jobs/{job['jobID']}")
    assert wait_job(http, job["jobID"], timeout=30)["status"] == "dismissed"
    answer = http.delete("/processes/sleeper")
    assert answer.status_code == 204
    assert_exception(http.get("/processes/sleeper"), 404, OGC + "no-such-process")
    # The job's history outlives its process.
    assert http.get(f"/jobs/{job['jobID']}").json()["status"] == "dismissed"


# -- other ways in ----------------------------------------------------------------------------


def test_ogc_application_package_by_reference_and_inline(
    http: httpx.Client, tmp_path: Path, http_files: HttpFiles
) -> None:
    http_files.add("app.cwl", TOOL.replace("prefix-lines", "by-ref").encode())
    package = {"executionUnit": {"href": http_files.url("app.cwl"), "type": "application/cwl"}}
    answer = http.post(
        "/processes", json=package, headers={"Content-Type": "application/ogcapppkg+json"}
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["id"] == "by-ref:0.1.0"
    assert http.get("/processes/by-ref/package").json() == package
    inline = {
        "processDescription": {
            "process": {
                "id": "inline-tool",
                "version": "2.0.0",
                "title": "Inline",
                "jobControlOptions": ["sync-execute", "async-execute"],
            }
        },
        "executionUnit": {
            "value": json.loads(json.dumps(__import__("yaml").safe_load(TOOL))),
            "mediaType": "application/cwl+json",
        },
    }
    answer = http.post(
        "/processes", json=inline, headers={"Content-Type": "application/ogcapppkg+json"}
    )
    assert answer.status_code == 201, answer.text
    summary = http.get("/processes/inline-tool:2.0.0").json()
    assert summary["title"] == "Inline"
    assert summary["jobControlOptions"] == ["sync-execute", "async-execute"]
    docker = {"executionUnit": {"type": "docker", "image": "example/x:1"}}
    assert_exception(
        http.post(
            "/processes", json=docker, headers={"Content-Type": "application/ogcapppkg+json"}
        ),
        400,
    )


def test_synchronous_cwl_execution_when_the_package_allows_it(
    http: httpx.Client, text_file: Path
) -> None:
    started = time.monotonic()
    answer = http.post(
        "/processes/inline-tool:2.0.0/execution",
        json={
            "inputs": {"infile": text_file.as_uri(), "message": "*", "lines": 1},
            "outputs": {"result": {}},
            "response": "raw",
        },
    )
    if answer.status_code == 404:
        pytest.skip("needs test_ogc_application_package_by_reference_and_inline")
    assert answer.status_code == 200, answer.text
    assert answer.text == "* roses\n"
    assert answer.headers["content-type"].startswith("text/plain")
    assert time.monotonic() - started < 60


def test_cwl_sent_as_plain_yaml_is_recognised(http: httpx.Client) -> None:
    text = TOOL.replace("prefix-lines", "yaml-tool")
    answer = http.post("/processes", content=text, headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 201, answer.text
    # Replacing it as `dps algorithm register` does answers the summary; Prefer chooses.
    replaced = http.put(
        "/processes/yaml-tool", content=text, headers={"Content-Type": "application/yaml"}
    )
    assert replaced.status_code == 200 and replaced.json()["id"] == "yaml-tool:0.1.0"
    minimal = http.put(
        "/processes/yaml-tool",
        content=text,
        headers={"Content-Type": "application/yaml", "Prefer": "return=minimal"},
    )
    assert minimal.status_code == 204
