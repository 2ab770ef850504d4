"""job counts: maintained counters per owner/queue/algorithm/batch/status; listing indexes

Revision ID: 0009
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_counts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("queue", sa.String(length=200), nullable=False),
        sa.Column("algorithm_id", sa.Integer(), nullable=False),
        sa.Column("algorithm", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=200), nullable=False),
        sa.Column("batch_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "owner",
            "queue",
            "algorithm_id",
            "algorithm",
            "version",
            "batch_id",
            "status",
            name="uq_job_counts_key",
        ),
    )
    with op.batch_alter_table("job_counts", schema=None) as batch_op:
        batch_op.create_index("ix_job_counts_status", ["status"], unique=False)
        batch_op.create_index("ix_job_counts_batch", ["batch_id"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_queue_seq", ["queue", "seq"], unique=False)
        batch_op.create_index("ix_jobs_owner_status_seq", ["owner", "status", "seq"], unique=False)
    # Count the jobs that exist (one pass; the store keeps the counters from now on).
    from opendps.store.counts import recount

    recount(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_owner_status_seq")
        batch_op.drop_index("ix_jobs_queue_seq")
    with op.batch_alter_table("job_counts", schema=None) as batch_op:
        batch_op.drop_index("ix_job_counts_batch")
        batch_op.drop_index("ix_job_counts_status")
    op.drop_table("job_counts")
