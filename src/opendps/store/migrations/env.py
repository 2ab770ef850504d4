"""Alembic environment: runs on the connection the store hands it."""

from __future__ import annotations

from alembic import context

from opendps.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` run from the command line
    import sqlalchemy as sa

    engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url"))
    connection = engine.connect()

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
