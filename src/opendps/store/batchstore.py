"""BatchStore: what a campaign does to many jobs at once — cancel, dismiss, retry in place —
and its statistics, each in one statement over the batch's indexes (never job by job)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from opendps.errors import NoSuchJob
from opendps.models import JobStatus
from opendps.store import counts
from opendps.store.db import Database, utcnow
from opendps.store.tables import batches, job_counts, job_events, jobs, subscriptions

ACTIVE = [JobStatus.ACCEPTED.value, JobStatus.RUNNING.value]
ENDED_BADLY = [JobStatus.FAILED.value, JobStatus.DISMISSED.value]
ACCEPTED = JobStatus.ACCEPTED.value
QUEUE_CHUNK = 1000  # job ids per UPDATE when a retry moves jobs to another queue
RATE_WINDOW = 600.0  # seconds: rate_per_hour is the finishing rate over the last 10 minutes
DISMISS_CHUNK = 5000  # jobs dismissed per transaction, so claims and submits interleave


class BatchStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def owner_of(self, batch_id: str) -> str:
        with self.db.read() as conn:
            owner = conn.execute(
                sa.select(batches.c.owner).where(batches.c.id == batch_id)
            ).scalar()
        if owner is None:
            raise NoSuchJob(f"no batch with id {batch_id!r}")
        return owner

    # -- cancelling -----------------------------------------------------------------------

    def request_cancel(self, batch_id: str) -> int:
        """Flag every unfinished job of the batch in one UPDATE (no job is claimed after
        it); the queued ones are dismissed by :meth:`dismiss_cancelled`, the running ones by
        their supervisors. Answers how many jobs were flagged."""
        with self.db.write() as conn:
            return conn.execute(
                jobs.update()
                .where(
                    jobs.c.batch_id == batch_id,
                    jobs.c.status.in_(ACTIVE),
                    jobs.c.cancel_requested.is_(False),
                )
                .values(cancel_requested=True, updated=utcnow())
            ).rowcount

    def dismiss_cancelled(self, limit: int = DISMISS_CHUNK) -> int:
        """Dismiss up to ``limit`` queued jobs whose cancel was requested (of any batch),
        with their events, in one transaction. Answers how many; 0 when none are left.
        Run until 0 after a batch cancel, and now and then by the executor, so a restart
        in the middle leaves nothing behind."""
        now = utcnow()
        with self.db.write() as conn:
            pick = (
                sa.select(jobs.c.seq)
                .where(jobs.c.status == JobStatus.ACCEPTED.value, jobs.c.cancel_requested)
                .limit(limit)
            )
            dismissed = (
                conn.execute(
                    jobs.update()
                    .where(jobs.c.seq.in_(pick), jobs.c.status == JobStatus.ACCEPTED.value)
                    .values(
                        status=JobStatus.DISMISSED.value,
                        reason="cancelled",
                        phase=None,
                        message="cancelled before it started",
                        finished=now,
                        updated=now,
                    )
                    .returning(jobs.c.id, *(jobs.c[k] for k in counts.KEY_COLUMNS))
                )
                .mappings()
                .all()
            )
            ids = [r["id"] for r in dismissed]
            if ids:
                deltas: Counter[counts.CountKey] = Counter()
                for r in dismissed:
                    deltas.update(
                        counts.moved(r, JobStatus.ACCEPTED.value, JobStatus.DISMISSED.value)
                    )
                counts.apply_deltas(conn, deltas)
                conn.execute(
                    job_events.insert(),
                    [
                        {
                            "job_id": i,
                            "at": now,
                            "status": JobStatus.DISMISSED.value,
                            "reason": "cancelled",
                            "message": "cancelled before it started",
                        }
                        for i in ids
                    ],
                )
        return len(ids)

    # -- retrying -------------------------------------------------------------------------

    def requeue_ended(
        self, batch_id: str, *, reasons: Sequence[str] = (), queue: str | None = None
    ) -> list[str]:
        """Put the batch's failed and dismissed jobs (only those ``reasons``, when given)
        back to ``accepted``, on ``queue`` when given, in one transaction. The jobs keep
        their ids, attempts and events, so every attempt stays in each job's history; the
        batch's notifications are armed again for its new end."""
        now = utcnow()
        where = [jobs.c.batch_id == batch_id, jobs.c.status.in_(ENDED_BADLY)]
        if reasons:
            where.append(jobs.c.reason.in_(list(reasons)))
        values: dict[str, Any] = {
            "status": JobStatus.ACCEPTED.value,
            "reason": None,
            "phase": None,
            "message": None,
            "started": None,
            "finished": None,
            "duration": None,
            "peak_memory": None,
            "cancel_requested": False,
            "updated": now,
        }
        message = "retried" + (f" on queue {queue}" if queue else "")
        key = (jobs.c.id, *(jobs.c[k] for k in counts.KEY_COLUMNS))
        with self.db.write() as conn:
            # One UPDATE per old status, so RETURNING (new values) still tells which counter
            # each job leaves; the queue moves in a second step for the same reason.
            ids: list[str] = []
            deltas: Counter[counts.CountKey] = Counter()
            for old in ENDED_BADLY:
                moved = (
                    conn.execute(
                        jobs.update()
                        .where(*where, jobs.c.status == old)
                        .values(**values)
                        .returning(*key)
                    )
                    .mappings()
                    .all()
                )
                for r in moved:
                    deltas[counts.key_of(r, old)] -= 1
                    deltas[counts.key_of({**r, "queue": queue or r["queue"]}, ACCEPTED)] += 1
                ids.extend(r["id"] for r in moved)
            if queue:
                for start in range(0, len(ids), QUEUE_CHUNK):
                    chunk = ids[start : start + QUEUE_CHUNK]
                    conn.execute(jobs.update().where(jobs.c.id.in_(chunk)).values(queue=queue))
            counts.apply_deltas(conn, deltas)
            if ids:
                conn.execute(
                    job_events.insert(),
                    [
                        {
                            "job_id": i,
                            "at": now,
                            "status": JobStatus.ACCEPTED.value,
                            "reason": None,
                            "message": message,
                        }
                        for i in ids
                    ],
                )
                conn.execute(
                    subscriptions.update()
                    .where(subscriptions.c.batch_id == batch_id)
                    .values(state="pending", fired=None)
                )
        return ids

    # -- statistics -----------------------------------------------------------------------

    def stats(self, batch_id: str, now: datetime | None = None) -> dict[str, Any]:
        """DESIGN §14 ``stats``: rate_per_hour (finishing rate over the last 10 minutes, or
        over the batch's last 10 minutes once it ended), eta_seconds, by_reason,
        run_seconds {p50, p95, max}, peak_memory_bytes {p50, max}.

        Index range reads only, none over the whole batch: its unfinished jobs, its failed
        ones, its recent finishes, and each (partial) percentile index of its ended jobs."""
        now = now or utcnow()
        with self.db.read() as conn:
            created = conn.execute(
                sa.select(batches.c.created).where(batches.c.id == batch_id)
            ).scalar()
            if created is None:
                raise NoSuchJob(f"no batch with id {batch_id!r}")
            # The maintained counters (store/counts.py), not a count over the batch's jobs.
            remaining = counts.sum_where(
                conn, [job_counts.c.batch_id == batch_id, job_counts.c.status.in_(ACTIVE)]
            )
            by_reason: dict[str, int] = {}
            for reason, n in conn.execute(
                sa.select(jobs.c.reason, sa.func.count())
                .where(jobs.c.batch_id == batch_id, jobs.c.status.in_(ENDED_BADLY))
                .group_by(jobs.c.reason)
            ):
                if reason:
                    by_reason[reason] = by_reason.get(reason, 0) + n
            end = now
            if not remaining:
                end = (
                    conn.execute(
                        sa.select(sa.func.max(jobs.c.finished)).where(
                            jobs.c.batch_id == batch_id, jobs.c.finished.is_not(None)
                        )
                    ).scalar()
                    or now
                )
            start = max(end - timedelta(seconds=RATE_WINDOW), created)
            finished = conn.execute(
                sa.select(sa.func.count()).where(
                    jobs.c.batch_id == batch_id,
                    jobs.c.finished.is_not(None),
                    jobs.c.finished >= start,
                    jobs.c.finished <= end,
                )
            ).scalar_one()
            span = max((end - start).total_seconds(), 1.0)
            rate = finished / span * 3600.0
            eta = 0.0 if not remaining else (remaining / rate * 3600.0 if rate else None)
            run = _percentiles(conn, batch_id, jobs.c.duration, (0.5, 0.95))
            memory = _percentiles(conn, batch_id, jobs.c.peak_memory, (0.5,))
        return {
            "rate_per_hour": round(rate, 1),
            "eta_seconds": None if eta is None else round(eta, 1),
            "by_reason": dict(sorted(by_reason.items())),
            "run_seconds": {"p50": run[0.5], "p95": run[0.95], "max": run["max"]},
            "peak_memory_bytes": {"p50": memory[0.5], "max": memory["max"]},
        }

    def report_facts(self, batch_id: str) -> dict[str, Any]:
        """For the end-of-batch report: first start, last end, and one example message per
        failure reason."""
        with self.db.read() as conn:
            first, last = conn.execute(
                sa.select(sa.func.min(jobs.c.started), sa.func.max(jobs.c.finished)).where(
                    jobs.c.batch_id == batch_id
                )
            ).one()
            examples = {
                reason: message
                for reason, message in conn.execute(
                    sa.select(jobs.c.reason, sa.func.min(jobs.c.message))
                    .where(jobs.c.batch_id == batch_id, jobs.c.status.in_(ENDED_BADLY))
                    .group_by(jobs.c.reason)
                )
                if reason
            }
        return {"first_started": first, "last_finished": last, "examples": examples}

    def running_batches(self, batch_ids: Iterable[str]) -> set[str]:
        """Which of these batches still have unfinished jobs."""
        ids = list(batch_ids)
        if not ids:
            return set()
        with self.db.read() as conn:
            return set(
                conn.execute(
                    sa.select(jobs.c.batch_id)
                    .where(jobs.c.batch_id.in_(ids), jobs.c.status.in_(ACTIVE))
                    .distinct()
                ).scalars()
            )


def _percentiles(
    conn: sa.Connection,
    batch_id: str,
    column: sa.Column[Any],
    points: Sequence[float],
) -> dict[Any, Any]:
    """Nearest-rank percentiles and the max of ``column`` over the batch, each one probe of
    partial (batch_id, column) index, which holds ended jobs only: ``ORDER BY column LIMIT 1
    OFFSET k`` from its nearer end."""
    where = [jobs.c.batch_id == batch_id, column.is_not(None)]  # the partial index's rows
    n = conn.execute(sa.select(sa.func.count()).where(*where)).scalar_one()
    result: dict[Any, Any] = dict.fromkeys([*points, "max"])
    if n <= 0:
        return result
    for point in points:
        rank = min(n - 1, max(0, math.ceil(point * n) - 1))  # nearest rank, 0-based
        if rank <= n // 2:
            query = sa.select(column).where(*where).order_by(column).offset(rank).limit(1)
        else:
            query = (
                sa.select(column).where(*where).order_by(column.desc()).offset(n - 1 - rank)
            ).limit(1)
        result[point] = conn.execute(query).scalar()
    result["max"] = conn.execute(sa.select(sa.func.max(column)).where(*where)).scalar()
    return result
