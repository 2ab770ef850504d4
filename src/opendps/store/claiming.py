"""Which waiting job a freed slot goes to (DESIGN §14 "Fair share").

Called by ``JobStore.claim_next`` inside its claim transaction, after the queues with a free
slot are known, so SQLite and PostgreSQL share every line of it (PostgreSQL adds ``FOR UPDATE
SKIP LOCKED`` on the chosen row).

- **Fair share** (default): in each open queue, the waiting user with the fewest running jobs
  there gets the slot, whatever the priorities; priority, then submit order, picks among that
  user's own jobs. Ties between users go to the better job (priority, then age).
- **Caps**: a user at the queue's ``max_running_per_user`` and a batch at its ``max_running``
  are passed over.

Every query walks an index (``ix_jobs_fair``: queue, status, owner, priority, seq): the
waiting users of a queue by a skip-scan, each user's best priority by ``max()``, the oldest
job of that priority by the index order. A claim costs a few index probes per waiting user,
however many jobs wait.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from opendps.models import JobStatus
from opendps.store.tables import algorithms, batches, builds, jobs

ACCEPTED = JobStatus.ACCEPTED.value
RUNNING = JobStatus.RUNNING.value


@dataclass(frozen=True)
class Candidate:
    job_id: str
    attempts: int
    priority: int
    seq: int


def choose_job(
    conn: sa.Connection,
    open_queues: Sequence[str],
    *,
    user_caps: Mapping[str, int | None],
    fair: bool,
    lock_rows: bool,
) -> Candidate | None:
    """The job to claim among ``open_queues``, or None."""
    running = _running_by_owner(conn, open_queues)
    full_batches = _full_batches(conn)
    if not fair:
        capped = {(q, o) for (q, o), n in running.items() if (cap := user_caps.get(q)) and n >= cap}
        return _best_job(conn, open_queues, None, capped, full_batches, lock_rows)
    options: list[tuple[int, str, str]] = []  # (running jobs of the user there, queue, user)
    for queue in open_queues:
        cap = user_caps.get(queue)
        for owner in _waiting_owners(conn, queue):
            count = running.get((queue, owner), 0)
            if cap is None or count < cap:
                options.append((count, queue, owner))
    options.sort()
    while options:
        fewest = options[0][0]
        group = [o for o in options if o[0] == fewest]
        options = options[len(group) :]
        found = [
            c
            for _, queue, owner in group
            if (c := _best_job(conn, [queue], owner, set(), full_batches, lock_rows))
        ]
        if found:
            return min(found, key=lambda c: (-c.priority, c.seq))
    return None


def _running_by_owner(conn: sa.Connection, queues: Sequence[str]) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        sa.select(jobs.c.queue, jobs.c.owner, sa.func.count())
        .where(jobs.c.status == RUNNING, jobs.c.queue.in_(list(queues)))
        .group_by(jobs.c.queue, jobs.c.owner)
    ).all()
    return {(q, o): n for q, o, n in rows}


def _full_batches(conn: sa.Connection) -> list[str]:
    """Batches with a ``max_running`` cap that have that many jobs running."""
    running = (
        sa.select(sa.func.count())
        .where(jobs.c.batch_id == batches.c.id, jobs.c.status == RUNNING)
        .scalar_subquery()
    )
    return list(
        conn.execute(
            sa.select(batches.c.id).where(
                batches.c.max_running.is_not(None), batches.c.max_running <= running
            )
        ).scalars()
    )


def _waiting_owners(conn: sa.Connection, queue: str) -> list[str]:
    """Distinct owners of the queue's accepted jobs: a recursive skip-scan of ix_jobs_fair,
    one index probe per owner (a GROUP BY would read every waiting job)."""
    sql = sa.text(
        """
        WITH RECURSIVE owners(owner) AS (
            SELECT min(owner) FROM jobs WHERE queue = :queue AND status = :status
            UNION ALL
            SELECT (SELECT min(j.owner) FROM jobs j
                    WHERE j.queue = :queue AND j.status = :status AND j.owner > owners.owner)
            FROM owners WHERE owners.owner IS NOT NULL
        )
        SELECT owner FROM owners WHERE owner IS NOT NULL
        """
    )
    return list(conn.execute(sql, {"queue": queue, "status": ACCEPTED}).scalars())


def _best_job(
    conn: sa.Connection,
    queues: Sequence[str],
    owner: str | None,
    capped: set[tuple[str, str]],
    full_batches: list[str],
    lock_rows: bool,
) -> Candidate | None:
    """The best runnable job (priority 9 first, then submit order) of ``owner`` (or of
    anyone) in ``queues``: its build is ready, no cancel is pending, its batch and its user
    are below their caps."""
    base = [jobs.c.status == ACCEPTED, jobs.c.queue.in_(list(queues))]
    if owner is not None:
        base.append(jobs.c.owner == owner)
    eligible = [
        jobs.c.cancel_requested.is_(False),
        builds.c.status == "ready",
    ]
    if full_batches:
        eligible.append(sa.or_(jobs.c.batch_id.is_(None), jobs.c.batch_id.not_in(full_batches)))
    if capped:
        eligible.append(
            sa.not_(sa.or_(*(sa.and_(jobs.c.queue == q, jobs.c.owner == o) for q, o in capped)))
        )
    source = jobs.join(algorithms, algorithms.c.id == jobs.c.algorithm_id).join(
        builds, builds.c.id == algorithms.c.build_id
    )
    below: int | None = None
    while True:
        # The best priority left: max() over the index, not a sort of every waiting job.
        bound = [*base] if below is None else [*base, jobs.c.priority < below]
        priority = conn.execute(sa.select(sa.func.max(jobs.c.priority)).where(*bound)).scalar()
        if priority is None:
            return None
        query = (
            sa.select(jobs.c.id, jobs.c.attempts, jobs.c.seq)
            .select_from(source)
            .where(*base, jobs.c.priority == priority, *eligible)
            .order_by(jobs.c.seq)
            .limit(1)
        )
        if lock_rows:
            query = query.with_for_update(of=jobs, skip_locked=True)
        row = conn.execute(query).first()
        if row is not None:
            return Candidate(job_id=row.id, attempts=row.attempts, priority=priority, seq=row.seq)
        below = priority
