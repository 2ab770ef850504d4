"""maap-py 5.1.0, unmodified, driving a real ``dps server`` the way a MAAP notebook does:
MAAP() -> register -> submit_job in a loop over input files -> poll -> results -> metrics
-> list with filters -> cancel -> secrets."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.maap_clients import checksum_repo, checksum_yaml, maap5, wait_built

pytestmark = pytest.mark.slow


def poll(
    maap: Any,
    job_id: str,
    until: tuple[str, ...] = ("successful", "failed", "dismissed"),
    timeout: float = 120,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = maap.get_job_status(job_id).json()
        if status["status"] in until:
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not in {until} after {timeout} s: {status}")


def test_notebook_flow(
    start_live_server: Callable[..., Any],
    make_algorithm_repo: Callable[..., Path],
    http_files: Any,
    tmp_path: Path,
) -> None:
    server = start_live_server()
    maap = maap5(server.url)
    assert maap.config.maap_api_root == f"{server.url}/api/"

    # register the 5.x way: the YAML's text through deploy_algorithm_from_cwl_file
    repo = checksum_repo(make_algorithm_repo)
    config = tmp_path / "algorithm_config.yaml"
    config.write_text(checksum_yaml(repo))
    deployed = maap.deploy_algorithm_from_cwl_file(str(config))
    assert deployed.status_code == 202, deployed.text
    pid = deployed.json()["processID"]
    deployment = maap.get_deployment_status(deployed.json()["deploymentJobID"]).json()
    assert deployment["status"] in ("accepted", "running", "successful")
    wait_built(server.url, str(pid))
    assert (
        maap.get_deployment_status(deployed.json()["deploymentJobID"]).json()["status"]
        == "successful"
    )
    assert pid in [p["processID"] for p in maap.list_algorithms().json()["processes"]]
    described = maap.describe_algorithm(pid).json()
    assert described["id"] == "checksum" and "input_file" in described["inputs"]
    assert maap.get_algorithm_package(pid).json()["package"].startswith("algorithm_description")

    # submit in a loop over input files, as notebooks do
    contents = {f"granule_{n}.tif": f"pixels {n}".encode() * 1000 for n in range(3)}
    for name, data in contents.items():
        http_files.add(name, data)
    queues = maap.get_queues().json()["queues"]
    assert "dps-worker-8gb" in queues
    jobs = {}
    for name in contents:
        response = maap.submit_job(
            pid,
            {"input_file": http_files.url(name), "message": name},
            "maap-dps-worker-8gb",
            dedup=False,
            tag="notebook-run",
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["jobID"]
        # visible at once: no 5-second ghost
        assert maap.get_job_status(job_id).json()["status"] in ("accepted", "running")
        jobs[name] = job_id

    for name, job_id in jobs.items():
        assert poll(maap, job_id)["status"] == "successful"
        result = maap.get_job_result(job_id).json()
        links = result["additionalProp1"]["links"]
        files = {link["title"]: link["href"] for link in links if link.get("rel") == "item"}
        digest = httpx.get(files[f"{name}.sha256"], timeout=30).text.strip()
        assert digest == hashlib.sha256(contents[name]).hexdigest()
        assert httpx.get(files["message.txt"], timeout=30).text.strip() == name
        metrics = maap.get_job_metrics(job_id).json()
        assert metrics["job_duration_seconds"] >= 0 and metrics["job_end_time"]
        assert metrics["read_io_stats"] == len(contents[name])

    # 5.1.0's orphaned DPSJob class reads the same jobs through the WPS XML routes
    from maap.dps.dps_job import DPSJob

    legacy = DPSJob(maap.config)
    legacy.id = jobs[next(iter(contents))]
    legacy.wait_for_completion(initial_delay_seconds=0)
    assert legacy.status == "Succeeded"
    assert any(url.endswith(".sha256") for url in legacy.retrieve_result())
    assert legacy.retrieve_metrics()["job_end_time"]

    # list with filters and paging
    def ids(**kwargs: Any) -> list[str]:
        response = maap.list_jobs(**kwargs)
        assert response.status_code == 200, response.text
        return [job["jobID"] for job in response.json()["jobs"]]

    everything = set(jobs.values())
    assert set(ids()) == everything
    for status in ("successful", "Succeeded", "job-completed"):
        assert set(ids(process_id=pid, status=status)) == everything
    assert ids(status="failed") == []
    assert set(ids(tag="notebook-run", queue="dps-worker-8gb")) == everything
    assert len(ids(limit=2)) == 2 and len(ids(page_size=2)) == 2
    paged = ids(page_size=2, offset=0) + ids(page_size=2, offset=2)
    assert len(paged) == 3 and set(paged) == everything
    assert (
        set(
            ids(
                min_duration=0,
                max_duration=3600,
                type="process",
                datetime="2000-01-01T00:00:00Z/..",
                get_job_details=False,
            )
        )
        == everything
    )

    # cancel a running job, waiting for it to stop
    http_files.add("slow.tif", b"x")
    slow = maap.submit_job(
        pid, {"input_file": http_files.url("slow.tif"), "sleep_seconds": 60}, "dps-worker-16gb"
    ).json()["jobID"]
    poll(maap, slow, until=("running",))
    cancelled = maap.cancel_job(slow, wait_for_completion=True)
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "dismissed"
    assert maap.get_job_status(slow).json()["status"] == "dismissed"
    assert maap.cancel_job(slow).status_code == 400  # already over

    # secrets round trip
    assert maap.secrets.add_secret("token", "s3cr3t") == {"secret_name": "token"}
    assert maap.secrets.get_secrets() == [{"secret_name": "token"}]
    assert maap.secrets.get_secret("token") == "s3cr3t"
    again = maap.secrets.add_secret("token", "other")
    assert again["code"] == 400 and "already exists" in again["message"]
    assert maap.secrets.get_secret("nope") == {
        "code": 404,
        "message": "No secret exists with name nope",
    }
    assert maap.secrets.delete_secret("token")["code"] == 200
    assert maap.secrets.get_secrets() == []
    assert maap.profile.account_info()["username"] == "anonymous"

    # an algorithm with no running jobs can be deleted
    assert maap.delete_algorithm(pid).status_code == 200
    assert maap.describe_algorithm(pid).status_code == 404


def test_guest_queue_and_other_users_with_auth(
    start_live_server: Callable[..., Any],
    make_algorithm_repo: Callable[..., Path],
    http_files: Any,
    tmp_path: Path,
) -> None:
    from tests.support.maap_clients import maap_users

    config = tmp_path / "dps.yaml"
    config.write_text(
        "queues:\n"
        "  - {name: dps-sandbox, slots: 1, guest: true}\n"
        "  - {name: dps-worker-8gb, slots: 2, default: true}\n"
    )
    server = start_live_server(
        env={
            "DPS_AUTH": "true",
            "DPS_ALLOW_PRIVATE_URLS": "true",
            "DPS_ALLOW_LOCAL_REPOSITORIES": "true",
        },
        config=config,
    )
    users = maap_users(server.data_dir, "alice", guest=("guest",))
    alice, guest = maap5(server.url, users["alice"]), maap5(server.url, users["guest"])
    repo = checksum_repo(make_algorithm_repo)
    config_file = tmp_path / "algorithm_config.yaml"
    config_file.write_text(checksum_yaml(repo, queue="dps-sandbox"))
    pid = alice.deploy_algorithm_from_cwl_file(str(config_file)).json()["processID"]
    assert guest.get_queues().json()["queues"] == ["dps-sandbox"]
    http_files.add("in.tif", b"data")
    denied = guest.submit_job(pid, {"input_file": http_files.url("in.tif")}, "dps-worker-8gb")
    assert denied.status_code == 400
    assert "does not have access to queue dps-worker-8gb" in denied.json()["detail"]
    job_id = alice.submit_job(
        pid, {"input_file": http_files.url("in.tif")}, "dps-worker-8gb"
    ).json()["jobID"]
    hidden = guest.get_job_status(job_id)
    assert hidden.status_code == 404 and "no job" in hidden.json()["detail"]
    assert guest.list_jobs().json()["jobs"] == []
    anonymous = maap5(server.url)  # no MAAP_PGT: no proxy-ticket header
    assert anonymous.list_jobs().status_code == 401
