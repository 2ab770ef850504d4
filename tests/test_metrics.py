"""``GET /metrics``: Prometheus text that a Prometheus parser reads, with the numbers the
store holds (jobs by queue and status, depth, oldest wait, claims, run-time histogram,
workers, builds)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from opendps.api.app import create_app
from opendps.service.jobs import Submission
from tests.support.dps import (
    BACKENDS,
    ONE_QUEUE,
    algorithm_yaml,
    fast_settings,
    wait_for_build,
    wait_for_job,
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_metrics_count_what_the_store_holds(
    tmp_path: Path, make_algorithm_repo, db_url: str | None
) -> None:
    repo = make_algorithm_repo({"run.sh": "#!/bin/bash\necho hi\n"}, executable=["run.sh"])
    extra = {"database_url": db_url} if db_url else {}
    settings = fast_settings(tmp_path / "dps", queues=ONE_QUEUE, **extra)
    app = create_app(settings, supervisors="thread")
    with TestClient(app) as client:
        services = app.state.services
        from opendps.registry.spec import parse_registration

        services.algorithms.register(parse_registration(algorithm_yaml(repo)), owner="anonymous")
        wait_for_build(services, "demo:main")
        done = [services.jobs.submit(Submission("demo:main", {}), owner="anonymous") for _ in "ab"]
        for job in done:
            assert wait_for_job(services, job.id).status.value == "successful"
        app.state.executor.stop()  # nothing runs what comes next: it waits
        waiting = services.jobs.submit(Submission("demo:main", {}), owner="anonymous")
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    q = (("queue", "q"),)
    assert found[("dps_jobs", (("queue", "q"), ("status", "successful")))] == 2
    assert found[("dps_jobs", (("queue", "q"), ("status", "accepted")))] == 1
    assert found[("dps_queue_depth", q)] == 1
    assert found[("dps_queue_oldest_wait_seconds", q)] >= 0
    assert found[("dps_job_claims_total", q)] == 2
    assert found[("dps_job_run_seconds_count", q)] == 2
    assert found[("dps_job_run_seconds_bucket", (("le", "+Inf"), ("queue", "q")))] == 2
    assert found[("dps_job_queue_wait_seconds_count", q)] == 2
    assert found[("dps_job_queue_wait_seconds_bucket", (("le", "+Inf"), ("queue", "q")))] == 2
    assert found[("dps_job_queue_wait_seconds_sum", q)] >= 0
    assert found[("dps_builds", (("status", "ready"),))] >= 1
    assert ("dps_workers_alive", q) in found
    assert waiting.status.value == "accepted"
