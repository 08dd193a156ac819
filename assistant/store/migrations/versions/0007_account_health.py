"""account health: failing since, tries, next try, parked, alerted

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failing_since", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("failures", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(sa.Column("next_try_at", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("parked_reason", sa.String(32), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("alerted_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("alerted_at")
        batch_op.drop_column("parked_reason")
        batch_op.drop_column("next_try_at")
        batch_op.drop_column("failures")
        batch_op.drop_column("failing_since")
