"""``JobService.wait`` (the one "until the job ends") and the execute request kept on the
job, through the real executor in-process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from opendps.api.app import create_app
from opendps.builtins import BUILTIN_SPECS
from opendps.errors import NoSuchJob
from opendps.models import JobStatus
from opendps.service.context import Services
from opendps.service.jobs import Submission
from tests.support.dps import fast_settings

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(fast_settings(tmp_path / "dps"), supervisors="process")
    with TestClient(app) as client:
        yield client


def execute(client: TestClient, process: str, body: dict) -> str:
    answer = client.post(
        f"/processes/{process}/execution", json=body, headers={"Prefer": "respond-async"}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["jobID"]


def test_status_waits_for_the_end_and_the_request_is_kept_on_the_job(api: TestClient) -> None:
    job_id = execute(api, "hello-world", {"inputs": {"name": "Ann"}, "response": "raw"})
    final = api.get(f"/jobs/{job_id}?wait=120").json()
    assert final["status"] == "successful"
    services: Services = api.app.state.services
    assert services.job_store.get_job(job_id).request["response"] == "raw"
    history = [e["message"] or "" for e in api.get(f"/jobs/{job_id}/events").json()["events"]]
    assert not any("execute request" in m for m in history), history
    raw = api.get(f"/jobs/{job_id}/results")  # answered as the request asked: raw
    assert raw.status_code == 200 and "Hello Ann!" in raw.text
    assert not raw.headers["content-type"].startswith("application/json"), raw.text


def test_a_wait_that_times_out_answers_the_job_as_it_is(api: TestClient) -> None:
    job_id = execute(api, "echo", {"inputs": {"echoInput": "x", "pause": 30}})
    started = time.monotonic()
    info = api.get(f"/jobs/{job_id}?wait=0.5").json()
    assert info["status"] in ("accepted", "running") and time.monotonic() - started < 5
    too_long = api.get(f"/jobs/{job_id}?wait=601")  # capped at MAX_WAIT
    assert too_long.status_code == 400 and "wait" in too_long.text
    cancelled = api.delete(f"/jobs/{job_id}").json()  # waits for the stop, then answers
    assert cancelled["status"] == "dismissed"


def test_a_wait_for_another_users_job_is_missing_at_once(tmp_path: Path) -> None:
    services = Services(fast_settings(tmp_path / "dps", auth=True))
    services.catalog.sync_queues(services.settings.queues)
    try:
        for name in ("alice", "bob"):
            services.identity.create_user(name)
        for spec in BUILTIN_SPECS:  # what the app registers at start
            services.algorithms.ensure_builtin(spec)
        job = services.jobs.submit(Submission("hello-world", {"name": "a"}), owner="alice")
        started = time.monotonic()
        with pytest.raises(NoSuchJob, match=job.id):
            services.jobs.wait(job.id, "bob", 30)
        assert time.monotonic() - started < 1
        assert services.jobs.wait(job.id, "alice", 0.2).status == JobStatus.ACCEPTED
    finally:
        services.close()
