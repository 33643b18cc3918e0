"""gl summaries: summarised GL posting, one summary per closed slice and its drill-down

Revision ID: f6b2d8e4a913
Revises: e3a9c4f1b870
Create Date: 2026-12-06 08:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medbridge.store.types

revision = "f6b2d8e4a913"
down_revision = "e3a9c4f1b870"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gl_summaries",
        sa.Column("summary_id", sa.String(length=120), nullable=False),
        sa.Column("facility", sa.String(length=64), nullable=False),
        sa.Column("slice_start", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("erp_id", sa.String(length=80), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.Column("posted_at", medbridge.store.types.UTCDateTime(), nullable=True),
        sa.Column("created_at", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("summary_id", name=op.f("pk_gl_summaries")),
        sa.UniqueConstraint(
            "facility",
            "slice_start",
            "period",
            name=op.f("uq_gl_summaries_facility"),
        ),
    )
    op.create_index(
        "ix_gl_summaries_status_due", "gl_summaries", ["status", "next_attempt_at"], unique=False
    )
    op.create_table(
        "gl_summary_entries",
        sa.Column("entry_id", sa.String(length=80), nullable=False),
        sa.Column("summary_id", sa.String(length=120), nullable=False),
        sa.Column("event_slice", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.entry_id"],
            name=op.f("fk_gl_summary_entries_entry_id_journal_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["summary_id"],
            ["gl_summaries.summary_id"],
            name=op.f("fk_gl_summary_entries_summary_id_gl_summaries"),
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_gl_summary_entries")),
    )
    op.create_index(
        op.f("ix_gl_summary_entries_summary_id"),
        "gl_summary_entries",
        ["summary_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_gl_summary_entries_summary_id"), table_name="gl_summary_entries")
    op.drop_table("gl_summary_entries")
    op.drop_index("ix_gl_summaries_status_due", table_name="gl_summaries")
    op.drop_table("gl_summaries")
