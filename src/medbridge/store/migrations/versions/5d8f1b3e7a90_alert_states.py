"""alert states: one row per rule, its incident count and whether its notice went out

Revision ID: 5d8f1b3e7a90
Revises: 3c5e7a9b1d24
Create Date: 2026-12-06 05:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medbridge.store.types

revision = "5d8f1b3e7a90"
down_revision = "3c5e7a9b1d24"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_states",
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("incident", sa.Integer(), nullable=False),
        sa.Column("reading", sa.String(length=40), nullable=False),
        sa.Column("since", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.Column("notified", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("rule", name=op.f("pk_alert_states")),
    )


def downgrade() -> None:
    op.drop_table("alert_states")
