"""erp circuits: the ERP circuit breaker's last recorded state, per ERP, for every process

Revision ID: e4a7c2f9b310
Revises: 5d8f1b3e7a90
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medbridge.store.types

revision = "e4a7c2f9b310"
down_revision = "5d8f1b3e7a90"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erp_circuits",
        sa.Column("erp", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("changed_at", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.Column("unhealthy_since", medbridge.store.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("erp", name=op.f("pk_erp_circuits")),
    )


def downgrade() -> None:
    op.drop_table("erp_circuits")
