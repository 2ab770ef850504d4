"""PostgreSQL for tests: one migrated template database per session, cloned per test.

The server is found at ``DPS_TEST_POSTGRES_URL`` if set, else on 127.0.0.1:5432, else on
the local socket, as user ``postgres`` (trust auth, as on the development machines).
Without a server the tests that need it skip, unless ``CI=true``: then they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

CANDIDATE_URLS = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "postgresql+psycopg://postgres@/postgres?host=/var/run/postgresql",
)


def _admin_engine(url: str):  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    # CREATE/DROP DATABASE cannot run inside a transaction.
    return sa.create_engine(
        url,
        isolation_level="AUTOCOMMIT",
        poolclass=sa.NullPool,
        connect_args={"connect_timeout": 3},
    )


def _reachable_url() -> tuple[str | None, str]:
    """The first admin URL that answers, and why none did."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        return None, f"psycopg is not installed ({exc})"
    env_url = os.environ.get("DPS_TEST_POSTGRES_URL")
    errors = []
    for url in (env_url,) if env_url else CANDIDATE_URLS:
        engine = _admin_engine(url)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return url, ""
        except Exception as exc:
            errors.append(f"{url}: {str(exc).splitlines()[0]}")
        finally:
            engine.dispose()
    return None, "; ".join(errors)


def _with_database(url: str, name: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).set(database=name).render_as_string(hide_password=False)


def _drop_database(admin, name: str) -> None:  # type: ignore[no-untyped-def]
    # FORCE: a supervisor process of a finished test may still hold a connection.
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """A URL of the server's ``postgres`` database, for CREATE/DROP DATABASE."""
    url, why = _reachable_url()
    if url is None:
        message = f"PostgreSQL is not reachable: {why}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_url: str) -> Iterator[str]:
    """A database migrated to head once per session; each test gets a copy of it."""
    from opendps.store.db import Database

    admin = _admin_engine(postgres_admin_url)
    # Unique per session, so parallel test runs on one server never share a template.
    name = f"opendps_template_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        db = Database(_with_database(postgres_admin_url, name))
        db.dispose()  # CREATE DATABASE ... TEMPLATE needs the template to have no sessions
        yield name
    finally:
        _drop_database(admin, name)
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_admin_url: str, postgres_template: str) -> Iterator[str]:
    """A fresh, migrated database for one test (dropped afterwards)."""
    admin = _admin_engine(postgres_admin_url)
    name = f"opendps_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    try:
        yield _with_database(postgres_admin_url, name)
    finally:
        _drop_database(admin, name)
        admin.dispose()


@pytest.fixture
def empty_postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh database with no tables (for migration tests)."""
    admin = _admin_engine(postgres_admin_url)
    name = f"opendps_empty_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(postgres_admin_url, name)
    finally:
        _drop_database(admin, name)
        admin.dispose()
