"""contract price tiers, and the price changes partners' 832 catalogs propose

Revision ID: f4cd1a3fe54e
Revises: a7d3e9f2c465
Create Date: 2026-12-06 13:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medbridge.store.types

revision = "f4cd1a3fe54e"
down_revision = "3cd5d43aa4f8"
branch_labels = None
depends_on = None

DECIMAL = medbridge.store.types.ExactDecimal(precision=18, scale=6)


def upgrade() -> None:
    op.create_table(
        "contract_price_tiers",
        sa.Column("contract", sa.String(length=64), nullable=False),
        sa.Column("minimum_quantity", DECIMAL, nullable=False),
        sa.Column("price", DECIMAL, nullable=False),
        sa.ForeignKeyConstraint(
            ["contract"],
            ["contracts.code"],
            name=op.f("fk_contract_price_tiers_contract_contracts"),
        ),
        sa.PrimaryKeyConstraint(
            "contract", "minimum_quantity", name=op.f("pk_contract_price_tiers")
        ),
    )
    op.create_table(
        "contract_price_proposals",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("catalog_key", sa.String(length=200), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("partner", sa.String(length=64), nullable=False),
        sa.Column("catalog_number", sa.String(length=35), nullable=False),
        sa.Column("partner_item", sa.String(length=200), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=True),
        sa.Column("contract", sa.String(length=64), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("current_price", DECIMAL, nullable=True),
        sa.Column("proposed_price", DECIMAL, nullable=True),
        sa.Column("change_percent", DECIMAL, nullable=True),
        sa.Column("effective_from", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.Column("decided_at", medbridge.store.types.UTCDateTime(), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contract_price_proposals")),
        sa.UniqueConstraint(
            "catalog_key",
            "line",
            "unit",
            name=op.f("uq_contract_price_proposals_catalog_key"),
        ),
    )
    with op.batch_alter_table("contract_price_proposals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contract_price_proposals_contract"), ["contract"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_contract_price_proposals_partner"), ["partner"], unique=False
        )
        batch_op.create_index("ix_contract_price_proposals_status", ["status"], unique=False)


def downgrade() -> None:
    op.drop_table("contract_price_proposals")
    op.drop_table("contract_price_tiers")
