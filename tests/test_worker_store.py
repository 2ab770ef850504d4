"""The scale-out part of the store, on SQLite and PostgreSQL: claim by id, fencing by
attempt, heartbeats, lost-worker recovery and the broker bookkeeping (no broker needed)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from opendps.errors import InvalidTransition
from opendps.executors.liveness import recover_lost_workers
from opendps.models import BuildStatus, JobStatus, Reason
from opendps.service.context import Services
from tests.support.dps import BACKENDS

pytestmark = pytest.mark.parametrize("db_url", BACKENDS, indirect=True)


def _algorithm(services: Services) -> Any:
    return services.catalog.save_algorithm(
        name="algo",
        version="1",
        owner="anonymous",
        spec={},
        package=None,
        package_type=None,
        build_status=BuildStatus.READY,
    )


def _job(services: Services, algo: Any, **fields: Any) -> Any:
    spec = {
        "algorithm_id": algo.id,
        "algorithm": "algo",
        "version": "1",
        "owner": "anonymous",
        "queue": "dps-worker-8gb",
        "priority": 5,
        "tags": [],
        "inputs": {},
    }
    return services.job_store.create_jobs([{**spec, **fields}])[0]


def test_claim_job_runs_an_accepted_job_once(services: Services) -> None:
    job = _job(services, _algorithm(services))
    store = services.job_store
    claimed = store.claim_job(job.id, host="h1", worker="w1")
    assert claimed is not None and claimed.status == JobStatus.RUNNING and claimed.attempts == 1
    assert store.claim_job(job.id, host="h2", worker="w2") is None  # a duplicate message
    [attempt] = store.attempts(job.id)
    assert (attempt.worker, attempt.number) == ("w1", 1)


def test_claim_job_refuses_cancelled_and_not_yet_built_jobs(services: Services) -> None:
    store = services.job_store
    cancelled = _job(services, _algorithm(services))
    store.request_cancel(cancelled.id)
    assert store.claim_job(cancelled.id, host="h", worker="w") is None
    waiting = services.catalog.save_algorithm(
        name="later",
        version="1",
        owner="anonymous",
        spec={},
        package=None,
        package_type=None,
        build_status=BuildStatus.QUEUED,
    )
    unbuilt = _job(services, waiting, algorithm="later")
    assert store.claim_job(unbuilt.id, host="h", worker="w") is None
    assert store.get_job(unbuilt.id).status == JobStatus.ACCEPTED


def test_a_stale_attempt_cannot_end_a_rerun(services: Services) -> None:
    store = services.job_store
    job = _job(services, _algorithm(services))
    store.claim_job(job.id, host="h1", worker="w1")
    store.requeue(job.id, "lost", attempt=1)
    store.claim_job(job.id, host="h2", worker="w2")  # attempt 2 runs elsewhere
    with pytest.raises(InvalidTransition):
        store.transition(job.id, JobStatus.SUCCESSFUL, allowed_from=[JobStatus.RUNNING], attempt=1)
    with pytest.raises(InvalidTransition):
        store.requeue(job.id, "lost again?", attempt=1)
    done = store.transition(
        job.id, JobStatus.SUCCESSFUL, allowed_from=[JobStatus.RUNNING], attempt=2
    )
    assert done.status == JobStatus.SUCCESSFUL
    attempts = store.attempts(job.id)
    assert [a.finished is not None for a in attempts] == [True, True]


def test_a_silent_worker_s_job_is_requeued_then_failed_at_the_cap(services: Services) -> None:
    services.settings.heartbeat_timeout = 0.2
    services.settings.max_attempts = 2
    store, workers = services.job_store, services.worker_store
    job = _job(services, _algorithm(services))
    workers.mark_enqueued([job.id])
    for attempt, worker in ((1, "w1"), (2, "w2")):
        workers.heartbeat(worker, host="h", queues=["dps-worker-8gb"], concurrency=1, running=[])
        assert store.claim_job(job.id, host="h", worker=worker) is not None
        time.sleep(0.3)
        workers.heartbeat("alive", host="h", queues=["dps-worker-8gb"], concurrency=1, running=[])
        [recovered] = recover_lost_workers(services)
        assert recovered.attempts == attempt
        assert worker not in {w.id for w in workers.list_workers()}  # forgotten once recovered
        if attempt == 1:
            assert recovered.status == JobStatus.ACCEPTED
            # Re-queued jobs lose their broker mark: the sweeper publishes them again.
            assert [u.id for u in workers.unenqueued(older_than=0)] == [job.id]
    final = store.get_job(job.id)
    assert final.status == JobStatus.FAILED and final.reason == Reason.WORKER_LOST
    assert recover_lost_workers(services) == []  # nothing twice


def test_jobs_claimed_by_a_worker_that_never_beat_are_recovered(services: Services) -> None:
    services.settings.heartbeat_timeout = 0.2
    job = _job(services, _algorithm(services))
    services.job_store.claim_job(job.id, host="h", worker="ghost")
    assert recover_lost_workers(services) == []  # within its grace
    time.sleep(0.3)
    [recovered] = recover_lost_workers(services)
    assert recovered.id == job.id and recovered.status == JobStatus.ACCEPTED


def test_unenqueued_lists_accepted_jobs_with_a_ready_build_and_no_message(
    services: Services,
) -> None:
    workers = services.worker_store
    ready = _algorithm(services)
    published, pending = _job(services, ready), _job(services, ready)
    workers.mark_enqueued([published.id])
    time.sleep(0.05)
    assert [u.id for u in workers.unenqueued(older_than=0)] == [pending.id]
    assert workers.unenqueued(older_than=3600) == []  # too fresh: its publish may be under way
    workers.clear_enqueued(published.id)
    assert {u.id for u in workers.unenqueued(older_than=0)} == {published.id, pending.id}
