"""periods: the accounting periods a close has locked

Revision ID: 8c04d02c6ed8
Revises: a7d3e9f2c465
Create Date: 2026-12-06 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medbridge.store.types

revision = "8c04d02c6ed8"
down_revision = "a7d3e9f2c465"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "periods",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("cutoff", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.Column("closed_at", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("differences", sa.Integer(), nullable=False),
        sa.Column("forced_reason", sa.Text(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_periods")),
    )


def downgrade() -> None:
    op.drop_table("periods")
