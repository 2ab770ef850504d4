"""the execute request's answer options are a column of the job

Until now they were JSON in an event message (``execute request: {…}``), which the job's
history showed. The upgrade moves each such message into ``jobs.request`` and removes it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LEGACY_PREFIX = "execute request: "


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("request", sa.JSON(), nullable=True))
    conn = op.get_bind()
    events = sa.table(
        "job_events", sa.column("id", sa.Integer), sa.column("job_id"), sa.column("message")
    )
    jobs = sa.table("jobs", sa.column("id"), sa.column("request", sa.JSON))
    rows = conn.execute(
        sa.select(events.c.id, events.c.job_id, events.c.message).where(
            events.c.message.like(LEGACY_PREFIX + "%")
        )
    ).all()
    for event_id, job_id, message in rows:
        try:
            record = json.loads(message[len(LEGACY_PREFIX) :])
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(request=record))
        conn.execute(events.delete().where(events.c.id == event_id))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("request")
