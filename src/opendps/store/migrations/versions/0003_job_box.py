"""job box: attempts record their node and the run command (pid, cgroup, end)

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("run_pid", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("run_pid_started", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("run_cgroup", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("run_finished", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_attempts", schema=None) as batch_op:
        for name in ("run_finished", "run_cgroup", "run_pid_started", "run_pid", "node"):
            batch_op.drop_column(name)
