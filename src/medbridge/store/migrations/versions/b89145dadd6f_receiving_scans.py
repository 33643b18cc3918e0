"""receiving scans: one row per GS1 scan taken at the dock, keyed by its idempotency key

Revision ID: b89145dadd6f
Revises: a7d3e9f2c465
Create Date: 2026-12-06 13:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medbridge.store.types

revision = "b89145dadd6f"
down_revision = "f4cd1a3fe54e"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "receiving_scans",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("order_reference", sa.String(length=64), nullable=False),
        sa.Column("shipment_id", sa.String(length=64), nullable=True),
        sa.Column("session", sa.String(length=64), nullable=False),
        sa.Column("dock", sa.String(length=64), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("gtin", sa.String(length=14), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=True),
        sa.Column("unit", sa.String(length=16), nullable=True),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column(
            "quantity", medbridge.store.types.ExactDecimal(precision=18, scale=6), nullable=False
        ),
        sa.Column(
            "base_quantity",
            medbridge.store.types.ExactDecimal(precision=18, scale=6),
            nullable=True,
        ),
        sa.Column("lot", sa.String(length=20), nullable=True),
        sa.Column("expiry", sa.Date(), nullable=True),
        sa.Column("serial", sa.String(length=20), nullable=True),
        sa.Column("receipt", sa.String(length=120), nullable=True),
        sa.Column("note", sa.String(length=300), nullable=True),
        sa.Column("scanned_by", sa.String(length=100), nullable=False),
        sa.Column("scanned_at", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_receiving_scans")),
    )
    op.create_index(
        op.f("ix_receiving_scans_order_reference"),
        "receiving_scans",
        ["order_reference"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_receiving_scans_order_reference"), table_name="receiving_scans")
    op.drop_table("receiving_scans")
