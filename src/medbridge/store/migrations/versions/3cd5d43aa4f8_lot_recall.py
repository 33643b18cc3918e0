"""lot recall: the lots of each applied movement, lot quarantines and the movements they hold

Movements applied before this revision get no ``ledger_movement_lots`` rows: which lots they
took was never recorded, so a lot's trace starts with the movements applied after it.

Revision ID: 3cd5d43aa4f8
Revises: a7d3e9f2c465
Create Date: 2026-12-06 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medbridge.store.types

revision = "3cd5d43aa4f8"
down_revision = "8c04d02c6ed8"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_movement_lots",
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("lot", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("expiry", sa.Date(), nullable=True),
        sa.Column(
            "quantity", medbridge.store.types.ExactDecimal(precision=18, scale=6), nullable=False
        ),
        sa.Column("cost_center", sa.String(length=64), nullable=True),
        sa.Column("encounter_ref", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint(
            "item", "lot", "event_id", "seq", name=op.f("pk_ledger_movement_lots")
        ),
    )
    op.create_table(
        "lot_quarantines",
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("lot", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("quarantined_by", sa.String(length=200), nullable=False),
        sa.Column("quarantined_at", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.Column("released_by", sa.String(length=200), nullable=True),
        sa.Column("released_at", medbridge.store.types.UTCDateTime(), nullable=True),
        sa.Column("release_note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("item", "lot", name=op.f("pk_lot_quarantines")),
    )
    op.create_table(
        "lot_held_movements",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("lot", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("to_location", sa.String(length=64), nullable=True),
        sa.Column("correlation_id", sa.String(length=36), nullable=False),
        sa.Column("occurred_at", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.Column("movement", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("held_at", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.Column("settled_at", medbridge.store.types.UTCDateTime(), nullable=True),
        sa.Column("settled_by", sa.String(length=200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_lot_held_movements")),
    )
    op.create_index(
        "ix_lot_held_movements_lot",
        "lot_held_movements",
        ["item", "lot", "status"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_lot_held_movements_lot", table_name="lot_held_movements")
    op.drop_table("lot_held_movements")
    op.drop_table("lot_quarantines")
    op.drop_table("ledger_movement_lots")
