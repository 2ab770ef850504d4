"""opendps.client against a real ``dps server`` subprocess (tests/support/live_server.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from opendps.client import (
    APIError,
    Client,
    ServerUnreachable,
    _safe_target,
    _sse_events,
    registration_id,
)
from tests.support.dps import algorithm_yaml, wait_until
from tests.support.http_server import HttpFiles
from tests.support.live_server import LiveServer, free_port

pytestmark = pytest.mark.slow

# greeting (required), code (exit code), pause (seconds): all positional, in this order.
RUN_SH = """#!/bin/bash
set -e
echo "greeting=$1 code=$2"
echo "note: $1" >&2
ls input > output/listing.txt
for f in input/*; do [ -e "$f" ] && cp "$f" output/; done
echo "$1" > output/greeting.txt
mkdir -p output/sub && echo nested > output/sub/nested.txt
sleep "${3:-0}"
exit "${2:-0}"
"""

DEMO_INPUTS = """\
  file:
    - name: infile
      required: false
  positional:
    - name: greeting
    - name: code
      default: "0"
    - name: pause
      default: "0"
"""


def demo_algorithm(
    make_algorithm_repo: Callable[..., Path],
    tmp_path: Path,
    name: str = "demo",
    build_script: str | None = None,
    build_counter: Any = None,
) -> Path:
    """A repo with run.sh and build.sh and its registration YAML; answers the YAML's path.

    With ``build_counter`` (a ``run_log``), every build reports "built" there (to count
    rebuilds: a boxed build can write only its own build folder).
    """
    report = build_counter.report("built") + "\n" if build_counter is not None else ""
    build = build_script or f"#!/bin/bash\necho building\n{report}"
    repo = make_algorithm_repo(
        {"run.sh": RUN_SH, "build.sh": build},
        executable=["run.sh", "build.sh"],
        name=f"{name}_repo",
    )
    path = tmp_path / f"{name}.yml"
    path.write_text(algorithm_yaml(repo, name=name, build="build.sh", inputs=DEMO_INPUTS))
    return path


def registered(server: LiveServer, yaml_path: Path) -> str:
    summary = server.client.register(yaml_path)
    description = server.client.wait_for_build(summary["id"], timeout=120)
    assert description["build"]["status"] == "ready", server.client.build_log(summary["id"])
    return summary["id"]


def test_register_submit_wait_logs_outputs_metrics(
    live_server: LiveServer,
    make_algorithm_repo: Callable[..., Path],
    tmp_path: Path,
    http_files: HttpFiles,
) -> None:
    client = live_server.client
    yaml_path = demo_algorithm(make_algorithm_repo, tmp_path)

    summary = client.register(yaml_path)
    assert summary["id"] == "demo:main"
    assert summary["build"]["status"] in ("queued", "building", "ready")
    described = client.wait_for_build("demo:main", timeout=120)
    assert described["build"]["status"] == "ready"
    assert len(described["build"]["commit"]) == 40
    assert "building" in client.build_log("demo")
    assert "demo:main" in {p["id"] for p in client.list_algorithms()}
    with pytest.raises(APIError) as duplicate:
        client.register(yaml_path.read_text(), replace=False)
    assert duplicate.value.status == 409
    assert "already registered" in duplicate.value.detail
    assert client.register(yaml_path)["id"] == "demo:main"  # replace: PUT after the 409
    client.wait_for_build("demo:main", timeout=120)

    http_files.add("remote.txt", b"from http\n")
    local = tmp_path / "local.txt"
    local.write_text("from file\n")
    info = client.submit(
        "demo:main",
        {
            "greeting": "hello",
            "infile": [http_files.url("remote.txt"), local.as_uri()],
        },
        tag="e2e",
        priority=7,
    )
    assert info["status"] == "accepted" and info["priority"] == 7 and info["tags"] == ["e2e"]
    job_id = info["jobID"]

    seen: list[str] = []
    final = client.wait(job_id, timeout=120, poll=0.1, on_update=lambda i: seen.append(i["status"]))
    assert final["status"] == "successful", client.logs(job_id)
    assert seen[-1] == "successful" and seen.count("successful") == 1

    logs = client.logs(job_id)
    assert logs["stdout"] == "greeting=hello code=0\n"
    assert logs["stderr"] == "note: hello\n"
    streamed = list(client.follow_logs(job_id))  # a finished job: everything, then the end
    assert "".join(t for s, t in streamed if s == "stdout") == logs["stdout"]

    listing = client.outputs(job_id)
    paths = {o["path"] for o in listing["outputs"]}
    assert {"greeting.txt", "remote.txt", "local.txt", "sub/nested.txt"} <= paths
    assert "/e2e/" in listing["location"]
    written = client.download_outputs(job_id, tmp_path / "download")
    assert len(written) == len(paths)
    download = tmp_path / "download"
    assert (download / "remote.txt").read_bytes() == b"from http\n"
    assert (download / "sub" / "nested.txt").read_text() == "nested\n"
    assert (download / "listing.txt").read_text().split() == ["local.txt", "remote.txt"]
    assert not list(download.rglob("*.part"))

    metrics = client.metrics(job_id)
    assert metrics["exit_code"] == 0
    assert metrics["localize"]["files"] == 2
    assert metrics["run_seconds"] is not None and metrics["queue_wait_seconds"] is not None
    results = client.results(job_id)
    assert {link["title"] for link in results["output"]} >= {"greeting.txt", "remote.txt"}
    assert [e["status"] for e in client.events(job_id)][-1] == "successful"


def test_failed_job_and_validation_errors(
    live_server: LiveServer, make_algorithm_repo: Callable[..., Path], tmp_path: Path
) -> None:
    client = live_server.client
    process_id = registered(live_server, demo_algorithm(make_algorithm_repo, tmp_path))

    final = client.wait(
        client.submit(process_id, {"greeting": "x", "code": 3})["jobID"], timeout=120, poll=0.1
    )
    assert (final["status"], final["reason"], final["phase"]) == ("failed", "exit_code", "run")
    with pytest.raises(APIError) as failed:
        client.results(final["jobID"])
    assert failed.value.status == 500 and "exit code 3" in failed.value.detail

    with pytest.raises(APIError) as missing:
        client.submit(process_id, {})
    assert missing.value.status == 400 and "greeting" in missing.value.detail
    with pytest.raises(APIError) as unknown:
        client.submit(process_id, {"greeting": "x", "colour": "red"})
    assert "colour" in unknown.value.detail
    assert unknown.value.body["type"].endswith("invalid-parameter-value")
    with pytest.raises(APIError) as no_process:
        client.describe("nothing:here")
    assert no_process.value.status == 404 and "nothing:here" in no_process.value.detail
    with pytest.raises(APIError) as no_job:
        client.status("no-such-job")
    assert no_job.value.status == 404


def test_list_filters_and_paging(
    live_server: LiveServer, make_algorithm_repo: Callable[..., Path], tmp_path: Path
) -> None:
    client = live_server.client
    process_id = registered(live_server, demo_algorithm(make_algorithm_repo, tmp_path))
    ids = [
        client.submit(process_id, {"greeting": f"g{n}"}, tag="odd" if n % 2 else "even")["jobID"]
        for n in range(7)
    ]
    for job_id in ids:
        client.wait(job_id, timeout=120, poll=0.1)

    every = list(client.iter_jobs(page_size=2))
    assert [j["jobID"] for j in every] == ids[::-1]  # newest first, each exactly once
    page = client.list_jobs(limit=3)
    assert page["numberMatched"] == 7 and page["numberReturned"] == 3
    assert any(link["rel"] == "next" for link in page["links"])
    odd = list(client.iter_jobs(tag="odd", page_size=1))
    assert sorted(j["jobID"] for j in odd) == sorted(ids[1::2])
    assert client.list_jobs(tag="even", status="successful")["numberMatched"] == 4
    assert client.list_jobs(status=["failed", "dismissed"])["numberMatched"] == 0
    assert client.list_jobs(algorithm="demo")["numberMatched"] == 7
    assert client.list_jobs(process_id="other")["numberMatched"] == 0
    with pytest.raises(TypeError):
        client.list_jobs(colour="red")


def test_cancel_running_and_batches(
    live_server: LiveServer, make_algorithm_repo: Callable[..., Path], tmp_path: Path
) -> None:
    client = live_server.client
    process_id = registered(live_server, demo_algorithm(make_algorithm_repo, tmp_path))

    job_id = client.submit(process_id, {"greeting": "slow", "pause": 60})["jobID"]
    wait_until(lambda: client.status(job_id)["status"] == "running", 60, what="running")
    wait_until(lambda: "greeting=slow" in client.logs(job_id)["stdout"], 60, what="output")
    client.cancel(job_id)
    started = time.monotonic()
    final = client.wait(job_id, timeout=60, poll=0.1)
    assert (final["status"], final["reason"]) == ("dismissed", "cancelled")
    assert time.monotonic() - started < 15

    batch = client.submit_batch(
        process_id, [{"greeting": "a"}, {"greeting": "b", "code": 2}, {"greeting": "c"}], tag="b1"
    )
    assert batch["total"] == 3 and len(batch["jobIDs"]) == 3
    wait_until(
        lambda: (
            client.batch_status(batch["batchID"])["counts"]["accepted"] == 0
            and client.batch_status(batch["batchID"])["counts"]["running"] == 0
        ),
        120,
        what="the batch to finish",
    )
    counts = client.batch_status(batch["batchID"])["counts"]
    assert (counts["successful"], counts["failed"]) == (2, 1)
    assert client.list_jobs(batch=batch["batchID"], tag="b1")["numberMatched"] == 3
    failed_id = next(j for j in batch["jobIDs"] if client.status(j)["status"] == "failed")
    retried = client.retry_batch(batch["batchID"])  # in place: same batch, same job
    assert retried["batchID"] == batch["batchID"] and retried["jobIDs"] == [failed_id]

    slow = client.submit_batch(process_id, [{"greeting": "s", "pause": 60}] * 3)
    cancelled = client.cancel_batch(slow["batchID"])
    assert cancelled["batchID"] == slow["batchID"]
    for job_id in slow["jobIDs"]:
        assert client.wait(job_id, timeout=60, poll=0.1)["status"] == "dismissed"

    queues = client.queues()
    assert {q["name"] for q in queues} >= {"dps-sandbox", "dps-worker-8gb"}
    assert client.healthz()["status"] == "ok"


def test_unreachable_server_raises_server_unreachable() -> None:
    client = Client(f"http://127.0.0.1:{free_port()}", timeout=2)
    with client, pytest.raises(ServerUnreachable) as caught:
        client.status("x")
    assert caught.value.status == 0 and "cannot reach" in caught.value.detail
    assert isinstance(caught.value, APIError)


def test_registration_id_reads_every_format() -> None:
    assert registration_id("algorithm_name: a\nalgorithm_version: v1\n") == "a:v1"
    assert registration_id("algo_name: b\nversion: '2.0'\n") == "b:2.0"
    cwl = "cwlVersion: v1.2\nclass: CommandLineTool\nid: tool\ns:version: 1.0.0\n"
    assert registration_id(cwl) == "tool:1.0.0"
    graph = (
        "cwlVersion: v1.2\ns:version: '3'\n$graph:\n  - {class: CommandLineTool, id: t}\n"
        "  - {class: Workflow, id: '#main'}\n"
    )
    assert registration_id(graph) == "main:3"
    assert registration_id("just text") is None


def test_sse_parsing_and_safe_download_paths(tmp_path: Path) -> None:
    lines = [
        "event: stdout",
        'data: "a\\n"',
        "",
        ": comment",
        "event: end",
        'data: "successful"',
        "",
    ]
    assert list(_sse_events(lines)) == [("stdout", '"a\\n"'), ("end", '"successful"')]
    assert _safe_target(tmp_path, "a/b.txt") == tmp_path / "a" / "b.txt"
    for bad in ("../x", "/etc/passwd", "a/../../x", ""):
        with pytest.raises(APIError):
            _safe_target(tmp_path, bad)


def test_live_server_kill_restart_and_teardown(
    start_live_server: Callable[..., LiveServer],
    make_algorithm_repo: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """The fixture the restart-recovery tests build on: kill() leaves the job's processes
    alive, restart() serves the same data dir, close() leaves nothing behind."""
    server = start_live_server(name="restartable")
    process_id = registered(server, demo_algorithm(make_algorithm_repo, tmp_path))
    job_id = server.client.submit(process_id, {"greeting": "long", "pause": 120})["jobID"]
    wait_until(lambda: server.client.status(job_id)["status"] == "running", 60, what="running")
    wait_until(server.processes, 30, what="the job's processes")

    server.kill()
    assert server.process is not None and server.process.returncode == -9
    assert server.processes(), "kill() must not take the job's processes with it"
    server.restart()
    assert server.client.status(job_id)["jobID"] == job_id  # same store after the restart

    server.close()
    assert server.processes() == []


def test_a_server_that_is_not_opendps_gives_a_clear_error(http_files: HttpFiles) -> None:
    http_files.add("healthz", b"<html>hello</html>")
    with Client(http_files.base_url) as client:
        with pytest.raises(APIError, match="not JSON"):
            client.healthz()
        with pytest.raises(APIError) as missing:
            client.status("x")
    assert missing.value.status == 404 and "404" in missing.value.detail
