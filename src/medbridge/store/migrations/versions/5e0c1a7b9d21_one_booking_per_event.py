"""one booking per business event: who books an entry in the ERP, AP lines' party

Revision ID: 5e0c1a7b9d21
Revises: 1d4040cf9890
Create Date: 2026-12-06 01:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "5e0c1a7b9d21"
down_revision = "1d4040cf9890"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("journal_entries") as batch:
        batch.add_column(
            sa.Column("booked_by", sa.String(16), nullable=False, server_default="medbridge")
        )
        batch.add_column(sa.Column("erp_document", sa.String(200), nullable=True))
    with op.batch_alter_table("journal_lines") as batch:
        batch.add_column(sa.Column("party", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("journal_lines") as batch:
        batch.drop_column("party")
    with op.batch_alter_table("journal_entries") as batch:
        batch.drop_column("erp_document")
        batch.drop_column("booked_by")
