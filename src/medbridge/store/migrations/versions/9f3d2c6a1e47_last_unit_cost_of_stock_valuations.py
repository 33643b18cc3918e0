"""the unit cost an item@location last moved at, for dispenses of stock it does not hold

Revision ID: 9f3d2c6a1e47
Revises: 7a3f0c2d4e15
Create Date: 2026-12-06 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medbridge.store.types

revision = "9f3d2c6a1e47"
down_revision = "7a3f0c2d4e15"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stock_valuations") as batch:
        batch.add_column(
            sa.Column(
                "last_unit_cost",
                medbridge.store.types.ExactDecimal(precision=18, scale=6),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("stock_valuations") as batch:
        batch.drop_column("last_unit_cost")
