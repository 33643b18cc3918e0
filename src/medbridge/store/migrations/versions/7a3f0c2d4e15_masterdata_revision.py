"""master data revision: the in-memory master data cache reloads when it changes

Revision ID: 7a3f0c2d4e15
Revises: 5e0c1a7b9d21
Create Date: 2026-12-06 01:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "7a3f0c2d4e15"
down_revision = "5e0c1a7b9d21"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "masterdata_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(table, [{"id": 1, "revision": 0}])


def downgrade() -> None:
    op.drop_table("masterdata_revision")
