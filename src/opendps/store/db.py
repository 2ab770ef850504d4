"""Engine set-up and schema migrations for SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_migrate_lock = threading.Lock()


def utcnow() -> datetime:
    return datetime.now(UTC)


class Database:
    """An engine plus transaction helpers; shared by the store modules."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(
                url,
                connect_args={"timeout": 30, "check_same_thread": False},
                pool_size=8,
                max_overflow=16,
            )
            _configure_sqlite(self.engine)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=16)
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent, safe to run at every start)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with _migrate_lock, self.engine.begin() as conn:
            if self.is_sqlite:
                # Serialise concurrent first starts (server + workers) on one file.
                conn.exec_driver_sql("SELECT 1")
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A write transaction. On SQLite it takes the write lock at BEGIN, so a
        read-then-update inside it (claim, slot counting) cannot race another process."""
        with self.engine.connect() as conn:
            if self.is_sqlite:
                conn = conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: sa.Engine) -> None:
    """WAL for concurrent readers, and BEGIN under our control (pysqlite's is broken)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))
