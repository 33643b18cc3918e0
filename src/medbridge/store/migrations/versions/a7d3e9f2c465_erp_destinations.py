"""erp destinations: the ERP outbox keyed by (document, destination), cutovers, and the GL
summaries per destination

Every row already there belongs to the one ERP of before, named ``tryton`` (the destination
the flat ``MEDBRIDGE_ERP_*`` settings define).

Revision ID: a7d3e9f2c465
Revises: f6b2d8e4a913
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medbridge.store.types

revision = "a7d3e9f2c465"
down_revision = "f6b2d8e4a913"
branch_labels = None
depends_on = None

DEFAULT = "tryton"

OUTBOX_COLUMNS = (
    ("destination", sa.String(length=64), DEFAULT),
    ("kind", sa.String(length=32), "journal_entry"),
    ("role", sa.String(length=8), "record"),
    ("domain", sa.String(length=24), "gl"),
)


def upgrade() -> None:
    with op.batch_alter_table("erp_postings") as batch:
        batch.drop_constraint("fk_erp_postings_entry_id_journal_entries", type_="foreignkey")
        batch.drop_constraint("pk_erp_postings", type_="primary")
        batch.alter_column(
            "entry_id",
            new_column_name="document",
            existing_type=sa.String(length=80),
            type_=sa.String(length=120),
            existing_nullable=False,
        )
        for name, type_, default in OUTBOX_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=False, server_default=default))
        batch.add_column(sa.Column("facility", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("payload", sa.Text(), nullable=True))
        batch.add_column(sa.Column("after", sa.String(length=120), nullable=True))
        batch.add_column(sa.Column("result", sa.Text(), nullable=True))
        batch.create_primary_key("pk_erp_postings", ["document", "destination"])
        batch.create_index(
            "ix_erp_postings_destination_due",
            ["destination", "status", "next_attempt_at"],
            unique=False,
        )
    with op.batch_alter_table("erp_postings") as batch:
        for name, type_, _ in OUTBOX_COLUMNS:
            batch.alter_column(name, existing_type=type_, server_default=None)

    with op.batch_alter_table("gl_summary_entries") as batch:
        batch.drop_constraint("fk_gl_summary_entries_summary_id_gl_summaries", type_="foreignkey")
    with op.batch_alter_table("gl_summaries") as batch:
        batch.add_column(
            sa.Column("destination", sa.String(length=64), nullable=False, server_default=DEFAULT)
        )
        batch.drop_constraint("uq_gl_summaries_facility", type_="unique")
        batch.drop_constraint("pk_gl_summaries", type_="primary")
        batch.create_primary_key("pk_gl_summaries", ["summary_id", "destination"])
        batch.create_unique_constraint(
            "uq_gl_summaries_destination", ["destination", "facility", "slice_start", "period"]
        )
    with op.batch_alter_table("gl_summaries") as batch:
        batch.alter_column("destination", existing_type=sa.String(64), server_default=None)
    with op.batch_alter_table("gl_summary_entries") as batch:
        batch.add_column(
            sa.Column("destination", sa.String(length=64), nullable=False, server_default=DEFAULT)
        )
        batch.drop_constraint("pk_gl_summary_entries", type_="primary")
        batch.create_primary_key("pk_gl_summary_entries", ["entry_id", "destination"])
    with op.batch_alter_table("gl_summary_entries") as batch:
        batch.alter_column("destination", existing_type=sa.String(64), server_default=None)

    op.create_table(
        "erp_routes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("domain", sa.String(length=24), nullable=False),
        sa.Column("facility", sa.String(length=64), nullable=False),
        sa.Column("record", sa.String(length=64), nullable=False),
        sa.Column("shadows", sa.String(length=400), nullable=False),
        sa.Column("effective_at", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.Column("created_at", medbridge.store.types.UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erp_routes")),
    )
    op.create_index(
        "ix_erp_routes_domain_effective", "erp_routes", ["domain", "effective_at"], unique=False
    )


def downgrade() -> None:
    """Back to one ERP: only the rows of the destination ``tryton`` survive."""
    op.drop_index("ix_erp_routes_domain_effective", table_name="erp_routes")
    op.drop_table("erp_routes")
    for name in ("gl_summary_entries", "gl_summaries", "erp_postings"):
        table = sa.table(name, sa.column("destination"))
        op.execute(table.delete().where(table.c.destination != DEFAULT))
    with op.batch_alter_table("gl_summary_entries") as batch:
        batch.drop_constraint("pk_gl_summary_entries", type_="primary")
        batch.drop_column("destination")
        batch.create_primary_key("pk_gl_summary_entries", ["entry_id"])
    with op.batch_alter_table("gl_summaries") as batch:
        batch.drop_constraint("uq_gl_summaries_destination", type_="unique")
        batch.drop_constraint("pk_gl_summaries", type_="primary")
        batch.drop_column("destination")
        batch.create_primary_key("pk_gl_summaries", ["summary_id"])
        batch.create_unique_constraint(
            "uq_gl_summaries_facility", ["facility", "slice_start", "period"]
        )
    with op.batch_alter_table("gl_summary_entries") as batch:
        batch.create_foreign_key(
            "fk_gl_summary_entries_summary_id_gl_summaries",
            "gl_summaries",
            ["summary_id"],
            ["summary_id"],
        )
    outbox = sa.table("erp_postings", sa.column("kind"))
    op.execute(outbox.delete().where(outbox.c.kind != "journal_entry"))
    with op.batch_alter_table("erp_postings") as batch:
        batch.drop_index("ix_erp_postings_destination_due")
        batch.drop_constraint("pk_erp_postings", type_="primary")
        for column in ("result", "after", "payload", "facility", "domain", "role", "kind"):
            batch.drop_column(column)
        batch.drop_column("destination")
        batch.alter_column(
            "document",
            new_column_name="entry_id",
            existing_type=sa.String(length=120),
            type_=sa.String(length=80),
            existing_nullable=False,
        )
        batch.create_primary_key("pk_erp_postings", ["entry_id"])
        batch.create_foreign_key(
            "fk_erp_postings_entry_id_journal_entries",
            "journal_entries",
            ["entry_id"],
            ["entry_id"],
        )
