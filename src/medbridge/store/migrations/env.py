"""Alembic environment: runs on the connection handed over by ``medbridge.store.migrate``."""

from __future__ import annotations

from alembic import context

from medbridge.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by table copy
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
