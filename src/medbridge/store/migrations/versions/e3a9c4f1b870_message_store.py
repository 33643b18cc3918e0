"""message store: one row per message that crossed the edge, its raw body apart; dead
letters by correlation

Revision ID: e3a9c4f1b870
Revises: 8c2e4f6a1b37
Create Date: 2026-12-06 06:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medbridge.store.types

revision = "e3a9c4f1b870"
down_revision = "8c2e4f6a1b37"
branch_labels = None
depends_on = None

_INDEXES = (
    ("ix_messages_received", ["received_at", "id"]),
    ("ix_messages_control_id", ["control_id", "received_at", "id"]),
    ("ix_messages_business_key", ["business_key", "received_at", "id"]),
    ("ix_messages_sender_status", ["sender", "status", "received_at", "id"]),
    ("ix_messages_type", ["message_type", "received_at", "id"]),
    ("ix_messages_status", ["status", "received_at", "id"]),
    ("ix_messages_protocol", ["protocol", "received_at", "id"]),
    ("ix_messages_facility", ["facility", "received_at", "id"]),
    ("ix_messages_correlation", ["correlation_id"]),
)


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("received_at", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("protocol", sa.String(length=16), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=200), nullable=False),
        sa.Column("message_type", sa.String(length=64), nullable=False),
        sa.Column("control_id", sa.String(length=200), nullable=False),
        sa.Column("business_key", sa.String(length=200), nullable=False),
        sa.Column("facility", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("correlation_id", sa.String(length=36), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("ack", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        for name, columns in _INDEXES:
            batch_op.create_index(name, columns, unique=False)
    op.create_table(
        "message_bodies",
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("received_at", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_message_bodies")),
    )
    with op.batch_alter_table("message_bodies", schema=None) as batch_op:
        batch_op.create_index(
            "ix_message_bodies_connector_received", ["connector", "received_at"], unique=False
        )
    with op.batch_alter_table("bus_dead_letters", schema=None) as batch_op:
        batch_op.create_index("ix_bus_dead_letters_correlation", ["correlation_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("bus_dead_letters", schema=None) as batch_op:
        batch_op.drop_index("ix_bus_dead_letters_correlation")
    op.drop_table("message_bodies")
    op.drop_table("messages")
