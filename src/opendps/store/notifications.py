"""NotificationStore: subscriptions (who to tell when a job or batch ends) and deliveries
(one e-mail or one POST each, retried with back-off).

A subscription *fires* once its job or batch is over: in one transaction its state moves on
(compare-and-set, so two delivery loops never both fire it) and its deliveries are inserted.
A delivery is *leased* by one sender at a time. Both live in the database, so a restart
between a job's end and the delivery loses nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from opendps.models import JobStatus
from opendps.store.db import Database, utcnow
from opendps.store.tables import deliveries, jobs, subscriptions

TERMINAL = [JobStatus.SUCCESSFUL.value, JobStatus.FAILED.value, JobStatus.DISMISSED.value]
ACTIVE = [JobStatus.ACCEPTED.value, JobStatus.RUNNING.value]
PENDING, STARTED, FIRED = "pending", "started", "fired"


@dataclass(frozen=True)
class Subscription:
    id: int
    owner: str
    job_id: str | None
    batch_id: str | None
    email: list[str]
    webhook: str | None
    events: list[str]
    ogc_uris: dict[str, str] | None
    base_url: str
    state: str


@dataclass(frozen=True)
class NewDelivery:
    kind: str  # email | webhook
    target: str  # URL, or comma-separated addresses
    body: str
    content_type: str = "application/json"
    subject: str | None = None


@dataclass(frozen=True)
class Delivery:
    id: int
    subscription_id: int
    kind: str
    target: str
    subject: str | None
    body: str
    content_type: str
    tries: int


def _subscription(row: Mapping[str, Any]) -> Subscription:
    return Subscription(
        id=row["id"],
        owner=row["owner"],
        job_id=row["job_id"],
        batch_id=row["batch_id"],
        email=list(row["email"] or []),
        webhook=row["webhook"],
        events=list(row["events"] or []),
        ogc_uris=dict(row["ogc_uris"]) if row["ogc_uris"] else None,
        base_url=row["base_url"],
        state=row["state"],
    )


class NotificationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def subscribe(
        self,
        owner: str,
        *,
        base_url: str,
        job_ids: Sequence[str] = (),
        batch_id: str | None = None,
        email: Sequence[str] = (),
        webhook: str | None = None,
        events: Sequence[str] = ("finished",),
        ogc_uris: Mapping[str, str] | None = None,
    ) -> None:
        """One subscription for the batch, or one per job."""
        now = utcnow()
        common = {
            "owner": owner,
            "email": list(email),
            "webhook": webhook,
            "events": list(events),
            "ogc_uris": dict(ogc_uris) if ogc_uris else None,
            "base_url": base_url,
            "state": PENDING,
            "created": now,
        }
        targets = [{"job_id": None, "batch_id": batch_id}] if batch_id else []
        targets += [{"job_id": j, "batch_id": None} for j in job_ids]
        if targets:
            with self.db.write() as conn:
                conn.execute(subscriptions.insert(), [{**common, **t} for t in targets])

    def due_subscriptions(self, limit: int = 100) -> list[tuple[Subscription, str]]:
        """Subscriptions with something to send, each with its job's or batch's status:
        a job that ended (or, for an OGC inProgressUri, that started), a batch with no
        unfinished job left."""
        with self.db.read() as conn:
            job_rows = conn.execute(
                sa.select(subscriptions, jobs.c.status.label("job_status"))
                .join(jobs, jobs.c.id == subscriptions.c.job_id)
                .where(
                    subscriptions.c.state.in_([PENDING, STARTED]),
                    sa.or_(
                        jobs.c.status.in_(TERMINAL),
                        sa.and_(
                            subscriptions.c.state == PENDING,
                            subscriptions.c.ogc_uris.is_not(None),
                            jobs.c.status == JobStatus.RUNNING.value,
                        ),
                    ),
                )
                .limit(limit)
            ).mappings()
            found = [(_subscription(r), r["job_status"]) for r in job_rows]
            unfinished = sa.exists().where(
                jobs.c.batch_id == subscriptions.c.batch_id, jobs.c.status.in_(ACTIVE)
            )
            batch_rows = conn.execute(
                sa.select(subscriptions)
                .where(
                    subscriptions.c.state == PENDING,
                    subscriptions.c.batch_id.is_not(None),
                    ~unfinished,
                )
                .limit(limit)
            ).mappings()
            found += [(_subscription(r), "ended") for r in batch_rows]
        return found

    def fire(
        self, subscription_id: int, from_state: str, to_state: str, new: Sequence[NewDelivery]
    ) -> bool:
        """Move the subscription on and queue its deliveries, atomically; False when another
        loop got there first."""
        now = utcnow()
        with self.db.write() as conn:
            changed = conn.execute(
                subscriptions.update()
                .where(subscriptions.c.id == subscription_id, subscriptions.c.state == from_state)
                .values(state=to_state, fired=now if to_state == FIRED else None)
            ).rowcount
            if changed != 1:
                return False
            if new:
                conn.execute(
                    deliveries.insert(),
                    [
                        {
                            "subscription_id": subscription_id,
                            "kind": d.kind,
                            "target": d.target,
                            "subject": d.subject,
                            "body": d.body,
                            "content_type": d.content_type,
                            "status": "pending",
                            "tries": 0,
                            "next_at": now,
                            "created": now,
                        }
                        for d in new
                    ],
                )
        return True

    def lease_due(self, *, lease_seconds: float, limit: int = 20) -> list[Delivery]:
        """Take up to ``limit`` due deliveries for ``lease_seconds`` (compare-and-set, so two
        senders never send one delivery at once; an expired lease is taken again)."""
        now = utcnow()
        until = now + timedelta(seconds=lease_seconds)
        free = sa.or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now)
        taken: list[Delivery] = []
        with self.db.write() as conn:
            rows = conn.execute(
                sa.select(deliveries)
                .where(deliveries.c.status == "pending", deliveries.c.next_at <= now, free)
                .order_by(deliveries.c.next_at)
                .limit(limit)
            ).mappings()
            for row in list(rows):
                changed = conn.execute(
                    deliveries.update()
                    .where(deliveries.c.id == row["id"], deliveries.c.status == "pending", free)
                    .values(lease_until=until)
                ).rowcount
                if changed == 1:
                    taken.append(
                        Delivery(
                            id=row["id"],
                            subscription_id=row["subscription_id"],
                            kind=row["kind"],
                            target=row["target"],
                            subject=row["subject"],
                            body=row["body"],
                            content_type=row["content_type"],
                            tries=row["tries"],
                        )
                    )
        return taken

    def delivered(self, delivery_id: int) -> None:
        with self.db.write() as conn:
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id == delivery_id)
                .values(
                    status="sent", sent=utcnow(), lease_until=None, tries=deliveries.c.tries + 1
                )
            )

    def failed_try(self, delivery_id: int, error: str, retry_at: datetime | None) -> None:
        """A try failed: again at ``retry_at``, or given up (``None``)."""
        values: dict[str, Any] = {
            "tries": deliveries.c.tries + 1,
            "last_error": error[:2000],
            "lease_until": None,
        }
        if retry_at is None:
            values["status"] = "failed"
        else:
            values["next_at"] = retry_at
        with self.db.write() as conn:
            conn.execute(deliveries.update().where(deliveries.c.id == delivery_id).values(**values))

    def deliveries_of(
        self, *, job_id: str | None = None, batch_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Deliveries of a job's or a batch's subscriptions (for status pages and tests)."""
        where = subscriptions.c.job_id == job_id if job_id else subscriptions.c.batch_id == batch_id
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(deliveries)
                .join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
                .where(where)
                .order_by(deliveries.c.id)
            ).mappings()
            return [dict(r) for r in rows]
