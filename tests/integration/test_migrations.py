"""The migrations build exactly the tables of store/tables.py, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from medbridge.store.migrate import current_revision, head_revision, upgrade
from medbridge.store.tables import metadata

pytestmark = pytest.mark.db


def test_database_is_at_head_and_matches_the_tables(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == [], "store/tables.py and the migrations differ: add a migration"


def test_upgrade_is_idempotent(engine: Engine) -> None:
    upgrade(engine)
    assert current_revision(engine) == head_revision()
