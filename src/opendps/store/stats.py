"""StatsStore: the aggregate numbers behind ``GET /metrics``, read from the store.

Every figure is computed from the shared database at scrape time, so any API replica
answers the same numbers whichever process or machine ran the jobs (no per-process
counters to merge).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from opendps.models import JobStatus
from opendps.store.db import Database
from opendps.store.tables import builds, job_attempts, jobs


class StatsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def jobs_by_queue_and_status(self) -> dict[tuple[str, str], int]:
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(jobs.c.queue, jobs.c.status, sa.func.count()).group_by(
                    jobs.c.queue, jobs.c.status
                )
            ).all()
        return {(q, s): n for q, s, n in rows}

    def oldest_waiting(self) -> dict[str, datetime]:
        """Per queue: the creation time of its oldest accepted job."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(jobs.c.queue, sa.func.min(jobs.c.created))
                .where(jobs.c.status == JobStatus.ACCEPTED.value)
                .group_by(jobs.c.queue)
            ).all()
        # min() loses the column's type on some dialects: make the answer aware again.
        return {q: t if t.tzinfo else t.replace(tzinfo=UTC) for q, t in rows if t is not None}

    def attempts_by_queue(self) -> dict[str, int]:
        """Claims made so far per queue (one attempt row per claim)."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(jobs.c.queue, sa.func.count())
                .select_from(job_attempts.join(jobs, jobs.c.id == job_attempts.c.job_id))
                .group_by(jobs.c.queue)
            ).all()
        return dict(rows)

    def run_time_buckets(self, bounds: Sequence[float]) -> dict[str, tuple[list[int], int, float]]:
        """Per queue, over ended jobs that ran: (cumulative counts per bound, count, sum)."""
        columns = [
            sa.func.sum(sa.case((jobs.c.duration <= b, 1), else_=0)).label(f"le{i}")
            for i, b in enumerate(bounds)
        ]
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(jobs.c.queue, sa.func.count(), sa.func.sum(jobs.c.duration), *columns)
                .where(jobs.c.duration.is_not(None))
                .group_by(jobs.c.queue)
            ).all()
        return {r[0]: ([int(v or 0) for v in r[3:]], int(r[1]), float(r[2] or 0)) for r in rows}

    def queue_wait_buckets(
        self, bounds: Sequence[float]
    ) -> dict[str, tuple[list[int], int, float]]:
        """Per queue, over jobs that were claimed: dispatch latency (submit to last claim)
        as (cumulative counts per bound, count, sum)."""
        if self.db.is_sqlite:
            wait = (sa.func.julianday(jobs.c.started) - sa.func.julianday(jobs.c.created)) * 86400
        else:
            wait = sa.func.extract("epoch", jobs.c.started - jobs.c.created)
        columns = [
            sa.func.sum(sa.case((wait <= b, 1), else_=0)).label(f"le{i}")
            for i, b in enumerate(bounds)
        ]
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(jobs.c.queue, sa.func.count(), sa.func.sum(wait), *columns)
                .where(jobs.c.started.is_not(None))
                .group_by(jobs.c.queue)
            ).all()
        return {r[0]: ([int(v or 0) for v in r[3:]], int(r[1]), float(r[2] or 0)) for r in rows}

    def builds_by_status(self) -> dict[str, int]:
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(builds.c.status, sa.func.count()).group_by(builds.c.status)
            ).all()
        return dict(rows)
