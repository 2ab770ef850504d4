"""The store contract, on SQLite and PostgreSQL: compare-and-set transitions, claim order,
slots, concurrent claims, listing."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from opendps.errors import InvalidTransition, NoSuchJob
from opendps.models import BuildStatus, JobStatus, Reason
from opendps.service.context import Services
from opendps.settings import Settings
from opendps.store import Database, JobStore
from opendps.store.jobstore import JobFilters
from tests.support.dps import BACKENDS

pytestmark = pytest.mark.parametrize("db_url", BACKENDS, indirect=True)


def _algorithm(services: Services, name: str = "algo", ready: bool = True) -> Any:
    return services.catalog.save_algorithm(
        name=name,
        version="1",
        owner="anonymous",
        spec={},
        package=None,
        package_type=None,
        build_status=BuildStatus.READY if ready else BuildStatus.QUEUED,
    )


def _jobs(services: Services, algorithm: Any, n: int, **fields: Any) -> list[Any]:
    spec = {
        "algorithm_id": algorithm.id,
        "algorithm": algorithm.name,
        "version": "1",
        "owner": "anonymous",
        "queue": "dps-worker-8gb",
        "priority": 5,
        "tags": [],
        "inputs": {},
    }
    return services.job_store.create_jobs([{**spec, **fields} for _ in range(n)])


def test_claim_takes_highest_priority_then_submit_order(services: Services) -> None:
    algorithm = _algorithm(services)
    low = _jobs(services, algorithm, 1, priority=1)[0]
    first_high, second_high = _jobs(services, algorithm, 2, priority=9)
    slots = {"dps-worker-8gb": 10}
    claimed = [services.job_store.claim_next(slots, host="h", worker="w") for _ in range(3)]
    assert [j.id for j in claimed] == [first_high.id, second_high.id, low.id]
    assert all(j.status == JobStatus.RUNNING and j.attempts == 1 for j in claimed)


def test_claim_honours_queue_slots(services: Services) -> None:
    algorithm = _algorithm(services)
    _jobs(services, algorithm, 3)
    slots = {"dps-worker-8gb": 2}
    assert services.job_store.claim_next(slots, host="h", worker="w") is not None
    assert services.job_store.claim_next(slots, host="h", worker="w") is not None
    assert services.job_store.claim_next(slots, host="h", worker="w") is None


def test_claim_skips_jobs_whose_build_is_not_ready(services: Services) -> None:
    waiting = _algorithm(services, "waiting", ready=False)
    _jobs(services, waiting, 1, priority=9)
    ready_job = _jobs(services, _algorithm(services, "ready"), 1, priority=0)[0]
    claimed = services.job_store.claim_next({"dps-worker-8gb": 5}, host="h", worker="w")
    assert claimed is not None and claimed.id == ready_job.id


def test_transition_is_compare_and_set(services: Services) -> None:
    job = _jobs(services, _algorithm(services), 1)[0]
    with pytest.raises(InvalidTransition):
        services.job_store.transition(
            job.id, JobStatus.SUCCESSFUL, allowed_from=[JobStatus.RUNNING]
        )
    services.job_store.transition(job.id, JobStatus.FAILED, reason=Reason.EXIT_CODE)
    with pytest.raises(InvalidTransition):
        services.job_store.transition(job.id, JobStatus.SUCCESSFUL)
    events = services.job_store.job_events(job.id)
    assert [e.status for e in events] == [JobStatus.ACCEPTED, JobStatus.FAILED]


def test_cancel_of_a_queued_job_dismisses_it_at_once(services: Services) -> None:
    job = _jobs(services, _algorithm(services), 1)[0]
    cancelled = services.job_store.request_cancel(job.id)
    assert cancelled.status == JobStatus.DISMISSED
    assert cancelled.reason == Reason.CANCELLED
    assert services.job_store.claim_next({"dps-worker-8gb": 5}, host="h", worker="w") is None


def test_unknown_job_is_not_found(services: Services) -> None:
    with pytest.raises(NoSuchJob):
        services.job_store.get_job("nope")


def test_listing_1000_jobs_through_cursors_returns_each_exactly_once(services: Services) -> None:
    algorithm = _algorithm(services)
    created = {j.id for j in _jobs(services, algorithm, 1000)}
    seen: list[str] = []
    cursor = None
    while True:
        page = services.job_store.list_jobs(JobFilters(), limit=97, cursor=cursor)
        assert page.number_matched == 1000 + len(seen) // 97
        seen += [j.id for j in page.items]
        # jobs created while paging do not shift what is left to read
        _jobs(services, algorithm, 1)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert created <= set(seen)


def test_list_filters_are_evaluated_in_the_database(services: Services) -> None:
    algorithm = _algorithm(services)
    _jobs(services, algorithm, 3, tags=["red"])
    _jobs(services, algorithm, 2, tags=["blue"], queue="dps-sandbox")
    red = services.job_store.list_jobs(JobFilters(tag="red"), limit=2)
    assert red.number_matched == 3 and len(red.items) == 2 and red.next_cursor
    sandbox = services.job_store.list_jobs(JobFilters(queue="dps-sandbox"))
    assert sandbox.number_matched == 2
    accepted = services.job_store.list_jobs(JobFilters(statuses=(JobStatus.ACCEPTED,)))
    assert accepted.number_matched == 5


def test_dedup_answers_the_existing_job(services: Services) -> None:
    algorithm = _algorithm(services)
    first = _jobs(services, algorithm, 1, dedup_key="k")[0]
    again = _jobs(services, algorithm, 1, dedup_key="k")[0]
    assert again.id == first.id and again.deduped


def test_concurrent_claims_never_share_a_job_or_exceed_the_slots(
    services: Services, settings: Settings
) -> None:
    """Four executors (each with its own engine) drain 50 jobs from a queue with 2 slots."""
    algorithm = _algorithm(services)
    _jobs(services, algorithm, 50)
    slots = {"dps-worker-8gb": 2}
    claimed: list[str] = []
    running = peak = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    def executor(name: str) -> None:
        nonlocal running, peak
        db = Database(settings.database_url or "", migrate=False)
        store = JobStore(db)
        try:
            while True:
                job = store.claim_next(slots, host="h", worker=name)
                if job is None:
                    if store.count_jobs(JobFilters(statuses=(JobStatus.ACCEPTED,))) == 0:
                        return
                    time.sleep(0.001)
                    continue
                # Counted after the claim commits and uncounted before the finish
                # commits, so ``running`` never exceeds what the store has running.
                in_store = store.count_jobs(JobFilters(statuses=(JobStatus.RUNNING,)))
                with lock:
                    claimed.append(job.id)
                    running += 1
                    peak = max(peak, running, in_store)
                time.sleep(0.005)
                with lock:
                    running -= 1
                store.transition(job.id, JobStatus.SUCCESSFUL, allowed_from=[JobStatus.RUNNING])
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=executor, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(claimed) == 50 and len(set(claimed)) == 50
    assert peak == 2
    done = services.job_store.list_jobs(JobFilters(statuses=(JobStatus.SUCCESSFUL,)), limit=1)
    assert done.number_matched == 50


def test_concurrent_submits_of_one_dedup_key_create_one_job(
    services: Services, settings: Settings
) -> None:
    algorithm = _algorithm(services)
    barrier = threading.Barrier(4)
    ids: list[str] = []

    def submit() -> None:
        db = Database(settings.database_url or "", migrate=False)
        try:
            barrier.wait()
            spec = {
                "algorithm_id": algorithm.id,
                "algorithm": algorithm.name,
                "version": "1",
                "owner": "anonymous",
                "queue": "dps-worker-8gb",
                "dedup_key": "same-inputs",
            }
            ids.extend(j.id for j in JobStore(db).create_jobs([spec]))
        finally:
            db.dispose()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(ids) == 4 and len(set(ids)) == 1
