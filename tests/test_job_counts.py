"""Maintained job counts (store/counts.py) stay exact through every way a job is created or
changes status, on SQLite and PostgreSQL — single submits, claims, transitions, requeues,
cancels, retries, failed builds, and the campaign paths (CSV / JSON-lines batches, batch
cancel with its background dismissal, retry in place by reason and queue, fair-share claims,
the celery executor's claim); a listing's page and count agree under concurrent inserts."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from opendps.api.batch_input import Shared, rows_from_csv, rows_from_ndjson
from opendps.errors import Conflict, InvalidTransition
from opendps.models import Algorithm, BuildStatus, JobStatus, Phase, Reason
from opendps.registry.spec import parse_registration
from opendps.service.context import Services
from opendps.service.jobs import Submission
from opendps.service.queries import JobQuery
from opendps.store import JobStore
from opendps.store.jobstore import COUNT_LIMIT, JobFilters
from opendps.store.tables import jobs
from tests.support.dps import BACKENDS, algorithm_yaml, wait_until

pytestmark = pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
QUEUE = "dps-worker-8gb"
OTHER = "dps-worker-16gb"
SLOTS = {QUEUE: 1000}


def _algorithm(services: Services, name: str, ready: bool = True) -> Algorithm:
    spec = parse_registration(algorithm_yaml("/nowhere/repo", name=name, version="1"))
    return services.catalog.save_algorithm(
        name=name,
        version="1",
        owner="anonymous",
        spec=spec.model_dump(mode="json"),
        package=None,
        package_type=None,
        build_status=BuildStatus.READY if ready else BuildStatus.QUEUED,
    )


def _submit(services: Services, algorithm: Algorithm, n: int = 1, **kwargs: Any) -> list[Any]:
    subs = [Submission(algorithm.process_id, {}, **kwargs) for _ in range(n)]
    return services.jobs.submit_many(subs, owner="anonymous")


def _submit_batch(
    services: Services, algorithm: Algorithm, n: int, *, user: str = "anonymous", **kwargs: Any
) -> str:
    """A batch of ``n`` jobs through BatchService.submit (the /batches door); its id."""
    subs = [Submission(algorithm.process_id, {}, **kwargs) for _ in range(n)]
    return services.batches.submit(subs, user=user).batch.id


def _matched(services: Services, **query: Any) -> int:
    return services.jobs.list_jobs(JobQuery(**query), "anonymous").number_matched


def _assert_exact(services: Services) -> None:
    assert services.job_store.count_drift() == {}


def test_counts_follow_submit_claim_and_every_transition(services: Services) -> None:
    store = services.job_store
    algorithm = _algorithm(services, "counted")
    _submit(services, algorithm, 5)
    _assert_exact(services)
    assert _matched(services, statuses=(JobStatus.ACCEPTED,)) == 5
    claimed = [store.claim_next(SLOTS, host="h", worker="w") for _ in range(4)]
    assert _matched(services, statuses=(JobStatus.RUNNING,)) == 4
    store.transition(claimed[0].id, JobStatus.SUCCESSFUL, allowed_from=[JobStatus.RUNNING])
    store.transition(claimed[1].id, JobStatus.FAILED, reason=Reason.EXIT_CODE, phase=Phase.RUN)
    store.requeue(claimed[2].id, "supervisor lost", attempt=1)
    _assert_exact(services)
    assert _matched(services, statuses=(JobStatus.ACCEPTED,)) == 2
    assert _matched(services, statuses=(JobStatus.RUNNING,)) == 1
    assert _matched(services, statuses=(JobStatus.SUCCESSFUL, JobStatus.FAILED)) == 2
    assert _matched(services) == 5


def test_a_refused_transition_changes_no_count(services: Services) -> None:
    algorithm = _algorithm(services, "refused")
    job = _submit(services, algorithm)[0]
    with pytest.raises(Exception, match="cannot become"):
        services.job_store.transition(
            job.id, JobStatus.SUCCESSFUL, allowed_from=[JobStatus.RUNNING]
        )
    _assert_exact(services)
    assert _matched(services, statuses=(JobStatus.ACCEPTED,)) == 1


def test_counts_follow_cancel_of_queued_and_running_jobs_and_retry(services: Services) -> None:
    store = services.job_store
    algorithm = _algorithm(services, "cancelled")
    queued, running = _submit(services, algorithm, 2)
    store.claim_next(SLOTS, host="h", worker="w")  # takes `queued` (submit order)
    services.jobs.cancel(running.id, "anonymous")  # still queued: dismissed at once
    services.jobs.cancel(queued.id, "anonymous")  # running: flagged, its supervisor ends it
    store.transition(queued.id, JobStatus.DISMISSED, reason=Reason.CANCELLED)
    _assert_exact(services)
    assert _matched(services, statuses=(JobStatus.DISMISSED,)) == 2
    retried = services.jobs.retry(queued.id, "anonymous")
    assert retried.status == JobStatus.ACCEPTED
    _assert_exact(services)
    assert _matched(services) == 3


def test_a_deduplicated_submission_counts_once(services: Services) -> None:
    algorithm = _algorithm(services, "deduped")
    first = _submit(services, algorithm, dedup=True)[0]
    again = _submit(services, algorithm, dedup=True)[0]
    assert again.deduped and again.id == first.id
    _assert_exact(services)
    assert _matched(services) == 1


def test_batch_counts_follow_cancel_and_retry_of_the_batch(services: Services) -> None:
    store = services.job_store
    algorithm = _algorithm(services, "batched")
    batch_id = _submit_batch(services, algorithm, 6)
    running = store.claim_next(SLOTS, host="h", worker="w")
    assert running is not None and running.batch_id == batch_id
    services.batches.cancel(batch_id, user="anonymous")  # queued ones: in the background
    wait_until(
        lambda: services.batches.get(batch_id, user="anonymous").counts["accepted"] == 0,
        60,
        what="the background dismissal",
    )
    batch = services.batches.get(batch_id, user="anonymous")
    assert batch.counts["dismissed"] == 5 and batch.counts["running"] == 1
    _assert_exact(services)
    assert _matched(services, batch=batch_id) == 6
    store.transition(running.id, JobStatus.DISMISSED, reason=Reason.CANCELLED)
    assert services.batches.get(batch_id, user="anonymous").counts["dismissed"] == 6
    retried = services.batches.retry(batch_id, user="anonymous")  # in place: same batch
    assert len(retried) == 6
    assert services.batches.get(batch_id, user="anonymous").counts["accepted"] == 6
    _assert_exact(services)


def test_a_failed_build_fails_its_waiting_jobs_in_the_counts(services: Services) -> None:
    algorithm = _algorithm(services, "unbuilt", ready=False)
    other = _algorithm(services, "other")
    _submit(services, algorithm, 3)
    _submit(services, other, 2)
    services.job_store.fail_waiting_jobs(algorithm.id, Reason.BUILD_ERROR, Phase.BUILD, "no")
    _assert_exact(services)
    assert _matched(services, statuses=(JobStatus.FAILED,), process_ids=("unbuilt",)) == 3
    assert _matched(services, statuses=(JobStatus.ACCEPTED,)) == 2


def test_deleting_an_algorithm_keeps_its_jobs_counted(services: Services) -> None:
    store = services.job_store
    algorithm = _algorithm(services, "deleted")
    job = _submit(services, algorithm)[0]
    with pytest.raises(Conflict):  # refused while it has active jobs: nothing changes
        services.algorithms.delete(algorithm.process_id, "anonymous")
    store.claim_next(SLOTS, host="h", worker="w")
    store.transition(job.id, JobStatus.SUCCESSFUL)
    services.algorithms.delete(algorithm.process_id, "anonymous")
    _assert_exact(services)
    assert _matched(services, process_ids=("deleted:1",)) == 1


def test_counts_are_per_owner_and_queue(services: Services) -> None:
    algorithm = _algorithm(services, "owned")
    services.jobs.submit(Submission(algorithm.process_id, {}), owner="alice")
    services.jobs.submit(Submission(algorithm.process_id, {}, queue="dps-worker-16gb"), owner="bob")
    filters = services.job_store.count_jobs
    assert filters(JobFilters(owner="alice")) == 1
    assert filters(JobFilters(queue="dps-worker-16gb")) == 1
    assert filters(JobFilters(owner="alice", queue="dps-worker-16gb")) == 0
    _assert_exact(services)


def test_a_filter_the_counters_do_not_key_is_counted_up_to_a_limit(services: Services) -> None:
    algorithm = _algorithm(services, "tagged")
    _submit(services, algorithm, 7, tags=["x"])
    page = services.jobs.list_jobs(JobQuery(tag="x"), "anonymous")
    assert page.number_matched == 7 and page.number_matched_exact
    assert COUNT_LIMIT >= 1000  # the default: below it every such count is exact
    capped = JobStore(services.db, count_limit=5)
    page = capped.list_jobs(JobFilters(tag="x"), limit=2)
    assert (page.number_matched, page.number_matched_exact) == (5, False)  # "at least 5"
    assert len(page.items) == 2 and page.next_cursor is not None
    page = capped.list_jobs(JobFilters(algorithm="tagged"), limit=2)  # a counter key: exact
    assert (page.number_matched, page.number_matched_exact) == (7, True)


def test_listing_with_counts_under_concurrent_inserts_never_repeats_or_skips(
    services: Services,
) -> None:
    algorithm = _algorithm(services, "walked")
    before = {j.id for j in _submit(services, algorithm, 120)}
    stop = threading.Event()
    errors: list[BaseException] = []

    def insert() -> None:
        try:
            while not stop.is_set():
                _submit(services, algorithm, 3)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    writer = threading.Thread(target=insert)
    writer.start()
    try:
        seen: list[str] = []
        matched: list[int] = []
        cursor = None
        while True:
            page = services.jobs.list_jobs(JobQuery(limit=7, cursor=cursor), "anonymous")
            seen += [j.id for j in page.items]
            matched.append(page.number_matched)
            # page and count come from one snapshot: the count covers at least this page
            # and every older job
            assert page.number_matched >= len(seen)
            cursor = page.next_cursor
            if cursor is None:
                break
    finally:
        stop.set()
        writer.join()
    assert not errors
    assert len(seen) == len(set(seen))  # never repeats
    assert before <= set(seen)  # never skips a job that existed when the walk began
    assert matched == sorted(matched)
    _assert_exact(services)
    # the counters' answer equals a count of the rows (priority= is no counter key)
    assert _matched(services) == services.job_store.count_jobs(JobFilters(priority=5))


# -- the campaign paths ------------------------------------------------------------------------


def test_csv_and_json_lines_batches_are_counted_per_queue_and_batch(services: Services) -> None:
    algorithm = _algorithm(services, "uploaded")
    shared = Shared(process=algorithm.process_id)
    csv_rows = rows_from_csv(f"queue,priority\n{QUEUE},5\n{OTHER},9\n{OTHER},1\n", shared)
    csv_batch = services.batches.submit(
        csv_rows.submissions, user="anonymous", where=csv_rows.where
    ).batch
    lines = "\n".join(
        ['{"inputs": {}, "tag": "x"}'] * 4 + [f'{{"inputs": {{}}, "queue": "{OTHER}"}}']
    )
    json_rows = rows_from_ndjson(lines, Shared(process=algorithm.process_id, dedup=True))
    json_batch = services.batches.submit(
        json_rows.submissions, user="anonymous", where=json_rows.where
    ).batch
    _assert_exact(services)
    # dedup inside one upload: the four identical tagged rows are one job, the other is new
    assert (csv_batch.counts["accepted"], json_batch.counts["accepted"]) == (3, 2)
    assert _matched(services, batch=csv_batch.id) == 3
    assert _matched(services, batch=json_batch.id, queue=OTHER) == 1
    assert services.job_store.count_jobs(JobFilters(queue=OTHER)) == 3
    listed = {b.id: b.counts for b in services.job_store.list_batches(owner="anonymous").items}
    assert listed[csv_batch.id]["accepted"] == 3 and listed[json_batch.id]["accepted"] == 2
    assert services.batch_store.stats(csv_batch.id)["eta_seconds"] is None  # 3 left, none done


def test_chunked_dismissal_keeps_counts_exact_after_every_chunk(services: Services) -> None:
    algorithm = _algorithm(services, "chunked")
    batch_id = _submit_batch(services, algorithm, 23)
    assert services.batch_store.request_cancel(batch_id) == 23  # flags only: no status moves
    _assert_exact(services)
    assert services.batches.get(batch_id, user="anonymous").counts["accepted"] == 23
    dismissed = []
    while n := services.batch_store.dismiss_cancelled(limit=7):
        dismissed.append(n)
        _assert_exact(services)
    assert dismissed == [7, 7, 7, 2]
    assert services.batches.get(batch_id, user="anonymous").counts["dismissed"] == 23


def test_retry_in_place_by_reason_and_queue_moves_the_counters(services: Services) -> None:
    store = services.job_store
    algorithm = _algorithm(services, "retried")
    batch_id = _submit_batch(services, algorithm, 6)
    claimed = [store.claim_next(SLOTS, host="h", worker="w") for _ in range(5)]
    reasons = [Reason.OOM, Reason.OOM, Reason.TIMEOUT, None, None]
    for job, reason in zip(claimed, reasons, strict=True):
        assert job is not None
        if reason is None:
            store.transition(job.id, JobStatus.SUCCESSFUL)
        else:
            store.transition(job.id, JobStatus.FAILED, reason=reason, phase=Phase.RUN)
    services.jobs.cancel(store.batch_job_ids(batch_id, [JobStatus.ACCEPTED])[0], "anonymous")
    _assert_exact(services)
    oom = services.batches.retry(batch_id, user="anonymous", reasons=["oom"], queue=OTHER)
    assert len(oom) == 2
    _assert_exact(services)
    assert _matched(services, batch=batch_id, queue=OTHER, statuses=(JobStatus.ACCEPTED,)) == 2
    assert _matched(services, batch=batch_id, queue=QUEUE, statuses=(JobStatus.FAILED,)) == 1
    # the rest in one call: the failed (timeout) and the dismissed (cancelled) job
    rest = services.batches.retry(batch_id, user="anonymous")
    assert len(rest) == 2
    _assert_exact(services)
    counts = services.batches.get(batch_id, user="anonymous").counts
    assert counts == {"accepted": 4, "running": 0, "successful": 2, "failed": 0, "dismissed": 0}


def test_fair_share_claims_with_caps_keep_counts_exact(services: Services) -> None:
    store = services.job_store
    algorithm = _algorithm(services, "shared")
    _submit_batch(services, algorithm, 5, user="alice")
    _submit_batch(services, algorithm, 2, user="bob")
    caps = {QUEUE: 2}
    claimed = [
        store.claim_next(SLOTS, host="h", worker="w", user_caps=caps, fair_share=True)
        for _ in range(5)
    ]
    owners = sorted(j.owner for j in claimed if j is not None)
    assert owners == ["alice", "alice", "bob", "bob"]  # each at its cap, then nothing
    _assert_exact(services)
    running = services.job_store.count_jobs
    assert running(JobFilters(owner="alice", statuses=(JobStatus.RUNNING,))) == 2
    assert running(JobFilters(owner="alice", statuses=(JobStatus.ACCEPTED,))) == 3


def test_the_celery_claim_counts_once_and_a_refused_claim_not_at_all(services: Services) -> None:
    store = services.job_store
    algorithm = _algorithm(services, "brokered")
    first, flagged = _submit(services, algorithm, 2)
    assert store.claim_job(first.id, host="h", worker="celery-1") is not None  # executors/celery
    assert store.claim_job(first.id, host="h", worker="celery-2") is None  # redelivered message
    with services.db.write() as conn:  # the flag a batch cancel sets, before the dismissal
        conn.execute(jobs.update().where(jobs.c.id == flagged.id).values(cancel_requested=True))
    assert store.claim_job(flagged.id, host="h", worker="celery-1") is None
    _assert_exact(services)
    assert _matched(services, statuses=(JobStatus.RUNNING,)) == 1
    assert _matched(services, statuses=(JobStatus.ACCEPTED,)) == 1


def test_a_fenced_requeue_of_another_attempt_changes_no_count(services: Services) -> None:
    store = services.job_store
    algorithm = _algorithm(services, "fenced")
    _submit(services, algorithm)
    job = store.claim_next(SLOTS, host="h", worker="w")
    assert job is not None and job.attempts == 1
    with pytest.raises(InvalidTransition):
        store.requeue(job.id, "a stale supervisor", attempt=2)
    _assert_exact(services)
    assert _matched(services, statuses=(JobStatus.RUNNING,)) == 1
    store.requeue(job.id, "supervisor lost", attempt=1)
    _assert_exact(services)
    assert _matched(services, statuses=(JobStatus.ACCEPTED,)) == 1


def test_a_counted_column_cannot_change_as_a_free_form_field(services: Services) -> None:
    store = services.job_store
    job = _submit(services, _algorithm(services, "guarded"))[0]
    with pytest.raises(ValueError, match="queue"):
        store.update_job(job.id, queue=OTHER)
    with pytest.raises(ValueError, match="owner"):
        store.transition(job.id, JobStatus.DISMISSED, allowed_from=[JobStatus.ACCEPTED], owner="x")
    _assert_exact(services)
    assert store.get_job(job.id).status == JobStatus.ACCEPTED
