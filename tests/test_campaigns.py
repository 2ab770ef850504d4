"""Campaigns (issue #12, DESIGN §14) on the real store, on SQLite and PostgreSQL: bulk
batches from CSV / JSON lines with row-precise refusals, fair share and caps in the claim,
statistics, cancel and retry in place, dedup, and listing under concurrent inserts.

Jobs are driven through the store's own transitions (claim, finish) so each scenario is
exact and quick; tests/test_campaigns_live.py runs them through a real server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from opendps.api.app import create_app
from opendps.builtins import BUILTIN_SPECS
from opendps.models import Job, JobStatus, Reason
from opendps.service.context import Services
from opendps.settings import QueueConfig
from opendps.store.db import utcnow
from opendps.store.tables import batches, jobs
from tests.support.dps import BACKENDS, fast_settings, wait_until

pytestmark = pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
QUEUES = [
    QueueConfig(name="main", slots=2, default=True),
    QueueConfig(name="capped", slots=4, max_running_per_user=1),
    QueueConfig(name="big", slots=8),
]
PROCESS = "hello-world:1.0.0"


@pytest.fixture
def dps(tmp_path: Path, db_url: str | None) -> Iterator[Services]:
    settings = fast_settings(
        tmp_path / "dps", queues=QUEUES, **({"database_url": db_url} if db_url else {})
    )
    services = Services(settings)
    services.catalog.sync_queues(settings.queues)
    for spec in BUILTIN_SPECS:
        services.algorithms.ensure_builtin(spec)
    yield services
    services.close()


@pytest.fixture
def http(dps: Services) -> Iterator[TestClient]:
    """The API on the same store, without an executor (jobs stay where the test puts them)."""
    app = create_app(dps.settings, run_jobs=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def spec(dps: Services, owner: str, *, priority: int = 5, queue: str = "main") -> dict[str, Any]:
    algorithm = dps.algorithms.get(PROCESS)
    return {
        "algorithm_id": algorithm.id,
        "algorithm": algorithm.name,
        "version": algorithm.version,
        "owner": owner,
        "queue": queue,
        "priority": priority,
        "tags": [],
        "inputs": {"name": owner},
    }


def claim(dps: Services, queue: str = "main") -> Job | None:
    slots = {queue: dps.settings.queue(queue).slots}  # type: ignore[union-attr]
    caps = {queue: dps.settings.queue(queue).max_running_per_user}  # type: ignore[union-attr]
    return dps.job_store.claim_next(slots, host="test", worker="w", user_caps=caps)


def finish(dps: Services, job: Job, status: JobStatus = JobStatus.SUCCESSFUL, **kw: Any) -> Job:
    return dps.job_store.transition(job.id, status, allowed_from=[JobStatus.RUNNING], **kw)


def row_counts(dps: Services) -> tuple[int, int]:
    with dps.db.read() as conn:
        return (
            conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one(),
            conn.execute(sa.select(sa.func.count()).select_from(batches)).scalar_one(),
        )


# -- big batches ------------------------------------------------------------------------------


def test_csv_batch_with_queue_tag_and_priority_columns(dps: Services, http: TestClient) -> None:
    body = "name,queue,tag,priority\nada,,,\nbob,big,t1,9\n\ncyd,,t2,\n"
    answer = http.post(
        "/batches",
        params={"process": PROCESS, "tag": "shared", "priority": "3"},
        content=body,
        headers={"Content-Type": "text/csv"},
    )
    assert answer.status_code == 201, answer.text
    document = answer.json()
    assert document["total"] == 3 and document["counts"]["accepted"] == 3
    assert document["process"] == PROCESS
    made = [dps.job_store.get_job(i) for i in document["jobIDs"]]
    assert [j.inputs["name"] for j in made] == ["ada", "bob", "cyd"]
    assert [(j.queue, j.tags, j.priority) for j in made] == [
        ("main", ["shared"], 3),
        ("big", ["t1", "shared"], 9),
        ("main", ["t2", "shared"], 3),
    ]


def test_csv_with_a_bad_row_7_is_refused_naming_it_and_creates_nothing(
    dps: Services, http: TestClient
) -> None:
    rows = [f"n{i},5" for i in range(1, 11)]
    rows[6] = "n7,eleven"  # data row 7 is file line 8 (the header is line 1)
    body = "name,priority\n" + "\n".join(rows) + "\n"
    answer = http.post(
        "/batches", params={"process": PROCESS}, content=body, headers={"Content-Type": "text/csv"}
    )
    assert answer.status_code == 400, answer.text
    detail = answer.json()["detail"]
    assert "row 7" in detail and "line 8" in detail and "'priority'" in detail
    assert row_counts(dps) == (0, 0)

    unknown = "name,colour\nx,red\n"
    answer = http.post(
        "/batches",
        params={"process": PROCESS},
        content=unknown,
        headers={"Content-Type": "text/csv"},
    )
    assert answer.status_code == 400
    assert "row 1 (line 2)" in answer.json()["detail"] and "colour" in answer.json()["detail"]
    assert row_counts(dps) == (0, 0)


def test_json_lines_batch_names_a_bad_line(dps: Services, http: TestClient) -> None:
    good = '{"inputs": {"name": "a"}}\n\n{"name": "b", "tag": "x"}\n'
    answer = http.post(
        "/batches",
        params={"process": PROCESS},
        content=good,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["total"] == 2
    bad = '{"inputs": {"name": "a"}}\n{"inputs": {"name": "b"}, "queue": "nowhere"}\n'
    answer = http.post(
        "/batches",
        params={"process": PROCESS},
        content=bad,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert answer.status_code == 400
    detail = answer.json()["detail"]
    assert "row 2 (line 2)" in detail and "'queue'" in detail and "nowhere" in detail
    assert row_counts(dps)[0] == 2  # only the first batch


def test_batch_without_process_in_the_query_is_refused(http: TestClient) -> None:
    answer = http.post("/batches", content="name\nx\n", headers={"Content-Type": "text/csv"})
    assert answer.status_code == 400 and "process=" in answer.json()["detail"]


def test_dedup_batch_answers_existing_jobs_and_counts_only_new_ones(
    dps: Services, http: TestClient
) -> None:
    body = "name\na\nb\nc\n"
    params = {"process": PROCESS, "dedup": "true"}
    headers = {"Content-Type": "text/csv"}
    first = http.post("/batches", params=params, content=body, headers=headers).json()
    assert first["total"] == 3 and first["deduped"] == 0
    again = http.post("/batches", params=params, content=body + "d\n", headers=headers).json()
    assert again["deduped"] == 3 and again["total"] == 1
    assert again["jobIDs"][:3] == first["jobIDs"]
    assert dps.job_store.get_batch(again["batchID"]).counts["accepted"] == 1


# -- fair share -------------------------------------------------------------------------------


def test_a_freed_slot_goes_to_the_user_with_the_fewest_running_jobs(dps: Services) -> None:
    """User A's 2,000 jobs (priority 9) fill the 2-slot queue; user B's single job
    (priority 0) starts at the first slot turnover."""
    dps.job_store.create_jobs([spec(dps, "alice", priority=9) for _ in range(2000)])
    running = [claim(dps), claim(dps)]
    assert all(j is not None and j.owner == "alice" for j in running)
    assert claim(dps) is None  # both slots taken
    (bobs,) = dps.job_store.create_jobs([spec(dps, "bob", priority=0)])
    finish(dps, running[0])  # type: ignore[arg-type]
    assert claim(dps).id == bobs.id  # type: ignore[union-attr]
    finish(dps, running[1])  # type: ignore[arg-type]
    assert claim(dps).owner == "alice"  # type: ignore[union-attr]


def test_priority_orders_a_users_own_jobs(dps: Services) -> None:
    _low, high, mid = dps.job_store.create_jobs([spec(dps, "alice", priority=p) for p in (1, 8, 5)])
    assert [claim(dps).id, claim(dps).id] == [high.id, mid.id]  # type: ignore[union-attr]


def test_fair_share_off_is_priority_then_age(dps: Services) -> None:
    dps.job_store.create_jobs([spec(dps, "alice", priority=9) for _ in range(3)])
    dps.job_store.create_jobs([spec(dps, "bob", priority=0)])
    slots = {"main": 3}
    owners = [
        dps.job_store.claim_next(slots, host="t", worker="w", fair_share=False).owner  # type: ignore[union-attr]
        for _ in range(3)
    ]
    assert owners == ["alice", "alice", "alice"]


def test_max_running_per_user_caps_one_user_in_a_queue(dps: Services) -> None:
    dps.job_store.create_jobs([spec(dps, "alice", queue="capped") for _ in range(5)])
    first = claim(dps, "capped")
    assert first is not None and claim(dps, "capped") is None  # alice is at her cap of 1
    dps.job_store.create_jobs([spec(dps, "bob", queue="capped")])
    assert claim(dps, "capped").owner == "bob"  # type: ignore[union-attr]
    finish(dps, first)
    assert claim(dps, "capped").owner == "alice"  # type: ignore[union-attr]


def test_a_batch_max_running_caps_its_running_jobs(dps: Services) -> None:
    submitted = dps.batches.submit([_submission("x", "big")] * 6, user="anonymous", max_running=2)
    claimed = [claim(dps, "big") for _ in range(3)]
    assert [c is not None for c in claimed] == [True, True, False]
    finish(dps, claimed[0])  # type: ignore[arg-type]
    assert claim(dps, "big") is not None
    assert dps.job_store.get_batch(submitted.batch.id).counts["running"] == 2


def _submission(name: str, queue: str | None = None) -> Any:
    from opendps.service.jobs import Submission

    return Submission(process_id=PROCESS, inputs={"name": name}, queue=queue)


# -- statistics, cancel, retry ----------------------------------------------------------------


def test_batch_stats_from_the_store(dps: Services, http: TestClient) -> None:
    submitted = dps.batches.submit(
        [_submission(f"n{i}", "big") for i in range(10)], user="anonymous"
    )
    batch_id = submitted.batch.id
    claimed = [claim(dps, "big") for _ in range(8)]
    for n, job in enumerate(claimed[:6]):
        assert job is not None
        finish(dps, job, metrics={"peak_memory_bytes": (n + 1) * 1000})
    finish(dps, claimed[6], JobStatus.FAILED, reason=Reason.OOM, message="over 8 GB")  # type: ignore[arg-type]
    finish(dps, claimed[7], JobStatus.FAILED, reason=Reason.TIMEOUT, message="10 min")  # type: ignore[arg-type]
    # Known run times: 1..8 s.
    with dps.db.write() as conn:
        for n, job in enumerate(claimed, 1):
            conn.execute(jobs.update().where(jobs.c.id == job.id).values(duration=float(n)))  # type: ignore[union-attr]
    stats = http.get(f"/batches/{batch_id}").json()["stats"]
    assert set(stats) == {
        "rate_per_hour",
        "eta_seconds",
        "by_reason",
        "run_seconds",
        "peak_memory_bytes",
    }
    assert stats["by_reason"] == {"oom": 1, "timeout": 1}
    assert stats["run_seconds"] == {"p50": 4.0, "p95": 8.0, "max": 8.0}  # nearest rank
    assert stats["peak_memory_bytes"] == {"p50": 3000, "max": 6000}
    assert stats["rate_per_hour"] > 0 and stats["eta_seconds"] > 0  # 2 of 10 still queued
    report = http.get(f"/batches/{batch_id}/report").json()
    assert report["counts"]["successful"] == 6 and report["finished"] is False
    assert {f["reason"]: f["example"] for f in report["failures"]} == {
        "oom": "over 8 GB",
        "timeout": "10 min",
    }


def test_cancel_answers_at_once_and_every_queued_job_is_dismissed(
    dps: Services, http: TestClient
) -> None:
    submitted = dps.batches.submit(
        [_submission(f"n{i}", "big") for i in range(3000)], user="anonymous"
    )
    batch_id = submitted.batch.id
    running = [claim(dps, "big") for _ in range(2)]
    answer = http.delete(f"/batches/{batch_id}")
    assert answer.status_code == 200
    counts = answer.json()["counts"]
    assert sum(counts.values()) == 3000
    assert claim(dps, "big") is None  # nothing more of it starts
    wait_until(
        lambda: dps.job_store.get_batch(batch_id).counts["accepted"] == 0, 60, what="dismissals"
    )
    for job in running:  # a supervisor would now see the cancel flag and dismiss its job
        assert dps.job_store.get_job(job.id).cancel_requested  # type: ignore[union-attr]
        dps.job_store.transition(
            job.id, JobStatus.DISMISSED, allowed_from=[JobStatus.RUNNING], reason=Reason.CANCELLED
        )  # type: ignore[union-attr]
    counts = dps.job_store.get_batch(batch_id).counts
    assert counts == {"accepted": 0, "running": 0, "successful": 0, "failed": 0, "dismissed": 3000}


def test_retry_by_reason_requeues_exactly_those_keeping_their_history(
    dps: Services, http: TestClient
) -> None:
    submitted = dps.batches.submit(
        [_submission(f"n{i}", "big") for i in range(6)], user="anonymous"
    )
    batch_id = submitted.batch.id
    claimed = [claim(dps, "big") for _ in range(6)]
    reasons = [Reason.OOM, Reason.OOM, Reason.TIMEOUT, Reason.EXIT_CODE, None, None]
    for job, reason in zip(claimed, reasons, strict=True):
        if reason is None:
            finish(dps, job)  # type: ignore[arg-type]
        else:
            finish(dps, job, JobStatus.FAILED, reason=reason, message=str(reason))  # type: ignore[arg-type]
    oom_ids = [j.id for j, r in zip(claimed, reasons, strict=True) if r == Reason.OOM]  # type: ignore[union-attr]

    answer = http.post(f"/batches/{batch_id}/retry", json={"reasons": ["oom"], "queue": "capped"})
    assert answer.status_code == 200, answer.text
    assert sorted(answer.json()["jobIDs"]) == sorted(oom_ids)
    assert answer.json()["counts"] == {
        "accepted": 2,
        "running": 0,
        "successful": 2,
        "failed": 2,
        "dismissed": 0,
    }
    for job_id in oom_ids:
        job = dps.job_store.get_job(job_id)
        assert (job.status, job.queue, job.reason, job.attempts) == (
            JobStatus.ACCEPTED,
            "capped",
            None,
            1,
        )
        history = [(e.status.value, e.reason) for e in dps.job_store.job_events(job_id)]
        assert history == [
            ("accepted", None),
            ("running", None),
            ("failed", Reason.OOM),
            ("accepted", None),
        ]
    retried = claim(dps, "capped")
    assert (
        retried is not None
        and retried.attempts == 2
        and len(dps.job_store.attempts(retried.id)) == 2
    )

    assert (
        http.post(f"/batches/{batch_id}/retry", json={"reasons": ["sunspots"]}).status_code == 400
    )
    assert http.post(f"/batches/{batch_id}/retry", json={"queue": "nowhere"}).status_code == 400
    everything = http.post(f"/batches/{batch_id}/retry").json()["jobIDs"]
    assert len(everything) == 2  # timeout + exit_code; the oom ones are queued already


def test_another_users_batch_is_not_found_with_auth_on(tmp_path: Path, db_url: str | None) -> None:
    settings = fast_settings(
        tmp_path / "auth", queues=QUEUES, auth=True, **({"database_url": db_url} if db_url else {})
    )
    services = Services(settings)
    try:
        for spec_ in BUILTIN_SPECS:
            services.algorithms.ensure_builtin(spec_)
        for name in ("alice", "bob"):
            services.identity.create_user(name)
        submitted = services.batches.submit([_submission("a")], user="alice")
        from opendps.errors import NoSuchJob

        for call in (
            lambda: services.batches.get(submitted.batch.id, user="bob"),
            lambda: services.batches.stats(submitted.batch.id, user="bob"),
            lambda: services.batches.cancel(submitted.batch.id, user="bob"),
            lambda: services.batches.retry(submitted.batch.id, user="bob"),
        ):
            with pytest.raises(NoSuchJob):
                call()
        assert services.batches.get(submitted.batch.id, user="alice").total == 1
    finally:
        services.close()


# -- listing ----------------------------------------------------------------------------------


def test_listing_under_concurrent_inserts_never_repeats_or_skips(dps: Services) -> None:
    existing = {j.id for j in dps.job_store.create_jobs([spec(dps, "a") for _ in range(500)])}
    stop = threading.Event()

    def insert() -> None:
        while not stop.is_set():
            dps.job_store.create_jobs([spec(dps, "b") for _ in range(20)])

    writer = threading.Thread(target=insert)
    writer.start()
    try:
        seen: list[str] = []
        cursor = None
        while True:
            page = dps.job_store.list_jobs(limit=37, cursor=cursor, count=False)
            seen += [j.id for j in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    finally:
        stop.set()
        writer.join()
    assert len(seen) == len(set(seen))  # no repeats
    assert existing <= set(seen)  # every job that existed when the listing began


def test_stats_window_uses_recent_finishes(dps: Services) -> None:
    """rate_per_hour counts the finishes of the last 10 minutes, not the batch's life."""
    submitted = dps.batches.submit(
        [_submission(f"n{i}", "big") for i in range(4)], user="anonymous"
    )
    batch_id = submitted.batch.id
    claimed = [claim(dps, "big") for _ in range(3)]
    for job in claimed:
        finish(dps, job)  # type: ignore[arg-type]
    old = utcnow() - timedelta(hours=2)
    with dps.db.write() as conn:  # the batch began 2 h ago; two jobs ended then
        conn.execute(batches.update().where(batches.c.id == batch_id).values(created=old))
        for job in claimed[:2]:
            conn.execute(jobs.update().where(jobs.c.id == job.id).values(finished=old))  # type: ignore[union-attr]
    stats = dps.batch_store.stats(batch_id)
    assert stats["rate_per_hour"] == pytest.approx(6.0, rel=0.05)  # 1 in the last 600 s
    assert stats["eta_seconds"] == pytest.approx(600, rel=0.05)  # 1 job left at that rate
