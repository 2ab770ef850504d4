"""Listing queries the UI relies on, on SQLite and PostgreSQL: sorted keyset paging, free
text, counts per status, newer-than, batch listing with counts, and the samples series."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from opendps.errors import InvalidInput
from opendps.models import BuildStatus, JobStatus
from opendps.service.context import Services
from opendps.store.jobstore import JobFilters
from tests.support.dps import BACKENDS

pytestmark = pytest.mark.parametrize("db_url", BACKENDS, indirect=True)


def _jobs(services: Services, specs: list[dict[str, Any]], batch: bool = False) -> list[Any]:
    # A name unique to the test, so that a shared PostgreSQL database sees only these jobs.
    name = f"list-{uuid.uuid4().hex[:8]}"
    algorithm = services.catalog.save_algorithm(
        name=name, version="1", owner="anonymous", spec={}, package=None, package_type=None,
        build_status=BuildStatus.READY,
    )  # fmt: skip
    base = {
        "algorithm_id": algorithm.id, "algorithm": name, "version": "1", "owner": "anonymous",
        "queue": "dps-worker-8gb", "priority": 5, "tags": [], "inputs": {},
    }  # fmt: skip
    records = [{**base, "id": str(uuid.uuid4()), **s} for s in specs]
    if not batch:
        return services.job_store.create_jobs(records)
    created = services.job_store.create_batch_jobs(
        records, batch_id=str(uuid.uuid4()), owner="anonymous", process=f"{name}:1"
    )
    return [services.job_store.get_job(job_id) for job_id, _ in created]


def _pages(services: Services, filters: JobFilters, sort: str, limit: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = services.job_store.list_jobs(filters, limit=limit, cursor=cursor, sort=sort)
        pages.append([j.id for j in page.items])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def test_sorted_keyset_pages_cover_every_job_once(services: Services) -> None:
    jobs = _jobs(services, [{"priority": p} for p in (3, 9, 3, 1, 9, 3, 5)])
    filters = JobFilters(algorithm=jobs[0].algorithm)
    pages = _pages(services, filters, "-priority", 2)
    flat = [i for page in pages for i in page]
    by_priority = sorted(jobs, key=lambda j: (-j.priority, -j.seq))
    assert flat == [j.id for j in by_priority]
    ascending = [i for page in _pages(services, filters, "priority", 3) for i in page]
    assert ascending == [j.id for j in sorted(jobs, key=lambda j: (j.priority, j.seq))]
    with pytest.raises(InvalidInput, match="sort"):
        services.job_store.list_jobs(filters, sort="colour")


def test_free_text_counts_per_status_and_newer_than(services: Services) -> None:
    jobs = _jobs(services, [{"tags": ["scene_2024_a"]}, {"tags": ["other"]}, {"tags": ["x%y"]}])
    algorithm = jobs[0].algorithm
    services.job_store.request_cancel(jobs[1].id)
    text = services.job_store.list_jobs(JobFilters(algorithm=algorithm, text="2024_")).items
    assert [j.id for j in text] == [jobs[0].id]
    assert [j.id for j in services.job_store.list_jobs(JobFilters(text="x%y")).items] == [
        jobs[2].id
    ]
    counts = services.job_store.count_by_status(
        JobFilters(algorithm=algorithm, statuses=(JobStatus.RUNNING,))
    )
    assert counts == {"accepted": 2, "running": 0, "successful": 0, "failed": 0, "dismissed": 1}
    newer = services.job_store.count_jobs(JobFilters(algorithm=algorithm, after_seq=jobs[0].seq))
    assert newer == 2


def test_batches_list_newest_first_with_counts(services: Services) -> None:
    first = _jobs(services, [{}, {}], batch=True)
    second = _jobs(services, [{"owner": "bob"}], batch=True)
    page = services.job_store.list_batches(owner="anonymous", limit=100)
    ids = [b.id for b in page.items]
    assert first[0].batch_id in ids and second[0].batch_id in ids  # batch owner: anonymous
    mine = next(b for b in page.items if b.id == first[0].batch_id)
    assert mine.counts["accepted"] == 2 and mine.total == 2
    one = services.job_store.list_batches(owner="anonymous", limit=1)
    rest = services.job_store.list_batches(owner="anonymous", limit=100, cursor=one.next_cursor)
    assert one.items[0].id not in [b.id for b in rest.items]
    assert len(rest.items) == one.number_matched - 1


def test_samples_are_saved_and_replaced(services: Services) -> None:
    job = _jobs(services, [{}])[0]
    assert services.samples.job_samples(job.id) == []
    services.samples.save_samples(job.id, [{"t": 0, "rss_bytes": 1, "cpu_percent": 0.0}])
    series = [{"t": t, "rss_bytes": t * 10, "cpu_percent": 50.0} for t in range(3)]
    services.samples.save_samples(job.id, series)
    assert services.samples.job_samples(job.id) == series
