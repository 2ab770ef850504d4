"""Maintained job counts: how ``numberMatched`` stays cheap at millions of jobs.

``job_counts`` holds one row per (owner, queue, algorithm id, name, version, batch,
status) with the number of jobs in it. Every statement that inserts a job or changes its
status adds its deltas here **in the same transaction** (``apply_deltas``), so a count is
exact and as consistent as the rows it counts. A listing whose filters use only these
columns sums the matching rows (a few per user and queue) instead of counting jobs.

Deltas are applied in sorted key order: two PostgreSQL transactions that touch the same
counter rows then lock them in the same order and cannot deadlock.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from opendps.store.tables import job_counts, jobs

#: The columns a counter row is keyed by (besides status); jobs without a batch count
#: under ``""`` (a NULL would never match the unique key of an upsert).
KEY_COLUMNS = ("owner", "queue", "algorithm_id", "algorithm", "version", "batch_id")

CountKey = tuple[str, str, int, str, str, str, str]  # KEY_COLUMNS + status


def key_of(row: Mapping[str, Any], status: str | None = None) -> CountKey:
    """The counter a job row counts under (with ``status``, or the row's own)."""
    return (
        row["owner"],
        row["queue"],
        row["algorithm_id"],
        row["algorithm"],
        row["version"],
        row["batch_id"] or "",
        status if status is not None else row["status"],
    )


def moved(row: Mapping[str, Any], old: str, new: str) -> Counter[CountKey]:
    """The deltas of one job moving from status ``old`` to ``new``."""
    deltas: Counter[CountKey] = Counter()
    if old != new:
        deltas[key_of(row, old)] -= 1
        deltas[key_of(row, new)] += 1
    return deltas


def apply_deltas(conn: sa.Connection, deltas: Mapping[CountKey, int]) -> None:
    """Add ``deltas`` to the counters, inside the caller's transaction."""
    params = [
        {**dict(zip((*KEY_COLUMNS, "status"), key, strict=True)), "n": deltas[key]}
        for key in sorted(k for k, n in deltas.items() if n)
    ]
    if params:
        conn.execute(_upsert(conn.dialect.name), params)


@functools.cache
def _upsert(dialect: str) -> sa.Executable:
    """``INSERT ... ON CONFLICT (key) DO UPDATE SET n = n + excluded.n``, built once per
    dialect with bound parameters (building it per call cost more than running it)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    columns = (*KEY_COLUMNS, "status", "n")
    statement = insert(job_counts).values({c: sa.bindparam(c) for c in columns})
    return statement.on_conflict_do_update(
        index_elements=[*KEY_COLUMNS, "status"],
        set_={"n": job_counts.c.n + statement.excluded.n},
    )


def recount(conn: sa.Connection) -> None:
    """Rebuild every counter from the jobs table (migration backfill, bulk loads, repair).

    Run it inside a write transaction: it replaces the counters wholesale."""
    conn.execute(job_counts.delete())
    batch = sa.func.coalesce(jobs.c.batch_id, "")
    conn.execute(
        job_counts.insert().from_select(
            [*KEY_COLUMNS, "status", "n"],
            sa.select(
                jobs.c.owner,
                jobs.c.queue,
                jobs.c.algorithm_id,
                jobs.c.algorithm,
                jobs.c.version,
                batch,
                jobs.c.status,
                sa.func.count(),
            ).group_by(
                jobs.c.owner,
                jobs.c.queue,
                jobs.c.algorithm_id,
                jobs.c.algorithm,
                jobs.c.version,
                batch,
                jobs.c.status,
            ),
        )
    )


def drift(conn: sa.Connection) -> dict[CountKey, tuple[int, int]]:
    """Counters that disagree with the jobs table: key -> (counter, jobs counted)."""
    batch = sa.func.coalesce(jobs.c.batch_id, "")
    key = (jobs.c.owner, jobs.c.queue, jobs.c.algorithm_id, jobs.c.algorithm, jobs.c.version)
    actual = {
        tuple(row[:-1]): int(row[-1])
        for row in conn.execute(
            sa.select(*key, batch, jobs.c.status, sa.func.count()).group_by(
                *key, batch, jobs.c.status
            )
        )
    }
    counted = {
        tuple(row[:-1]): int(row[-1])
        for row in conn.execute(
            sa.select(*(job_counts.c[k] for k in (*KEY_COLUMNS, "status")), job_counts.c.n)
        )
    }
    return {
        k: (counted.get(k, 0), actual.get(k, 0))  # type: ignore[misc]
        for k in counted.keys() | actual.keys()
        if counted.get(k, 0) != actual.get(k, 0)
    }


def sum_where(conn: sa.Connection, where: list[sa.ColumnElement[bool]]) -> int:
    """The number of jobs matching ``where`` (conditions on ``job_counts`` columns)."""
    total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(job_counts.c.n), 0)).where(*where))
    return int(total.scalar_one())


def by_status(conn: sa.Connection, where: list[sa.ColumnElement[bool]]) -> dict[str, int]:
    """Counts per status of the jobs matching ``where`` (e.g. one batch)."""
    rows = conn.execute(
        sa.select(job_counts.c.status, sa.func.sum(job_counts.c.n))
        .where(*where)
        .group_by(job_counts.c.status)
    ).all()
    return {status: int(n) for status, n in rows if n}
