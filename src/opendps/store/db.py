"""Engine set-up and schema migrations for SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import hashlib
import json
import operator
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Our transactions are short. One left open by a client that vanished mid-transaction (a
# worker cut off by a network partition) would hold its row locks, and block the recovery
# of its jobs, until the server noticed the dead connection, which takes hours with default
# TCP keepalives: PostgreSQL ends such a session after a minute instead.
IDLE_TRANSACTION_LIMIT = "idle_in_transaction_session_timeout=60000"
_migrate_lock = threading.Lock()


def utcnow() -> datetime:
    return datetime.now(UTC)


class Database:
    """An engine plus transaction helpers; shared by the store modules."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = self.url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(
                self.url,
                connect_args={"timeout": 30, "check_same_thread": False},
                pool_size=8,
                max_overflow=16,
            )
            _configure_sqlite(self.engine)
        else:
            try:
                self.engine = sa.create_engine(
                    self.url,
                    pool_pre_ping=True,
                    pool_size=8,
                    max_overflow=16,
                    connect_args={"options": f"-c {IDLE_TRANSACTION_LIMIT}"},
                )
            except ImportError as exc:  # the driver is an extra (opendps[postgres])
                raise ImportError(
                    f"database_url {sa.make_url(self.url)!r} needs a driver that is not "
                    f"installed ({exc}); for PostgreSQL: pip install 'opendps[postgres]'"
                ) from exc
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent, safe to run at every start).

        Processes starting at once (server, workers) take turns: on SQLite the write lock
        taken at BEGIN IMMEDIATE, on PostgreSQL an advisory lock, both held until commit.
        """
        from alembic import command

        with _migrate_lock, self.write() as conn:
            self.lock(conn, "schema", "migrate")
            command.upgrade(alembic_config(self.url, conn), "head")

    def lock(self, conn: sa.Connection, namespace: str, *names: str) -> None:
        """Serialise a check-then-write on ``names`` with other processes, until commit.

        SQLite needs nothing: every write transaction already holds the database's write
        lock from BEGIN IMMEDIATE. PostgreSQL takes transaction-level advisory locks, in
        sorted order so that two transactions locking the same names cannot deadlock.
        """
        if self.is_sqlite:
            return
        for key in sorted({_lock_key(namespace, name) for name in names}):
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))

    def insert_many(self, conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """INSERT many rows of the same keys with the driver's ``executemany``, values
        converted here (JSON text, naive UTC timestamps) instead of by SQLAlchemy's per-row
        compile and bind processing, which costs more than the insert itself at 100,000
        rows."""
        if not rows:
            return
        names = list(rows[0])
        converters = [
            (i, f)
            for i, name in enumerate(names)
            if (f := _bind_converter(table.c[name], conn.dialect)) is not None
        ]
        quote = conn.dialect.identifier_preparer.quote
        marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        sql = (
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
            f"VALUES ({', '.join([marker] * len(names))})"
        )
        values_of = operator.itemgetter(*names)
        params = []
        for row in rows:
            values = list(values_of(row))
            for i, convert in converters:
                values[i] = convert(values[i])
            params.append(tuple(values))
        conn.exec_driver_sql(sql, params)

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sa.Connection]:
        """A read transaction whose statements all see one snapshot (a page and its count).
        SQLite's read transaction already is one; PostgreSQL needs REPEATABLE READ."""
        with self.engine.connect() as conn:
            if not self.is_sqlite:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
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


def normalize_url(url: str) -> str:
    """``postgres://`` and driverless ``postgresql://`` mean psycopg 3 (opendps[postgres])."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def alembic_config(url: str, connection: sa.Connection | None = None):  # type: ignore[no-untyped-def]
    """An Alembic config for our migrations; with ``connection``, it runs on that one."""
    import sys

    from alembic.config import Config

    # Config's default stdout is the sys.stdout of when alembic was first imported, which
    # may be closed since (a pytest capture, a daemonised process): take today's.
    config = Config(stdout=sys.stdout)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _bind_converter(column: sa.Column[Any], dialect: sa.Dialect) -> Callable[[Any], Any] | None:
    """What SQLAlchemy's bind processing does for our column types, for insert_many:
    JSON as text, UTCDateTime as naive UTC in the dialect's own format (on SQLite the exact
    string SQLAlchemy writes, so comparisons with its binds stay right)."""
    if isinstance(column.type, sa.JSON):
        return lambda v: None if v is None else json.dumps(v)
    if isinstance(column.type, sa.types.TypeDecorator):  # UTCDateTime
        to_naive = column.type.process_bind_param
        to_driver = column.type.impl_instance.dialect_impl(dialect).bind_processor(dialect)
        last: list[Any] = [object(), None]  # the rows of one insert share their timestamps

        def convert(value: Any) -> Any:
            if value is not last[0]:
                naive = to_naive(value, dialect)
                last[:] = [value, to_driver(naive) if to_driver and naive is not None else naive]
            return last[1]

        return convert
    return None


def _lock_key(namespace: str, name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_xact_lock."""
    digest = hashlib.blake2b(f"opendps:{namespace}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


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
