"""API clients hold several roles (permissions, not a ladder) and may be bound to facilities;
work items say which facility they are about

Revision ID: b4e7d2a9c311
Revises: 9f3d2c6a1e47
Create Date: 2026-12-06 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b4e7d2a9c311"
down_revision = "9f3d2c6a1e47"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_clients") as batch:
        batch.add_column(sa.Column("roles", sa.String(200), nullable=True))
        batch.add_column(sa.Column("facilities", sa.String(1000), nullable=True))
    # a client keeps what it could do: its one role becomes its list of roles
    op.execute("UPDATE api_clients SET roles = role")
    with op.batch_alter_table("api_clients") as batch:
        batch.alter_column("roles", existing_type=sa.String(200), nullable=False)
        batch.drop_column("role")
    with op.batch_alter_table("work_items") as batch:
        batch.add_column(sa.Column("facility", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("work_items") as batch:
        batch.drop_column("facility")
    with op.batch_alter_table("api_clients") as batch:
        batch.add_column(sa.Column("role", sa.String(32), nullable=True))
    # the highest of its roles on the old ladder; roles the ladder did not know read only
    op.execute(
        "UPDATE api_clients SET role = CASE"
        " WHEN roles LIKE '%admin%' THEN 'admin'"
        " WHEN roles LIKE '%integration%' THEN 'integration'"
        " ELSE 'reader' END"
    )
    with op.batch_alter_table("api_clients") as batch:
        batch.alter_column("role", existing_type=sa.String(32), nullable=False)
        batch.drop_column("facilities")
        batch.drop_column("roles")
