"""job_samples: the memory/CPU series of each job's run; a covering index for the queues' counts

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_samples",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("samples", sa.JSON(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index("ix_jobs_status_queue_created", "jobs", ["status", "queue", "created"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status_queue_created", table_name="jobs")
    op.drop_table("job_samples")
