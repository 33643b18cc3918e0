"""trace context: the W3C traceparent/tracestate of each logged event and each ERP posting

Revision ID: 8c2e4f6a1b37
Revises: e4a7c2f9b310
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "8c2e4f6a1b37"
down_revision = "e4a7c2f9b310"
branch_labels = None
depends_on = None

TABLES = ("bus_events", "erp_postings")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("traceparent", sa.String(length=55), nullable=True))
            batch.add_column(sa.Column("tracestate", sa.String(length=512), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tracestate")
            batch.drop_column("traceparent")
