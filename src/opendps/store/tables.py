"""Table definitions, shared by SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData()


class UTCDateTime(TypeDecorator):
    """Timestamps are stored naive in UTC and always come back timezone-aware."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("token_hash", sa.String(64), nullable=True, unique=True),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),
    sa.Column("is_guest", sa.Boolean, nullable=False, default=False),
    sa.Column("created", UTCDateTime, nullable=False),
)

algorithms = sa.Table(
    "algorithms",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("version", sa.String(200), nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("package", sa.Text, nullable=True),
    sa.Column("package_type", sa.String(100), nullable=True),
    sa.Column("builtin", sa.Boolean, nullable=False, default=False),
    sa.Column("build_id", sa.Integer, nullable=True),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("updated", UTCDateTime, nullable=False),
    sa.UniqueConstraint("name", "version", name="uq_algorithms_name_version"),
)
sa.Index("ix_algorithms_name_updated", algorithms.c.name, algorithms.c.updated)

builds = sa.Table(
    "builds",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("algorithm_id", sa.Integer, nullable=False, index=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("commit", sa.String(64), nullable=True),
    sa.Column("log_path", sa.Text, nullable=True),
    sa.Column("algorithm_dir", sa.Text, nullable=True),
    sa.Column("env_dir", sa.Text, nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    # The container image jobs run in (None: on the host), and where jobs run in words:
    # "podman <image>" or "host (<why>)" (DESIGN §15).
    sa.Column("image", sa.Text, nullable=True),
    sa.Column("container", sa.Text, nullable=True),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("started", UTCDateTime, nullable=True),
    sa.Column("finished", UTCDateTime, nullable=True),
)
sa.Index("ix_builds_status", builds.c.status)

queues = sa.Table(
    "queues",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("memory", sa.BigInteger, nullable=True),
    sa.Column("cpus", sa.Float, nullable=True),
    sa.Column("time_limit", sa.Float, nullable=True),
    sa.Column("slots", sa.Integer, nullable=False),
    sa.Column("guest", sa.Boolean, nullable=False),
    sa.Column("is_default", sa.Boolean, nullable=False),
)

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False, index=True),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("process", sa.String(401), nullable=True),  # name:version of its jobs
    sa.Column("max_running", sa.Integer, nullable=True),  # at most this many of its jobs run
)

jobs = sa.Table(
    "jobs",
    metadata,
    # seq is the insertion order: the stable sort key and keyset cursor of every listing.
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    sa.Column("algorithm_id", sa.Integer, nullable=False),
    sa.Column("algorithm", sa.String(200), nullable=False),
    sa.Column("version", sa.String(200), nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("queue", sa.String(200), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("tag", sa.String(500), nullable=False, default=""),  # first tag, for filtering
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("reason", sa.String(30), nullable=True),
    sa.Column("phase", sa.String(20), nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("batch_id", sa.String(36), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("dedup_key", sa.String(64), nullable=True),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("started", UTCDateTime, nullable=True),
    sa.Column("finished", UTCDateTime, nullable=True),
    sa.Column("updated", UTCDateTime, nullable=False),
    sa.Column("duration", sa.Float, nullable=True),  # finished - started, for duration filters
    sa.Column("work_dir", sa.Text, nullable=True),
    sa.Column("output_url", sa.Text, nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("progress", sa.Integer, nullable=True),
    sa.Column("metrics", sa.JSON, nullable=True),
    sa.Column("results", sa.JSON, nullable=True),
    sa.Column("warnings", sa.JSON, nullable=True),
    # The execute request's answer options (OGC response/outputs/subscriber), revision 0002.
    sa.Column("request", sa.JSON, nullable=True),
    # celery executor: when run_job(id) was last published; NULL = not on the broker (yet).
    sa.Column("enqueued", UTCDateTime, nullable=True),
    # metrics["peak_memory_bytes"], as a column so batch statistics are computed in SQL.
    sa.Column("peak_memory", sa.BigInteger, nullable=True),
)
# claim_next walks this index in priority order.
sa.Index("ix_jobs_claim", jobs.c.queue, jobs.c.status, jobs.c.priority, jobs.c.seq)
sa.Index("ix_jobs_status_seq", jobs.c.status, jobs.c.seq)
sa.Index("ix_jobs_owner_seq", jobs.c.owner, jobs.c.seq)
sa.Index("ix_jobs_algorithm_seq", jobs.c.algorithm, jobs.c.version, jobs.c.seq)
sa.Index("ix_jobs_algorithm_id_status", jobs.c.algorithm_id, jobs.c.status)
sa.Index("ix_jobs_tag_seq", jobs.c.tag, jobs.c.seq)
sa.Index("ix_jobs_batch_seq", jobs.c.batch_id, jobs.c.seq)
# Batch counts, by_reason and statistics (GET /batches/{id}) read only these indexes. The
# last three are partial (only ended jobs have the value), so inserting a batch skips them.
sa.Index("ix_jobs_batch_status", jobs.c.batch_id, jobs.c.status, jobs.c.reason)
for _name, _column in (
    ("ix_jobs_batch_finished", jobs.c.finished),
    ("ix_jobs_batch_duration", jobs.c.duration),
    ("ix_jobs_batch_memory", jobs.c.peak_memory),
):
    sa.Index(
        _name,
        jobs.c.batch_id,
        _column,
        sqlite_where=_column.is_not(None),
        postgresql_where=_column.is_not(None),
    )
# Fair share: the waiting users of a queue (skip-scan) and each one's next job.
sa.Index("ix_jobs_fair", jobs.c.queue, jobs.c.status, jobs.c.owner, jobs.c.priority, jobs.c.seq)
sa.Index("ix_jobs_created", jobs.c.created)
sa.Index("ix_jobs_dedup", jobs.c.owner, jobs.c.dedup_key)
# Covering index of the queues' depth, running and oldest wait (GET /queues, the dashboard);
# a batch's jobs per status are counted from ix_jobs_batch_status above.
sa.Index("ix_jobs_status_queue_created", jobs.c.status, jobs.c.queue, jobs.c.created)
# Listing paths at millions of jobs (revision 0009): a queue's page, and a user's page of
# one status, without scanning past other queues' or statuses' jobs.
sa.Index("ix_jobs_queue_seq", jobs.c.queue, jobs.c.seq)
sa.Index("ix_jobs_owner_status_seq", jobs.c.owner, jobs.c.status, jobs.c.seq)

# Maintained counts of jobs (store/counts.py), revision 0009: numberMatched and batch
# counts sum these rows instead of counting jobs.
job_counts = sa.Table(
    "job_counts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("queue", sa.String(200), nullable=False),
    sa.Column("algorithm_id", sa.Integer, nullable=False),
    sa.Column("algorithm", sa.String(200), nullable=False),
    sa.Column("version", sa.String(200), nullable=False),
    sa.Column("batch_id", sa.String(36), nullable=False),  # "" = no batch
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("n", sa.BigInteger, nullable=False),
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
sa.Index("ix_job_counts_status", job_counts.c.status)
sa.Index("ix_job_counts_batch", job_counts.c.batch_id)

# The celery sweeper looks for accepted jobs that are not on the broker.
sa.Index("ix_jobs_status_enqueued", jobs.c.status, jobs.c.enqueued)

job_attempts = sa.Table(
    "job_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(36), nullable=False, index=True),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("worker", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("pid_started", sa.Float, nullable=True),
    sa.Column("started", UTCDateTime, nullable=False),
    sa.Column("finished", UTCDateTime, nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    # The machine + PID namespace the attempt runs in: pids mean something only there.
    sa.Column("node", sa.String(255), nullable=True),
    # The run command (not a pid file a job could write): recovery ends it by its cgroup.
    sa.Column("run_pid", sa.Integer, nullable=True),
    sa.Column("run_pid_started", sa.Float, nullable=True),
    sa.Column("run_cgroup", sa.JSON, nullable=True),  # [paths], v1 has one per controller
    sa.Column("run_finished", UTCDateTime, nullable=True),  # set: never run it again
)

job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(36), nullable=False, index=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("reason", sa.String(30), nullable=True),
    sa.Column("message", sa.Text, nullable=True),
)

secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("value", sa.Text, nullable=False),  # Fernet token, never the plain value
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("updated", UTCDateTime, nullable=False),
    sa.UniqueConstraint("owner", "name", name="uq_secrets_owner_name"),
)

# Scale-out workers (``dps worker`` with executor celery): one row per worker process,
# refreshed by its heartbeat; a row older than heartbeat_timeout is a lost worker.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(255), primary_key=True),  # host:pid:start, as in job_attempts
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("queues", sa.JSON, nullable=False),
    sa.Column("concurrency", sa.Integer, nullable=False),
    sa.Column("running", sa.JSON, nullable=False),  # ids of the jobs it runs now
    sa.Column("started", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
)

# Notifications (DESIGN §14) and OGC subscriber callbacks: what to tell whom when a job or
# a batch ends. The executor side's delivery loop fires a subscription once its job or
# batch is over, turning it into deliveries, so a restart in between loses nothing.
subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("job_id", sa.String(36), nullable=True, index=True),
    sa.Column("batch_id", sa.String(36), nullable=True, index=True),
    sa.Column("email", sa.JSON, nullable=False),  # addresses
    sa.Column("webhook", sa.Text, nullable=True),
    sa.Column("events", sa.JSON, nullable=False),  # notify.on: finished, failed
    # OGC subscriber: successUri, ...; NULL (not JSON null) for other subscriptions
    sa.Column("ogc_uris", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("base_url", sa.Text, nullable=False),  # for the links of the documents sent
    # pending -> (started, OGC inProgressUri sent) -> fired
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("fired", UTCDateTime, nullable=True),
)
sa.Index("ix_subscriptions_state", subscriptions.c.state)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subscription_id", sa.Integer, nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),  # email | webhook
    sa.Column("target", sa.Text, nullable=False),  # URL, or comma-separated addresses
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # pending | sent | failed
    sa.Column("tries", sa.Integer, nullable=False),
    sa.Column("next_at", UTCDateTime, nullable=False),
    sa.Column("lease_until", UTCDateTime, nullable=True),  # a sender holds it until then
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("sent", UTCDateTime, nullable=True),
)
sa.Index("ix_deliveries_due", deliveries.c.status, deliveries.c.next_at)

# The memory/CPU series of a job's run (runner/sampling.py), one bounded JSON list per job,
# apart from the jobs table so that listings never carry it.
job_samples = sa.Table(
    "job_samples",
    metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("samples", sa.JSON, nullable=False),
    sa.Column("updated", UTCDateTime, nullable=False),
)
