"""JobStore: every job-state operation, one transaction each.

Transitions are compare-and-set: ``UPDATE ... WHERE status IN (allowed)``;
zero rows changed raises :class:`InvalidTransition`. Each transition writes
its event in the same transaction.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from opendps.errors import InvalidTransition, NoSuchJob
from opendps.models import TERMINAL, Attempt, Batch, Job, JobEvent, JobStatus, Page, Phase, Reason
from opendps.store import counts
from opendps.store.claiming import choose_job
from opendps.store.db import Database, utcnow
from opendps.store.tables import (
    algorithms,
    batches,
    builds,
    job_attempts,
    job_counts,
    job_events,
    jobs,
)

ACTIVE = (JobStatus.ACCEPTED, JobStatus.RUNNING)
ACCEPTED = JobStatus.ACCEPTED.value
INSERT_CHUNK = 2000  # rows per multi-row INSERT when creating jobs in bulk

#: A filter the counters cannot answer (tag, dates, durations, ids, priority) is counted
#: in the jobs table up to this many matches; past it, ``numberMatched`` is this lower
#: bound and the page says it is not exact (``Page.number_matched_exact``).
COUNT_LIMIT = 10_000


@dataclass(frozen=True)
class JobFilters:
    """Filters of ``list_jobs``; each one is evaluated in the database."""

    owner: str | None = None
    statuses: tuple[JobStatus, ...] = ()
    algorithm: str | None = None
    version: str | None = None
    algorithm_ids: tuple[int, ...] = ()
    queue: str | None = None
    tag: str | None = None
    batch_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    job_ids: tuple[str, ...] = ()
    priority: int | None = None
    finished_after: datetime | None = None
    # (name, version or None) pairs; a job matching any of them matches.
    processes: tuple[tuple[str, str | None], ...] = ()
    text: str | None = None  # free text: a job id's beginning, or part of its tag
    after_seq: int | None = None  # only jobs submitted after this one (newer than a page's top)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def counted(self) -> bool:
        """Whether the maintained counters (store/counts.py) can count these filters: only
        when every filter that is set is one of the counters' keys (a new filter is then
        counted in the jobs table until the counters learn it)."""
        return all(
            getattr(self, f.name) == f.default
            or (f.default is dataclasses.MISSING and not getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in COUNTED_FILTERS
        )


#: The filters the counters key (owner, status, algorithm id/name/version, queue, batch).
COUNTED_FILTERS = frozenset(
    {"owner", "statuses", "algorithm", "version", "algorithm_ids", "queue", "batch_id", "processes"}
)


# Orders of list_jobs: name -> the column (nulls as -1, so keyset comparisons hold).
SORTS: dict[str, Any] = {
    "created": jobs.c.seq,
    "process": jobs.c.algorithm,
    "status": jobs.c.status,
    "queue": jobs.c.queue,
    "priority": jobs.c.priority,
    "duration": sa.func.coalesce(jobs.c.duration, -1.0),
}
DEFAULT_SORT = "-created"


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _job_from_row(row: Mapping[str, Any]) -> Job:
    return Job(
        id=row["id"],
        seq=row["seq"],
        algorithm_id=row["algorithm_id"],
        algorithm=row["algorithm"],
        version=row["version"],
        owner=row["owner"],
        queue=row["queue"],
        priority=row["priority"],
        tags=list(row["tags"] or []),
        inputs=dict(row["inputs"] or {}),
        status=JobStatus(row["status"]),
        reason=Reason(row["reason"]) if row["reason"] else None,
        phase=Phase(row["phase"]) if row["phase"] else None,
        message=row["message"],
        batch_id=row["batch_id"],
        attempts=row["attempts"],
        cancel_requested=bool(row["cancel_requested"]),
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        updated=row["updated"],
        work_dir=row["work_dir"],
        output_url=row["output_url"],
        exit_code=row["exit_code"],
        progress=row["progress"],
        metrics=dict(row["metrics"] or {}),
        results=dict(row["results"] or {}),
        warnings=list(row["warnings"] or []),
        request=dict(row.get("request") or {}),
    )


def _new_job(row: Mapping[str, Any], seqs: Mapping[str, int]) -> Job:
    """The Job of a row create_jobs just inserted (no enum parsing, no read back)."""
    return Job(
        id=row["id"],
        seq=seqs[row["id"]],
        algorithm_id=row["algorithm_id"],
        algorithm=row["algorithm"],
        version=row["version"],
        owner=row["owner"],
        queue=row["queue"],
        priority=row["priority"],
        tags=row["tags"],
        inputs=row["inputs"],
        status=JobStatus.ACCEPTED,
        reason=None,
        phase=None,
        message=None,
        batch_id=row["batch_id"],
        attempts=0,
        cancel_requested=False,
        created=row["created"],
        started=None,
        finished=None,
        updated=row["updated"],
        work_dir=None,
        output_url=None,
        exit_code=None,
        progress=None,
    )


def encode_cursor(seq: int, value: Any = None) -> str:
    """The last item's insertion order (and its sort value when sorted by another column)."""
    data: dict[str, Any] = {"s": seq} if value is None else {"s": seq, "v": value}
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _decode(cursor: str) -> dict[str, Any]:
    """A job-list cursor's fields; anything this server did not issue is refused (4xx)."""
    from opendps.errors import InvalidInput

    refused = InvalidInput(f"next: {cursor[:80]!r} is not a cursor this server issued")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded))
        seq = data["s"]
    except Exception as exc:
        raise refused from exc
    # A forged {"s": 10**23} overflowed the database's 64-bit integers (a 500).
    if not _fits_column(seq) or not seq >= 0:
        raise refused
    if "v" in data and not (isinstance(data["v"], str) or _fits_column(data["v"], floats=True)):
        raise refused  # the sort value is compared in SQL: same bounds
    return data


def _fits_column(value: Any, *, floats: bool = False) -> bool:
    """An integer within 64 bits (or, with ``floats``, a finite float)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return floats and isinstance(value, float) and math.isfinite(value)


def decode_cursor(cursor: str) -> int:
    return int(_decode(cursor)["s"])


def _sort_value(key: str, row: Mapping[str, Any]) -> Any:
    if key == "process":
        return row["algorithm"]
    if key == "duration":
        return -1.0 if row["duration"] is None else row["duration"]
    return row[key]


def _after(cursor: str, key: str, column: Any, descending: bool) -> sa.ColumnElement[bool]:
    """Rows after the cursor's row in the listing's order."""
    data = _decode(cursor)
    seq = int(data["s"])
    if key == "created":
        return jobs.c.seq < seq if descending else jobs.c.seq > seq
    if "v" not in data:
        from opendps.errors import InvalidInput

        raise InvalidInput("next: this cursor belongs to a listing in another order")
    value = data["v"]
    if descending:
        return sa.or_(column < value, sa.and_(column == value, jobs.c.seq < seq))
    return sa.or_(column > value, sa.and_(column == value, jobs.c.seq > seq))


class JobStore:
    """Jobs, their attempts, their events and batches."""

    def __init__(self, db: Database, *, count_limit: int = COUNT_LIMIT) -> None:
        self.db = db
        self.count_limit = count_limit  # see COUNT_LIMIT

    # -- creating -------------------------------------------------------------------------

    def create_jobs(self, specs: Iterable[Mapping[str, Any]]) -> list[Job]:
        """Insert jobs (and their ``accepted`` events) in one transaction, in bulk.

        Each spec has: algorithm_id, algorithm, version, owner, queue, priority, tags,
        inputs, and optionally dedup_key and id. A spec whose ``dedup_key`` matches
        a job of the same owner (or an earlier spec of this call) answers that job,
        flagged ``deduped``.
        """
        answer, rows = self._insert(list(specs), None)
        with self.db.read() as conn:
            seqs = self._seqs_of(conn, rows, None)
        created: list[Job] = []
        for item in answer:
            if isinstance(item, Job):
                created.append(item)
            elif "_same_as" in item:  # a repeat of an earlier row of this very call
                created.append(replace(_new_job(item["_same_as"], seqs), deduped=True))
            else:
                created.append(_new_job(item, seqs))
        return created

    def create_batch_jobs(
        self,
        specs: Iterable[Mapping[str, Any]],
        *,
        batch_id: str,
        owner: str,
        process: str | None = None,
        max_running: int | None = None,
    ) -> list[tuple[str, bool]]:
        """A batch and its jobs, in one transaction, as create_jobs does; answers (job id,
        deduplicated) per spec — no Job records, a batch may hold 100,000 jobs. The batch's
        ``total`` counts the jobs it created."""
        batch = {"id": batch_id, "owner": owner, "process": process, "max_running": max_running}
        answer, _rows = self._insert(list(specs), batch)
        return [
            (item.id, True)
            if isinstance(item, Job)
            else (item["_same_as"]["id"], True)
            if "_same_as" in item
            else (item["id"], False)
            for item in answer
        ]

    def _insert(
        self, specs: list[Mapping[str, Any]], batch: Mapping[str, Any] | None
    ) -> tuple[list[Any], list[dict[str, Any]]]:
        now = utcnow()
        batch_id = batch["id"] if batch else None
        with self.db.write() as conn:
            # Two submits of one dedup key must not both insert (PostgreSQL; see Database.lock).
            keys = {(s["owner"], s["dedup_key"]) for s in specs if s.get("dedup_key")}
            self.db.lock(conn, "dedup", *{f"{o}\0{k}" for o, k in keys})
            existing = self._dedup_matches(conn, keys)
            rows: list[dict[str, Any]] = []
            answer: list[Any] = []  # new rows, {"_same_as": row} repeats, or existing Jobs
            for spec in specs:
                key = (spec["owner"], spec.get("dedup_key"))
                if key[1] and key in existing:
                    match = existing[key]
                    answer.append(replace(match, deduped=True) if isinstance(match, Job) else match)
                    continue
                tags = list(spec.get("tags") or [])
                row = {
                    "id": spec.get("id") or str(uuid.uuid4()),
                    "algorithm_id": spec["algorithm_id"],
                    "algorithm": spec["algorithm"],
                    "version": spec["version"],
                    "owner": spec["owner"],
                    "queue": spec["queue"],
                    "priority": int(spec.get("priority", 5)),
                    "tags": tags,
                    "tag": tags[0] if tags else "",
                    "inputs": dict(spec.get("inputs") or {}),
                    "status": ACCEPTED,
                    "batch_id": batch_id,
                    "attempts": 0,
                    "cancel_requested": False,
                    "dedup_key": spec.get("dedup_key"),
                    "request": spec.get("request") or None,
                    "created": now,
                    "updated": now,
                }
                rows.append(row)
                answer.append(row)
                if key[1]:
                    existing[key] = {"_same_as": row}
            # The counters move in this transaction (store/counts.py): one upsert per key.
            if rows:
                counts.apply_deltas(conn, Counter(counts.key_of(r) for r in rows))
            if batch is not None:
                conn.execute(
                    batches.insert().values(
                        id=batch_id,
                        owner=batch["owner"],
                        total=len(rows),
                        created=now,
                        process=batch.get("process"),
                        max_running=batch.get("max_running"),
                    )
                )
            for chunk in _chunks(rows, INSERT_CHUNK):
                # executemany (RETURNING would go row by row on SQLite); seqs are read after.
                self.db.insert_many(conn, jobs, chunk)
                self.db.insert_many(
                    conn,
                    job_events,
                    [
                        {
                            "job_id": r["id"],
                            "at": now,
                            "status": ACCEPTED,
                            "reason": None,
                            "message": "submitted",
                        }
                        for r in chunk
                    ],
                )
        return answer, rows

    def _seqs_of(
        self, conn: sa.Connection, rows: list[dict[str, Any]], batch_id: str | None
    ) -> dict[str, int]:
        """The seq the database gave each new row: by the batch index for a batch, else
        by id (a handful of rows)."""
        if not rows:
            return {}
        if batch_id is not None:
            query = sa.select(jobs.c.id, jobs.c.seq).where(jobs.c.batch_id == batch_id)
            return dict(conn.execute(query).tuples().all())
        found: dict[str, int] = {}
        for chunk in _chunks([r["id"] for r in rows], 500):
            query = sa.select(jobs.c.id, jobs.c.seq).where(jobs.c.id.in_(chunk))
            found.update(conn.execute(query).tuples().all())
        return found

    def _dedup_matches(
        self, conn: sa.Connection, keys: set[tuple[str, str]]
    ) -> dict[tuple[str, str], Any]:
        """The newest job per (owner, dedup_key) that did not fail: what a repeat answers."""
        found: dict[tuple[str, str], Any] = {}
        by_owner: dict[str, list[str]] = {}
        for owner, key in keys:
            by_owner.setdefault(owner, []).append(key)
        for owner, owner_keys in by_owner.items():
            for chunk in _chunks(owner_keys, 500):
                rows = conn.execute(
                    sa.select(jobs)
                    .where(jobs.c.owner == owner, jobs.c.dedup_key.in_(chunk))
                    .order_by(jobs.c.seq)
                ).mappings()
                for row in rows:  # ascending: the newest ends up in the dict
                    found[(owner, row["dedup_key"])] = row
        return {
            k: _job_from_row(r) for k, r in found.items() if r["status"] != JobStatus.FAILED.value
        }

    # -- reading --------------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job:
        with self.db.read() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        if row is None:
            raise NoSuchJob(f"no job with id {job_id!r}")
        return _job_from_row(row)

    def _where(self, f: JobFilters, table: sa.Table = jobs) -> list[sa.ColumnElement[bool]]:
        """``f`` as conditions on ``jobs``, or on ``job_counts`` for the filters it keys
        (``JobFilters.counted``; the columns have the same names)."""
        c = table.c
        where: list[sa.ColumnElement[bool]] = []
        if f.owner:
            where.append(c.owner == f.owner)
        if f.statuses:
            where.append(c.status.in_([s.value for s in f.statuses]))
        if f.algorithm:
            where.append(c.algorithm == f.algorithm)
        if f.version:
            where.append(c.version == f.version)
        if f.algorithm_ids:
            where.append(c.algorithm_id.in_(f.algorithm_ids))
        if f.processes:
            where.append(
                sa.or_(
                    *(
                        sa.and_(c.algorithm == name, c.version == version)
                        if version
                        else c.algorithm == name
                        for name, version in f.processes
                    )
                )
            )
        if f.queue:
            where.append(c.queue == f.queue)
        if f.batch_id:
            where.append(c.batch_id == f.batch_id)
        if table is job_counts:
            return where
        if f.tag:
            where.append(jobs.c.tag == f.tag)
        if f.created_after:
            where.append(jobs.c.created >= f.created_after)
        if f.created_before:
            where.append(jobs.c.created <= f.created_before)
        # A running job's duration is its time so far (OGC job list, /req/job-list/duration).
        running = jobs.c.status == JobStatus.RUNNING.value
        if f.min_duration is not None:
            since = utcnow() - timedelta(seconds=min(f.min_duration, 1e9))
            where.append(
                sa.or_(jobs.c.duration >= f.min_duration, sa.and_(running, jobs.c.started <= since))
            )
        if f.max_duration is not None:
            since = utcnow() - timedelta(seconds=min(f.max_duration, 1e9))
            where.append(
                sa.or_(jobs.c.duration <= f.max_duration, sa.and_(running, jobs.c.started >= since))
            )
        if f.job_ids:
            where.append(jobs.c.id.in_(f.job_ids))
        if f.priority is not None:
            where.append(jobs.c.priority == f.priority)
        if f.finished_after:
            where.append(jobs.c.finished >= f.finished_after)
        if f.after_seq is not None:
            where.append(jobs.c.seq > f.after_seq)
        if f.text:
            text = _like(f.text)
            where.append(
                sa.or_(
                    jobs.c.id.like(f"{text}%", escape="\\"),
                    jobs.c.tag.like(f"%{text}%", escape="\\"),
                )
            )
        return where

    def list_jobs(
        self,
        filters: JobFilters = JobFilters(),
        *,
        limit: int = 10,
        cursor: str | None = None,
        offset: int | None = None,
        count: bool = True,
        sort: str = DEFAULT_SORT,
    ) -> Page:
        """Newest first by insertion order, or by ``sort`` (``name`` ascending, ``-name``
        descending, ties in insertion order); ``cursor`` continues after the last item, so
        pages stay stable while jobs are added."""
        descending, key = sort.startswith("-"), sort.lstrip("-")
        if key not in SORTS:
            from opendps.errors import InvalidInput

            raise InvalidInput(f"sort: {sort!r} is not one of {', '.join(SORTS)} (or -name)")
        column = SORTS[key]
        where = self._where(filters)
        if key == "created":
            order = [jobs.c.seq.desc() if descending else jobs.c.seq.asc()]
        else:
            order = [column.desc(), jobs.c.seq.desc()] if descending else [column, jobs.c.seq]
        query = sa.select(jobs).where(*where).order_by(*order).limit(limit + 1)
        if cursor:
            query = query.where(_after(cursor, key, column, descending))
        elif offset:
            query = query.offset(offset)
        # One snapshot for the page and its count (PostgreSQL's default READ COMMITTED
        # would take one per statement; SQLite's read transaction already is one).
        with self.db.snapshot() as conn:
            rows = conn.execute(query).mappings().all()
            total, exact = self._count(conn, filters, where) if count else (-1, True)
        items = [_job_from_row(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            value = None if key == "created" else _sort_value(key, last)
            next_cursor = encode_cursor(items[-1].seq, value)
        return Page(
            items=items,
            number_matched=total,
            next_cursor=next_cursor,
            number_matched_exact=exact,
        )

    def count_by_status(self, filters: JobFilters) -> dict[str, int]:
        """How many jobs match ``filters`` (its statuses aside) in each status: one query."""
        where = self._where(replace(filters, statuses=()))
        query = sa.select(jobs.c.status, sa.func.count()).where(*where).group_by(jobs.c.status)
        if filters.text:  # a text search reads every row anyway: SQLite's status index only
            query = query.with_hint(jobs, "NOT INDEXED", dialect_name="sqlite")  # adds lookups
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        found = dict(rows)
        return {s.value: found.get(s.value, 0) for s in JobStatus}

    def count_jobs(self, filters: JobFilters) -> int:
        """The exact number of jobs matching ``filters``."""
        with self.db.read() as conn:
            if filters.counted:
                return counts.sum_where(conn, self._where(filters, job_counts))
            return conn.execute(
                sa.select(sa.func.count()).select_from(jobs).where(*self._where(filters))
            ).scalar_one()

    def count_drift(self) -> dict[counts.CountKey, tuple[int, int]]:
        """Maintained counters that disagree with the jobs (empty: all exact); a check
        for tests and operators, it counts every job."""
        with self.db.snapshot() as conn:
            return counts.drift(conn)

    def _count(
        self, conn: sa.Connection, filters: JobFilters, where: list[sa.ColumnElement[bool]]
    ) -> tuple[int, bool]:
        """(numberMatched, whether it is exact): from the counters when they key every
        filter, else counted in the jobs table up to ``COUNT_LIMIT``."""
        if filters.counted:
            return counts.sum_where(conn, self._where(filters, job_counts)), True
        limit = self.count_limit
        capped = sa.select(sa.literal(1)).select_from(jobs).where(*where).limit(limit + 1)
        n = conn.execute(sa.select(sa.func.count()).select_from(capped.subquery())).scalar_one()
        return (limit, False) if n > limit else (n, True)

    def job_events(self, job_id: str) -> list[JobEvent]:
        with self.db.read() as conn:
            rows = (
                conn.execute(
                    sa.select(job_events)
                    .where(job_events.c.job_id == job_id)
                    .order_by(job_events.c.id)
                )
                .mappings()
                .all()
            )
        return [
            JobEvent(
                job_id=r["job_id"],
                at=r["at"],
                status=JobStatus(r["status"]),
                reason=Reason(r["reason"]) if r["reason"] else None,
                message=r["message"],
            )
            for r in rows
        ]

    def attempts(self, job_id: str) -> list[Attempt]:
        with self.db.read() as conn:
            rows = (
                conn.execute(
                    sa.select(job_attempts)
                    .where(job_attempts.c.job_id == job_id)
                    .order_by(job_attempts.c.number)
                )
                .mappings()
                .all()
            )
        return [Attempt(**dict(r)) for r in rows]

    # -- claiming and transitions ---------------------------------------------------------

    def claim_next(
        self,
        free_slots: Mapping[str, int],
        *,
        host: str,
        worker: str,
        node: str | None = None,
        user_caps: Mapping[str, int | None] | None = None,
        fair_share: bool = True,
    ) -> Job | None:
        """Move the next runnable job of the given queues to ``running``.

        ``free_slots`` maps queue name -> the queue's slot limit. A queue is served only
        while fewer than that many of its jobs run (over all workers). Which job gets the
        slot is ``store.claiming.choose_job``: with ``fair_share``, the waiting user with
        the fewest running jobs in the queue, then priority 9 first, then submit order;
        ``user_caps`` (queue -> max_running_per_user) and batches' ``max_running`` pass
        over users and batches at their cap. Only jobs whose build is ready are candidates.

        Two workers never take the same job nor overfill a queue: on SQLite the claim
        holds the database write lock (BEGIN IMMEDIATE); on PostgreSQL it holds an
        advisory lock per queue while counting, and takes the candidate row ``FOR UPDATE
        SKIP LOCKED`` (a row being cancelled or failed elsewhere is passed over).
        """
        if not free_slots:
            return None
        now = utcnow()
        with self.db.write() as conn:
            self.db.lock(conn, "queue", *free_slots)
            running = dict(
                conn.execute(
                    sa.select(jobs.c.queue, sa.func.count())
                    .where(
                        jobs.c.status == JobStatus.RUNNING.value, jobs.c.queue.in_(list(free_slots))
                    )
                    .group_by(jobs.c.queue)
                ).all()
            )
            open_queues = [q for q, slots in free_slots.items() if running.get(q, 0) < slots]
            if not open_queues:
                return None
            candidate = choose_job(
                conn,
                open_queues,
                user_caps=user_caps or {},
                fair=fair_share,
                lock_rows=not self.db.is_sqlite,
            )
            if candidate is None:
                return None
            job_id, attempts = candidate.job_id, candidate.attempts
            changed = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == JobStatus.ACCEPTED.value)
                .values(
                    status=JobStatus.RUNNING.value,
                    started=now,
                    updated=now,
                    attempts=attempts + 1,
                    reason=None,
                    phase=None,
                    message=None,
                )
            ).rowcount
            if changed != 1:  # taken by another worker between select and update
                return None
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().one()
            counts.apply_deltas(
                conn, counts.moved(row, JobStatus.ACCEPTED.value, JobStatus.RUNNING.value)
            )
            conn.execute(
                job_attempts.insert().values(
                    job_id=job_id,
                    number=attempts + 1,
                    host=host,
                    worker=worker,
                    node=node,
                    started=now,
                )
            )
            conn.execute(
                job_events.insert().values(
                    job_id=job_id,
                    at=now,
                    status=JobStatus.RUNNING.value,
                    message=f"claimed by {worker} on {host} (attempt {attempts + 1})",
                )
            )
        return _job_from_row(row)

    def claim_job(
        self, job_id: str, *, host: str, worker: str, node: str | None = None
    ) -> Job | None:
        """Move one given job from ``accepted`` to ``running`` (the celery executor's claim:
        the broker chose the job, the store decides whether it runs).

        Answers None, changing nothing, when the job is not accepted (already running,
        ended, or a duplicate message), is cancelled, or its build is not ready.
        """
        now = utcnow()
        with self.db.write() as conn:
            ready = (
                sa.select(builds.c.id)
                .select_from(builds.join(algorithms, algorithms.c.build_id == builds.c.id))
                .where(algorithms.c.id == jobs.c.algorithm_id, builds.c.status == "ready")
                .exists()
            )
            claimed = conn.execute(
                jobs.update()
                .where(
                    jobs.c.id == job_id,
                    jobs.c.status == JobStatus.ACCEPTED.value,
                    jobs.c.cancel_requested.is_(False),
                    ready,
                )
                .values(
                    status=JobStatus.RUNNING.value,
                    started=now,
                    updated=now,
                    attempts=jobs.c.attempts + 1,
                    reason=None,
                    phase=None,
                    message=None,
                )
                .returning(jobs.c.attempts, *(jobs.c[k] for k in counts.KEY_COLUMNS))
            ).first()
            if claimed is None:
                return None
            attempts = claimed.attempts
            counts.apply_deltas(
                conn,
                counts.moved(claimed._mapping, JobStatus.ACCEPTED.value, JobStatus.RUNNING.value),
            )
            conn.execute(
                job_attempts.insert().values(
                    job_id=job_id, number=attempts, host=host, worker=worker, node=node, started=now
                )
            )
            conn.execute(
                job_events.insert().values(
                    job_id=job_id,
                    at=now,
                    status=JobStatus.RUNNING.value,
                    message=f"claimed by {worker} on {host} (attempt {attempts})",
                )
            )
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().one()
        return _job_from_row(row)

    def transition(
        self,
        job_id: str,
        to: JobStatus,
        *,
        allowed_from: Iterable[JobStatus] = ACTIVE,
        reason: Reason | None = None,
        phase: Phase | None = None,
        message: str | None = None,
        attempt: int | None = None,
        **fields: Any,
    ) -> Job:
        """Compare-and-set ``status``; raises InvalidTransition if the job is elsewhere.

        ``attempt`` fences the change to one attempt of a running job (``WHERE attempts =
        n``): a supervisor or recovery that saw attempt n can never end attempt n+1.
        """
        _refuse_counted(fields)
        now = utcnow()
        values: dict[str, Any] = {"status": to.value, "updated": now, **_with_peak(fields)}
        if reason is not None or to.terminal:
            values["reason"] = reason.value if reason else None
        if phase is not None or to.terminal:
            values["phase"] = phase.value if phase else None
        if message is not None:
            values["message"] = message
        if to.terminal:
            values["finished"] = now
        if to == JobStatus.ACCEPTED:
            values.update(started=None, finished=None)
        with self.db.write() as conn:
            # FOR UPDATE (PostgreSQL): the status read here is the one the update changes,
            # so the counters move from the right status.
            current = conn.execute(
                sa.select(jobs.c.status, jobs.c.started, *(jobs.c[k] for k in counts.KEY_COLUMNS))
                .where(jobs.c.id == job_id)
                .with_for_update()
            ).first()
            if current is None:
                raise NoSuchJob(f"no job with id {job_id!r}")
            if to.terminal and current.started is not None:
                values["duration"] = (now - current.started).total_seconds()
            where = [
                jobs.c.id == job_id,
                jobs.c.status.in_([JobStatus(s).value for s in allowed_from]),
            ]
            if attempt is not None:
                where.append(jobs.c.attempts == attempt)
            changed = conn.execute(jobs.update().where(*where).values(**values)).rowcount
            if changed != 1:
                raise InvalidTransition(
                    f"job {job_id} is {current.status}"
                    + (f" (not at attempt {attempt})" if attempt is not None else "")
                    + f"; it cannot become {to.value}"
                )
            counts.apply_deltas(conn, counts.moved(current._mapping, current.status, to.value))
            conn.execute(
                job_events.insert().values(
                    job_id=job_id,
                    at=now,
                    status=to.value,
                    reason=reason.value if reason else None,
                    message=message,
                )
            )
            if to.terminal:
                conn.execute(
                    job_attempts.update()
                    .where(job_attempts.c.job_id == job_id, job_attempts.c.finished.is_(None))
                    .values(finished=now, exit_code=fields.get("exit_code"))
                )
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().one()
        return _job_from_row(row)

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Non-state fields: work_dir, metrics, progress, output_url, results, warnings."""
        _refuse_counted(fields)
        fields = {**_with_peak(fields), "updated": utcnow()}
        with self.db.write() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(**fields))

    def add_event(self, job_id: str, message: str) -> None:
        """An informational event (the status does not change)."""
        with self.db.write() as conn:
            status = conn.execute(sa.select(jobs.c.status).where(jobs.c.id == job_id)).scalar()
            if status is None:
                raise NoSuchJob(f"no job with id {job_id!r}")
            conn.execute(
                job_events.insert().values(
                    job_id=job_id, at=utcnow(), status=status, message=message
                )
            )

    def request_cancel(self, job_id: str) -> Job:
        """Flag a job for cancelling. A queued job is dismissed at once; a running one is
        dismissed by whoever supervises it. Terminal jobs are answered as they are."""
        with self.db.write() as conn:
            conn.execute(
                jobs.update()
                .where(
                    jobs.c.id == job_id,
                    jobs.c.status.in_([JobStatus.ACCEPTED.value, JobStatus.RUNNING.value]),
                )
                .values(cancel_requested=True, updated=utcnow())
            )
        job = self.get_job(job_id)
        if job.status == JobStatus.ACCEPTED:
            try:
                return self.transition(
                    job_id,
                    JobStatus.DISMISSED,
                    allowed_from=[JobStatus.ACCEPTED],
                    reason=Reason.CANCELLED,
                    message="cancelled before it started",
                )
            except InvalidTransition:
                return self.get_job(job_id)
        return job

    # -- attempts: the fencing contract every executor uses ------------------------------
    #
    # An attempt is identified by (job id, attempt number). Every write about a running
    # job names the attempt it saw and changes nothing if the job has moved on (requeued,
    # claimed again, ended): WHERE jobs.attempts = n AND status = running. Workers are told
    # apart by a per-process unique worker id (not the hostname), and pids are compared
    # only on the node (machine + PID namespace) that recorded them.

    def _attempt_is_current(self, job_id: str, attempt: int) -> sa.ColumnElement[bool]:
        return sa.exists().where(
            jobs.c.id == job_id,
            jobs.c.attempts == attempt,
            jobs.c.status == JobStatus.RUNNING.value,
        )

    def _update_open_attempt(self, job_id: str, attempt: int, **values: Any) -> bool:
        with self.db.write() as conn:
            changed = conn.execute(
                job_attempts.update()
                .where(
                    job_attempts.c.job_id == job_id,
                    job_attempts.c.number == attempt,
                    job_attempts.c.finished.is_(None),
                    self._attempt_is_current(job_id, attempt),
                )
                .values(**values)
            ).rowcount
        return changed == 1

    def record_supervisor(
        self, job_id: str, pid: int, pid_started: float, *, attempt: int | None = None
    ) -> bool:
        """The supervisor of attempt ``attempt`` (default: the job's current one) is
        ``pid``; False: that attempt is over, and the caller must not run the job."""
        if attempt is None:
            job = self.get_job(job_id)
            if job.status != JobStatus.RUNNING:
                return False
            attempt = job.attempts
        return self._update_open_attempt(job_id, attempt, pid=pid, pid_started=pid_started)

    def record_run_start(
        self, job_id: str, attempt: int, pid: int, pid_started: float, cgroup: list[str]
    ) -> bool:
        """The run command of attempt ``attempt`` started: its pid and cgroup (recovery
        ends it by these, never by a pid a job could write)."""
        return self._update_open_attempt(
            job_id, attempt, run_pid=pid, run_pid_started=pid_started, run_cgroup=cgroup
        )

    def record_run_end(self, job_id: str, attempt: int) -> bool:
        """The run command of attempt ``attempt`` ended: from now on a failure ends the job
        instead of running it again."""
        return self._update_open_attempt(job_id, attempt, run_finished=utcnow())

    def current_attempt(self, job_id: str) -> Attempt | None:
        """The open attempt of a running job, else None."""
        with self.db.read() as conn:
            row = (
                conn.execute(
                    sa.select(job_attempts)
                    .where(job_attempts.c.job_id == job_id, job_attempts.c.finished.is_(None))
                    .order_by(job_attempts.c.number.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
        return Attempt(**dict(row)) if row is not None else None

    def running_on_host(self, host: str) -> list[tuple[Job, Attempt | None]]:
        """Running jobs whose open attempt is on ``host`` (or that have no attempt)."""
        return [(j, a) for j, a in self._running_with_attempts() if a is None or a.host == host]

    def running_on_node(self, node: str) -> list[tuple[Job, Attempt | None]]:
        """Running jobs whose open attempt runs on ``node`` (or that have no attempt)."""
        return [(j, a) for j, a in self._running_with_attempts() if a is None or a.node == node]

    def _running_with_attempts(self) -> list[tuple[Job, Attempt | None]]:
        with self.db.read() as conn:
            rows = (
                conn.execute(
                    sa.select(jobs, job_attempts.c.id.label("attempt_id"))
                    .select_from(
                        jobs.outerjoin(
                            job_attempts,
                            sa.and_(
                                job_attempts.c.job_id == jobs.c.id,
                                job_attempts.c.finished.is_(None),
                            ),
                        )
                    )
                    .where(jobs.c.status == JobStatus.RUNNING.value)
                )
                .mappings()
                .all()
            )
            attempt_ids = [r["attempt_id"] for r in rows if r["attempt_id"]]
            attempts = {
                a["id"]: Attempt(**dict(a))
                for a in conn.execute(
                    sa.select(job_attempts).where(job_attempts.c.id.in_(attempt_ids))
                ).mappings()
            }
        return [(_job_from_row(r), attempts.get(r["attempt_id"])) for r in rows]

    def requeue(self, job_id: str, message: str, *, attempt: int | None = None) -> Job:
        """Back to ``accepted`` after a lost supervisor (the attempt is closed).

        With ``attempt``, only if the job is still at that attempt (see transition)."""
        now = utcnow()
        job = self.transition(
            job_id,
            JobStatus.ACCEPTED,
            allowed_from=[JobStatus.RUNNING],
            message=message,
            attempt=attempt,
        )
        with self.db.write() as conn:  # only that attempt: a new claim may follow at once
            conn.execute(
                job_attempts.update()
                .where(
                    job_attempts.c.job_id == job_id,
                    job_attempts.c.number == job.attempts,
                    job_attempts.c.finished.is_(None),
                )
                .values(finished=now)
            )
        return job

    def fail_waiting_jobs(
        self, algorithm_id: int, reason: Reason, phase: Phase, message: str
    ) -> int:
        """Fail every accepted job of an algorithm (its build failed)."""
        now = utcnow()
        with self.db.write() as conn:
            # RETURNING: exactly the jobs this update failed, not one a worker claimed
            # between a select and the update (PostgreSQL does not lock the whole table).
            failed = (
                conn.execute(
                    jobs.update()
                    .where(
                        jobs.c.algorithm_id == algorithm_id,
                        jobs.c.status == JobStatus.ACCEPTED.value,
                    )
                    .values(
                        status=JobStatus.FAILED.value,
                        reason=reason.value,
                        phase=phase.value,
                        message=message,
                        finished=now,
                        updated=now,
                    )
                    .returning(jobs.c.id, *(jobs.c[k] for k in counts.KEY_COLUMNS))
                )
                .mappings()
                .all()
            )
            if not failed:
                return 0
            ids = [r["id"] for r in failed]
            deltas: Counter[counts.CountKey] = Counter()
            for r in failed:
                deltas.update(counts.moved(r, JobStatus.ACCEPTED.value, JobStatus.FAILED.value))
            counts.apply_deltas(conn, deltas)
            conn.execute(
                job_events.insert(),
                [
                    {
                        "job_id": i,
                        "at": now,
                        "status": JobStatus.FAILED.value,
                        "reason": reason.value,
                        "message": message,
                    }
                    for i in ids
                ],
            )
        return len(ids)

    def active_jobs_of_algorithm(self, algorithm_id: int) -> int:
        with self.db.read() as conn:
            return conn.execute(
                sa.select(sa.func.count())
                .select_from(jobs)
                .where(
                    jobs.c.algorithm_id == algorithm_id,
                    jobs.c.status.in_([s.value for s in ACTIVE]),
                )
            ).scalar_one()

    # -- queues and batches ---------------------------------------------------------------

    def queue_stats(self) -> dict[str, dict[str, Any]]:
        """Per queue: accepted (depth), running, oldest waiting job's creation time."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(jobs.c.queue, jobs.c.status, sa.func.count(), sa.func.min(jobs.c.created))
                .where(jobs.c.status.in_([s.value for s in ACTIVE]))
                .group_by(jobs.c.queue, jobs.c.status)
            ).all()
        stats: dict[str, dict[str, Any]] = {}
        for queue, status, count, oldest in rows:
            entry = stats.setdefault(queue, {"accepted": 0, "running": 0, "oldest_accepted": None})
            entry[status] = count
            if status == JobStatus.ACCEPTED.value:
                entry["oldest_accepted"] = oldest
        return stats

    def get_batch(self, batch_id: str) -> Batch:
        with self.db.read() as conn:
            row = (
                conn.execute(sa.select(batches).where(batches.c.id == batch_id)).mappings().first()
            )
            if row is None:
                raise NoSuchJob(f"no batch with id {batch_id!r}")
            by_status = counts.by_status(conn, [job_counts.c.batch_id == batch_id])
        return _batch_from_row(row, by_status)

    def list_batches(
        self, *, owner: str | None = None, limit: int = 25, cursor: str | None = None
    ) -> Page:
        """Newest first; ``cursor`` continues after the last item (keyset on creation)."""
        where = [batches.c.owner == owner] if owner else []
        query = (
            sa.select(batches)
            .where(*where)
            .order_by(batches.c.created.desc(), batches.c.id.desc())
            .limit(limit + 1)
        )
        if cursor:
            after = _decode_batch_cursor(cursor)
            query = query.where(
                sa.or_(
                    batches.c.created < after[0],
                    sa.and_(batches.c.created == after[0], batches.c.id < after[1]),
                )
            )
        with self.db.read() as conn:
            rows = conn.execute(query).mappings().all()[: limit + 1]
            total = conn.execute(
                sa.select(sa.func.count()).select_from(batches).where(*where)
            ).scalar_one()
            ids = [r["id"] for r in rows[:limit]]
            per_batch: dict[str, dict[str, int]] = {i: {} for i in ids}
            if ids:
                for batch_id, status, count in conn.execute(
                    sa.select(
                        job_counts.c.batch_id, job_counts.c.status, sa.func.sum(job_counts.c.n)
                    )
                    .where(job_counts.c.batch_id.in_(ids))
                    .group_by(job_counts.c.batch_id, job_counts.c.status)
                ).all():
                    per_batch[batch_id][status] = int(count)
        items = [_batch_from_row(r, per_batch[r["id"]]) for r in rows[:limit]]
        more = len(rows) > limit
        next_cursor = _encode_batch_cursor(items[-1]) if more and items else None
        return Page(items=items, number_matched=total, next_cursor=next_cursor)

    def batch_job_ids(
        self,
        batch_id: str,
        statuses: Iterable[JobStatus],
        reasons: Iterable[Reason] | None = None,
    ) -> list[str]:
        where = [jobs.c.batch_id == batch_id, jobs.c.status.in_([s.value for s in statuses])]
        if reasons is not None:
            where.append(jobs.c.reason.in_([r.value for r in reasons]))
        with self.db.read() as conn:
            return list(
                conn.execute(sa.select(jobs.c.id).where(*where).order_by(jobs.c.seq)).scalars()
            )


def _batch_from_row(row: Mapping[str, Any], by_status: Mapping[str, int]) -> Batch:
    return Batch(
        id=row["id"],
        owner=row["owner"],
        created=row["created"],
        counts={s.value: by_status.get(s.value, 0) for s in JobStatus},
        total=row["total"],
        process=row["process"],
        max_running=row["max_running"],
    )


def _encode_batch_cursor(batch: Batch) -> str:
    raw = json.dumps({"c": batch.created.isoformat(), "i": batch.id})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_batch_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(data["c"]), str(data["i"])
    except Exception as exc:
        from opendps.errors import InvalidInput

        raise InvalidInput(f"next: {cursor!r} is not a cursor this server issued") from exc


def _with_defaults(row: dict[str, Any]) -> dict[str, Any]:
    defaults = dict.fromkeys(
        (
            "reason",
            "phase",
            "message",
            "started",
            "finished",
            "work_dir",
            "output_url",
            "exit_code",
            "progress",
            "metrics",
            "results",
            "warnings",
            "request",
        )
    )
    return {**defaults, **row}


def _with_peak(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Copy metrics' peak memory into its column (batch statistics read the column)."""
    fields = dict(fields)
    metrics = fields.get("metrics")
    if isinstance(metrics, Mapping) and isinstance(metrics.get("peak_memory_bytes"), int):
        fields["peak_memory"] = metrics["peak_memory_bytes"]
    return fields


def _refuse_counted(fields: Mapping[str, Any]) -> None:
    """``status`` and the counter keys change only through the statements that move the
    maintained counters (store/counts.py); a free-form field update would make them drift."""
    counted = sorted(set(fields) & {"status", *counts.KEY_COLUMNS})
    if counted:
        raise ValueError(f"{', '.join(counted)}: not a free-form job field (counted)")


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def is_terminal(status: str) -> bool:
    return JobStatus(status) in TERMINAL
