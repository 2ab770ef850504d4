"""SampleStore: the memory/CPU series of each job's run (one bounded list per job)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from opendps.store.db import Database, utcnow
from opendps.store.tables import job_samples


class SampleStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def save_samples(self, job_id: str, samples: list[dict[str, Any]]) -> None:
        """Replace the job's series with ``samples`` (the recorder keeps it bounded)."""
        now = utcnow()
        with self.db.write() as conn:
            changed = conn.execute(
                job_samples.update()
                .where(job_samples.c.job_id == job_id)
                .values(samples=samples, updated=now)
            ).rowcount
            if not changed:
                conn.execute(
                    job_samples.insert().values(job_id=job_id, samples=samples, updated=now)
                )

    def job_samples(self, job_id: str) -> list[dict[str, Any]]:
        """The job's series, oldest first; empty before its run command started."""
        with self.db.read() as conn:
            value = conn.execute(
                sa.select(job_samples.c.samples).where(job_samples.c.job_id == job_id)
            ).scalar()
        return list(value or [])
