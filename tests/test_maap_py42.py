"""maap-py 4.2.0, unmodified, in its own virtualenv, driving a real ``dps server`` through
the WPS XML job routes and the ``/api/mas/algorithm`` registration of MAAP 4.x."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import maap_clients
from tests.support.maap_clients import (
    checksum_repo,
    checksum_yaml,
    maap_users,
    run_maap42,
    wait_built,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def maap42_python() -> Path:
    """maap-py 4.2.0's virtualenv, built by the first test that needs it (then cached)."""
    return maap_clients.maap42_python()


def test_maap42_notebook_flow(
    start_live_server: Callable[..., Any],
    make_algorithm_repo: Callable[..., Path],
    http_files: Any,
    maap42_python: Path,
    tmp_path: Path,
) -> None:
    server = start_live_server()
    repo = checksum_repo(make_algorithm_repo)
    config = tmp_path / "algorithm_config.yaml"
    config.write_text(checksum_yaml(repo, name="checksum42"))
    broken = tmp_path / "broken.yaml"
    broken.write_text(checksum_yaml(repo, name="broken").replace("run_command:", "#"))

    registered = run_maap42(
        maap42_python,
        server.url,
        f"""
        ok = maap.register_algorithm_from_yaml_file({str(config)!r})
        bad = maap.register_algorithm_from_yaml_file({str(broken)!r})
        out({{"ok": [ok.status_code, ok.json()], "bad": [bad.status_code, bad.json()]}})
    """,
    )
    assert registered["ok"][0] == 200 and registered["ok"][1]["code"] == 200
    assert registered["bad"] == [
        400,
        {"code": 400, "message": "run_command: this field is required"},
    ]
    wait_built(server.url, "checksum42:main")

    contents = {f"scene_{n}.tif": f"scene {n}".encode() * 500 for n in range(2)}
    for name, data in contents.items():
        http_files.add(name, data)
    urls = {name: http_files.url(name) for name in contents}
    done = run_maap42(
        maap42_python,
        server.url,
        f"""
        urls = {urls!r}
        jobs = {{}}
        for name, url in urls.items():
            job = maap.submitJob(identifier="run-42", algo_id="checksum42", version="main",
                                 queue="maap-dps-worker-8gb", input_file=url, message=name)
            assert job.status == "success", (job.status, job.error_details)
            jobs[name] = job.id
        answer = {{}}
        for name, job_id in jobs.items():
            job = maap.getJob(job_id)
            job.wait_for_completion()
            answer[name] = {{
                "id": job_id,
                "status": maap.getJobStatus(job_id),
                "result": maap.getJobResult(job_id),
                "metrics": maap.getJobMetrics(job_id),
            }}
        listed = maap.listJobs(algo_id="checksum42", version="main", status="Succeeded").json()
        compact = maap.listJobs(get_job_details=False, page_size=1, offset=1).json()
        unknown = maap.submitJob(identifier="x", algo_id="nope", version="main", queue="q")
        out({{"jobs": answer, "listed": listed, "compact": compact,
              "unknown": [unknown.status, unknown.error_details]}})
    """,
        timeout=300,
    )
    for name, job in done["jobs"].items():
        assert job["status"] == "Succeeded"
        sha_url = next(u for u in job["result"] if u.endswith(f"{name}.sha256"))
        assert (
            httpx.get(sha_url, timeout=30).text.strip()
            == hashlib.sha256(contents[name]).hexdigest()
        )
        assert float(job["metrics"]["job_duration_seconds"]) >= 0
        assert set(job["metrics"]) >= {"machine_type", "max_mem_usage", "total_io_stats"}
    listed_ids = {next(iter(entry)) for entry in done["listed"]["jobs"]}
    assert listed_ids == {job["id"] for job in done["jobs"].values()}
    entry = done["listed"]["jobs"][0]
    record = next(iter(entry.values()))
    assert record["status"] == "job-completed" and record["type"] == "job-checksum42:main"
    assert record["tags"] == ["run-42"]
    staged = record["job"]["job_info"]["metrics"]["products_staged"][0]
    assert "/dps_output/checksum42/main/run-42/" in staged["product_folder_path"]
    assert len(done["compact"]["jobs"]) == 1
    assert done["unknown"][0] == "failed"
    assert "ExceptionReport" in done["unknown"][1] and "nope" in done["unknown"][1]

    # cancel a running job, then list, describe and delete the algorithm
    http_files.add("slow.tif", b"x")
    cancelled = run_maap42(
        maap42_python,
        server.url,
        f"""
        import time
        job = maap.submitJob(identifier="slow", algo_id="checksum42", version="main",
                             queue="dps-worker-16gb", input_file={http_files.url("slow.tif")!r},
                             sleep_seconds="60")
        while maap.getJobStatus(job.id) != "Running":
            time.sleep(0.2)
        text = maap.cancelJob(job.id)
        job.wait_for_completion()
        out({{"cancel": text, "status": job.status,
              "queues": maap.getQueues().json(),
              "algorithms": maap.listAlgorithms().json(),
              "describe": maap.describeAlgorithm("checksum42:main").text,
              "delete": maap.deleteAlgorithm("checksum42:main").json()}})
    """,
        timeout=300,
    )
    assert "StatusInfo" in cancelled["cancel"] and cancelled["status"] == "Dismissed"
    assert "dps-worker-8gb" in cancelled["queues"]["queues"]
    assert {"type": "checksum42", "version": "main"} in cancelled["algorithms"]["algorithms"]
    assert "job-checksum42:main" in cancelled["describe"]
    assert cancelled["delete"]["code"] == 200


def test_maap42_secrets_and_identity(
    start_live_server: Callable[..., Any], maap42_python: Path
) -> None:
    server = start_live_server(
        env={
            "DPS_AUTH": "true",
            "DPS_ALLOW_PRIVATE_URLS": "true",
            "DPS_ALLOW_LOCAL_REPOSITORIES": "true",
        }
    )
    users = maap_users(server.data_dir, "alice")
    answer = run_maap42(
        maap42_python,
        server.url,
        """
        s = maap.secrets
        out({"add": s.add_secret("k", "v1"), "again": s.add_secret("k", "v2"),
             "list": s.get_secrets(), "get": s.get_secret("k"),
             "missing": s.get_secret("nope"), "delete": s.delete_secret("k"),
             "after": s.get_secrets(), "me": maap.profile.account_info()})
    """,
        token=users["alice"],
    )
    assert answer["add"] == {"secret_name": "k"}
    assert answer["again"]["code"] == 400
    assert answer["list"] == [{"secret_name": "k"}] and answer["get"] == "v1"
    assert answer["missing"]["code"] == 404
    assert answer["delete"]["code"] == 200 and answer["after"] == []
    assert answer["me"]["username"] == "alice"
