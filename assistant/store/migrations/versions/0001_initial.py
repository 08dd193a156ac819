"""Initial schema: pairs, accounts, snapshots, changes, messages, delegation, outbox.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-24 10:39:20.503360
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pairs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("manager_name", sa.String(length=200), nullable=False),
        sa.Column("manager_email", sa.String(length=320), nullable=False),
        sa.Column("assistant_name", sa.String(length=200), nullable=False),
        sa.Column("assistant_email", sa.String(length=320), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("assistant_timezone", sa.String(length=64), nullable=False),
        sa.Column("working_hours", sa.JSON(), nullable=False),
        sa.Column("sla_minutes", sa.Integer(), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("share_private_details", sa.Boolean(), nullable=False),
        sa.Column("notify_channels", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pairs")),
        sa.UniqueConstraint("name", name=op.f("uq_pairs_name")),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("writable", sa.Boolean(), nullable=False),
        sa.Column("sync_token", sa.Text(), nullable=True),
        sa.Column("sync_state", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("last_sync_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["pair_id"], ["pairs.id"], name=op.f("fk_accounts_pair_id_pairs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("pair_id", "name", name=op.f("uq_accounts_pair_id")),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_accounts_pair_id"), ["pair_id"], unique=False)

    op.create_table(
        "delegated_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("measure", sa.Text(), nullable=False),
        sa.Column("resources", sa.Text(), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("delegator", sa.String(length=320), nullable=False),
        sa.Column("delegate", sa.String(length=320), nullable=False),
        sa.Column("term_start", sa.DateTime(), nullable=False),
        sa.Column("deadline", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["pair_id"],
            ["pairs.id"],
            name=op.f("fk_delegated_tasks_pair_id_pairs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delegated_tasks")),
    )
    with op.batch_alter_table("delegated_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delegated_tasks_pair_id"), ["pair_id"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["pair_id"], ["pairs.id"], name=op.f("fk_outbox_pair_id_pairs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_outbox_idempotency_key")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_pair_id"), ["pair_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_state"), ["state"], unique=False)

    op.create_table(
        "calendar_resources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("href", sa.String(length=1024), nullable=False),
        sa.Column("etag", sa.String(length=256), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("synced_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_calendar_resources_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_resources")),
        sa.UniqueConstraint("account_id", "href", name=op.f("uq_calendar_resources_account_id")),
    )
    op.create_table(
        "change_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("detected_at", sa.DateTime(), nullable=False),
        sa.Column("full_resync", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_change_batches_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pair_id"],
            ["pairs.id"],
            name=op.f("fk_change_batches_pair_id_pairs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_batches")),
    )
    with op.batch_alter_table("change_batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_change_batches_pair_id"), ["pair_id"], unique=False)

    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("line_at", sa.DateTime(), nullable=False),
        sa.Column("start_at", sa.DateTime(), nullable=True),
        sa.Column("end_at", sa.DateTime(), nullable=True),
        sa.Column("event_uid", sa.String(length=256), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("event_href", sa.String(length=1024), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("written_at", sa.DateTime(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_checkpoints_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["delegated_tasks.id"],
            name=op.f("fk_checkpoints_task_id_delegated_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
        sa.UniqueConstraint("event_uid", name=op.f("uq_checkpoints_event_uid")),
        sa.UniqueConstraint("task_id", "kind", name=op.f("uq_checkpoints_task_id")),
    )
    op.create_table(
        "event_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("href", sa.String(length=1024), nullable=False),
        sa.Column("uid", sa.String(length=512), nullable=False),
        sa.Column("recurrence_id", sa.String(length=32), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("start_utc", sa.DateTime(), nullable=False),
        sa.Column("end_utc", sa.DateTime(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("all_day", sa.Boolean(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("organizer", sa.String(length=320), nullable=False),
        sa.Column("attendees", sa.JSON(), nullable=False),
        sa.Column("busy", sa.Boolean(), nullable=False),
        sa.Column("private", sa.Boolean(), nullable=False),
        sa.Column("online_meeting_url", sa.Text(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("own_marker", sa.String(length=128), nullable=False),
        sa.Column("modified_by", sa.String(length=320), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_event_snapshots_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_snapshots")),
        sa.UniqueConstraint(
            "account_id", "uid", "recurrence_id", name=op.f("uq_event_snapshots_account_id")
        ),
    )
    with op.batch_alter_table("event_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            "ix_event_snapshots_account_href", ["account_id", "href"], unique=False
        )
        batch_op.create_index(
            "ix_event_snapshots_account_start", ["account_id", "start_utc"], unique=False
        )

    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("thread_key", sa.String(length=998), nullable=False),
        sa.Column("in_reply_to", sa.String(length=998), nullable=False),
        sa.Column("references", sa.JSON(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("from_addr", sa.String(length=320), nullable=False),
        sa.Column("to_addrs", sa.JSON(), nullable=False),
        sa.Column("cc_addrs", sa.JSON(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.Column("direction", sa.String(length=24), nullable=False),
        sa.Column("folder", sa.String(length=256), nullable=False),
        sa.Column("auto_reply", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_messages_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["pair_id"], ["pairs.id"], name=op.f("fk_messages_pair_id_pairs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("pair_id", "message_id", name=op.f("uq_messages_pair_id")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_messages_pair_id"), ["pair_id"], unique=False)
        batch_op.create_index("ix_messages_pair_sent", ["pair_id", "sent_at"], unique=False)

    op.create_table(
        "schedule_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("uid", sa.String(length=512), nullable=False),
        sa.Column("recurrence_id", sa.String(length=32), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("starts_at", sa.DateTime(), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("detected_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["change_batches.id"],
            name=op.f("fk_schedule_changes_batch_id_change_batches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pair_id"],
            ["pairs.id"],
            name=op.f("fk_schedule_changes_pair_id_pairs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_changes")),
    )
    with op.batch_alter_table("schedule_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_schedule_changes_batch_id"), ["batch_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_schedule_changes_pair_id"), ["pair_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("schedule_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_schedule_changes_pair_id"))
        batch_op.drop_index(batch_op.f("ix_schedule_changes_batch_id"))

    op.drop_table("schedule_changes")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_pair_sent")
        batch_op.drop_index(batch_op.f("ix_messages_pair_id"))

    op.drop_table("messages")
    with op.batch_alter_table("event_snapshots", schema=None) as batch_op:
        batch_op.drop_index("ix_event_snapshots_account_start")
        batch_op.drop_index("ix_event_snapshots_account_href")

    op.drop_table("event_snapshots")
    op.drop_table("checkpoints")
    with op.batch_alter_table("change_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_change_batches_pair_id"))

    op.drop_table("change_batches")
    op.drop_table("calendar_resources")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_state"))
        batch_op.drop_index(batch_op.f("ix_outbox_pair_id"))

    op.drop_table("outbox")
    with op.batch_alter_table("delegated_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delegated_tasks_pair_id"))

    op.drop_table("delegated_tasks")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_pair_id"))

    op.drop_table("accounts")
    op.drop_table("pairs")
