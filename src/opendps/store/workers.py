"""WorkerStore: scale-out workers' heartbeats and the broker bookkeeping of jobs.

A ``dps worker`` (executor celery) writes its row every few seconds; any process can
then tell a live worker from a lost one by ``last_seen`` alone, across machines. The
``enqueued`` column of a job says whether ``run_job(id)`` is on the broker, so a sweeper
can publish the accepted jobs that are not (broker down at submit, re-queued jobs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from opendps.models import Attempt, JobStatus
from opendps.store.db import Database, utcnow
from opendps.store.tables import algorithms, builds, job_attempts, jobs, workers


@dataclass(frozen=True)
class WorkerInfo:
    """One worker as its last heartbeat described it."""

    id: str
    host: str
    queues: list[str]
    concurrency: int
    running: list[str]
    started: datetime
    last_seen: datetime


@dataclass(frozen=True)
class Unenqueued:
    """An accepted job that the broker does not hold."""

    id: str
    queue: str
    priority: int


class WorkerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- heartbeats -----------------------------------------------------------------------

    def heartbeat(
        self, worker_id: str, *, host: str, queues: Sequence[str], concurrency: int, running: list
    ) -> None:
        """Insert or refresh this worker's row."""
        now = utcnow()
        values = {
            "host": host,
            "queues": list(queues),
            "concurrency": concurrency,
            "running": list(running),
            "last_seen": now,
        }
        with self.db.write() as conn:
            changed = conn.execute(
                workers.update().where(workers.c.id == worker_id).values(**values)
            ).rowcount
            if not changed:
                conn.execute(workers.insert().values(id=worker_id, started=now, **values))

    def remove(self, worker_id: str) -> None:
        """Forget a worker. On PostgreSQL a row locked by the worker's own open transaction
        (a worker partitioned mid-heartbeat) is skipped, not waited for: a later sweep
        removes it."""
        with self.db.write() as conn:
            target = sa.select(workers.c.id).where(workers.c.id == worker_id)
            if not self.db.is_sqlite:
                target = target.with_for_update(skip_locked=True)
            conn.execute(workers.delete().where(workers.c.id.in_(target.scalar_subquery())))

    def list_workers(self) -> list[WorkerInfo]:
        with self.db.read() as conn:
            rows = conn.execute(sa.select(workers).order_by(workers.c.id)).mappings().all()
        return [
            WorkerInfo(
                id=r["id"],
                host=r["host"],
                queues=list(r["queues"] or []),
                concurrency=r["concurrency"],
                running=list(r["running"] or []),
                started=r["started"],
                last_seen=r["last_seen"],
            )
            for r in rows
        ]

    def stale_workers(self, timeout: float) -> list[WorkerInfo]:
        """Workers whose last heartbeat is older than ``timeout`` seconds."""
        limit = utcnow() - timedelta(seconds=timeout)
        return [w for w in self.list_workers() if w.last_seen < limit]

    def running_attempts_of(self, worker_id: str) -> list[tuple[str, Attempt]]:
        """(job id, open attempt) of the running jobs whose open attempt is this worker's."""
        with self.db.read() as conn:
            rows = (
                conn.execute(
                    sa.select(job_attempts)
                    .join(jobs, jobs.c.id == job_attempts.c.job_id)
                    .where(
                        job_attempts.c.worker == worker_id,
                        job_attempts.c.finished.is_(None),
                        jobs.c.status == JobStatus.RUNNING.value,
                        jobs.c.attempts == job_attempts.c.number,
                    )
                )
                .mappings()
                .all()
            )
        return [(r["job_id"], Attempt(**dict(r))) for r in rows]

    def orphaned_running(self, grace: float) -> list[str]:
        """Running jobs claimed more than ``grace`` seconds ago by a worker that has no
        row at all (it died before its first heartbeat, or its row was removed)."""
        limit = utcnow() - timedelta(seconds=grace)
        with self.db.read() as conn:
            return list(
                conn.execute(
                    sa.select(jobs.c.id)
                    .join(
                        job_attempts,
                        sa.and_(
                            job_attempts.c.job_id == jobs.c.id,
                            job_attempts.c.number == jobs.c.attempts,
                        ),
                    )
                    .outerjoin(workers, workers.c.id == job_attempts.c.worker)
                    .where(
                        jobs.c.status == JobStatus.RUNNING.value,
                        job_attempts.c.started < limit,
                        workers.c.id.is_(None),
                    )
                ).scalars()
            )

    # -- broker bookkeeping ---------------------------------------------------------------

    def mark_enqueued(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if not ids:
            return
        with self.db.write() as conn:
            conn.execute(jobs.update().where(jobs.c.id.in_(ids)).values(enqueued=utcnow()))

    def clear_enqueued(self, job_id: str) -> None:
        """The job's message was consumed without running it (e.g. its build was not ready,
        or it was re-queued): the sweeper publishes it again."""
        with self.db.write() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(enqueued=None))

    def unenqueued(self, *, older_than: float, limit: int = 1000) -> list[Unenqueued]:
        """Accepted jobs with a ready build that are not on the broker, oldest first."""
        limit_at = utcnow() - timedelta(seconds=older_than)
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(jobs.c.id, jobs.c.queue, jobs.c.priority)
                .select_from(
                    jobs.join(algorithms, algorithms.c.id == jobs.c.algorithm_id).join(
                        builds, builds.c.id == algorithms.c.build_id
                    )
                )
                .where(
                    jobs.c.status == JobStatus.ACCEPTED.value,
                    jobs.c.enqueued.is_(None),
                    jobs.c.updated < limit_at,
                    builds.c.status == "ready",
                )
                .order_by(jobs.c.seq)
                .limit(limit)
            ).all()
        return [Unenqueued(id=r[0], queue=r[1], priority=r[2]) for r in rows]
