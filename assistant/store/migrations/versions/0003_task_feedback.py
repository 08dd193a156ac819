"""task feedback: answers to checkpoint prompts

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "task_feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("respondent", sa.String(length=320), nullable=False),
        sa.Column("percent_done", sa.Integer(), nullable=True),
        sa.Column("on_time", sa.Boolean(), nullable=True),
        sa.Column("on_track", sa.Boolean(), nullable=True),
        sa.Column("needs_help", sa.Boolean(), nullable=False),
        sa.Column("quality", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=True),
        sa.Column("answered_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["delegated_tasks.id"],
            name=op.f("fk_task_feedback_task_id_delegated_tasks"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_feedback")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_task_feedback_dedupe_key")),
    )
    with op.batch_alter_table("task_feedback", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_feedback_task_id"), ["task_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_feedback_task_id"))
    op.drop_table("task_feedback")
