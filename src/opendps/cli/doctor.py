"""``dps doctor``: check that this configuration can work — database, broker, storage and
queue wiring — one line per check; exit 0 only when every check passes (DESIGN §13)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import typer

from opendps.cli.common import EXIT_FAILED, ConfigFile, DataDir, load_settings, out
from opendps.settings import Settings


def doctor_command(data_dir: Path | None = DataDir, config: Path | None = ConfigFile) -> None:
    """Check the database, the broker, the storage and the queues' workers."""
    settings = load_settings(config, data_dir=data_dir)
    checks: list[tuple[str, Callable[[Settings], str]]] = [
        ("database", check_database),
        ("broker", check_broker),
        ("storage", check_storage),
        ("queues", check_queues),
    ]
    failed = 0
    for name, check in checks:
        try:
            detail, ok = check(settings), True
        except Exception as exc:  # every failure is a line of the report, not a traceback
            detail, ok = _one_line(exc), False
        failed += not ok
        mark = "[green]ok  [/green]" if ok else "[red]FAIL[/red]"
        out.print(f"{mark} {name:<9}{detail}", markup=True, highlight=False)
    if failed:
        raise typer.Exit(EXIT_FAILED)


def check_database(settings: Settings) -> str:
    import sqlalchemy as sa
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from opendps.store.db import Database, alembic_config

    db = Database(settings.database_url or "", migrate=False)
    try:
        with db.read() as conn:
            conn.execute(sa.text("SELECT 1"))
            current = MigrationContext.configure(conn).get_current_revision()
        head = ScriptDirectory.from_config(alembic_config(db.url)).get_current_head()
        where = sa.make_url(db.url).render_as_string(hide_password=True)
        if current != head:
            raise RuntimeError(
                f"{where}: schema at {current or 'nothing'}, this opendps needs {head} "
                "(start `dps server` once to migrate)"
            )
        return f"{where} (schema {current})"
    finally:
        db.dispose()


def check_broker(settings: Settings) -> str:
    if settings.executor != "celery":
        return "not used (executor: local)"
    from opendps.executors.celery import broker_queue_consumers

    broker_queue_consumers(settings)  # raises when unreachable
    return _redact(settings.broker_url)


def check_storage(settings: Settings) -> str:
    from opendps.storage import open_storage

    storage = open_storage(settings)
    probe = Path(settings.data_dir) / f".doctor-{uuid.uuid4().hex[:8]}"
    probe.mkdir(parents=True)
    try:
        (probe / "probe.txt").write_text("opendps doctor")
        prefix = f"_doctor/{probe.name}"
        storage.put_dir(probe, prefix)
        with storage.open(f"{prefix}/probe.txt") as handle:
            if handle.read() != b"opendps doctor":
                raise RuntimeError(f"{storage.url}: read back something else than was written")
        storage.delete_prefix(prefix)
    finally:
        import shutil

        shutil.rmtree(probe, ignore_errors=True)
    return f"{storage.url} (write, read, delete)"


def check_queues(settings: Settings) -> str:
    """Celery: every queue has a consumer on the broker and a live worker in the store."""
    names = [q.name for q in settings.queues]
    if settings.executor != "celery":
        runner = "the server's local executor" if settings.run_jobs else "`dps worker`s"
        return f"{', '.join(names)} (run by {runner})"
    from datetime import UTC, datetime, timedelta

    from opendps.executors.celery import broker_queue_consumers
    from opendps.store import Database, WorkerStore

    consumers = broker_queue_consumers(settings)
    db = Database(settings.database_url or "", migrate=False)
    try:
        alive_since = datetime.now(UTC) - timedelta(seconds=settings.heartbeat_timeout)
        workers = [w for w in WorkerStore(db).list_workers() if w.last_seen >= alive_since]
    finally:
        db.dispose()
    parts, unserved = [], []
    for name in names:
        live = sum(1 for w in workers if name in w.queues)
        parts.append(f"{name}: {live} worker(s), {consumers.get(name) or 0} consumer(s)")
        if not live or not consumers.get(name):
            unserved.append(name)
    if unserved:
        raise RuntimeError(f"no worker serves {', '.join(unserved)} ({'; '.join(parts)})")
    return "; ".join(parts)


def _redact(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
