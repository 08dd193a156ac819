"""The database tables (SQLAlchemy 2 typed declarative models).

Every datetime column holds an aware UTC instant (``UtcDateTime``); the zone an
event was written in is kept next to it as an IANA name. All-day events keep dates.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UtcDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as naive UTC; returns aware UTC. Refuses naive input."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


DEFAULT_WORKING_HOURS: dict[str, Any] = {
    "mon": [["09:00", "18:00"]],
    "tue": [["09:00", "18:00"]],
    "wed": [["09:00", "18:00"]],
    "thu": [["09:00", "18:00"]],
    "fri": [["09:00", "18:00"]],
}


class Pair(Base):
    """A manager and their assistant."""

    __tablename__ = "pairs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    manager_name: Mapped[str] = mapped_column(String(200), default="")
    manager_email: Mapped[str] = mapped_column(String(320))
    assistant_name: Mapped[str] = mapped_column(String(200), default="")
    assistant_email: Mapped[str] = mapped_column(String(320))
    # The other addresses of each (lower-cased): one person whatever the address, for
    # reply latency, direction and nudges.
    manager_aliases: Mapped[list[Any]] = mapped_column(default=list)
    assistant_aliases: Mapped[list[Any]] = mapped_column(default=list)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    assistant_timezone: Mapped[str] = mapped_column(String(64), default="")
    working_hours: Mapped[dict[str, Any]] = mapped_column(
        default=lambda: dict(DEFAULT_WORKING_HOURS)
    )
    sla_minutes: Mapped[int] = mapped_column(Integer, default=30)
    locale: Mapped[str] = mapped_column(String(16), default="en")
    # Private events show to the assistant as busy time only, unless the manager allows.
    share_private_details: Mapped[bool] = mapped_column(Boolean, default=False)
    notify_channels: Mapped[list[Any]] = mapped_column(default=lambda: ["smtp"])
    # {"start": "20:00", "end": "08:00"} in the assistant's zone; {} = none. High-priority
    # changes break through when "high_breaks_through" is true.
    quiet_hours: Mapped[dict[str, Any]] = mapped_column(default=dict)
    digest_time: Mapped[str] = mapped_column(String(5), default="")  # "08:00" local; "" = off
    last_digest_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime]

    accounts: Mapped[list[Account]] = relationship(
        back_populates="pair", cascade="all, delete-orphan"
    )


class Account(Base):
    """A connection to one of the manager's calendars or mailboxes."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    provider: Mapped[str] = mapped_column(String(32))  # ics, caldav, maildir, mbox, ...
    kind: Mapped[str] = mapped_column(String(16))  # calendar | mail
    # Connection settings. Secrets are references ({"env": ...}), never values.
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    writable: Mapped[bool] = mapped_column(Boolean, default=False)
    sync_token: Mapped[str | None] = mapped_column(Text, default=None)
    sync_state: Mapped[dict[str, Any]] = mapped_column(default=dict)  # window, counts...
    state: Mapped[str] = mapped_column(String(16), default="new")  # new | ok | error
    last_sync_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
    # Health (``assistant.services.account_health``): since when the syncs fail, how many
    # tries failed in a row, when polling may try again (back-off), why it stopped trying
    # ("" = it does not: parked until the credentials change), when the people were told.
    failing_since: Mapped[datetime | None] = mapped_column(default=None)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_try_at: Mapped[datetime | None] = mapped_column(default=None)
    parked_reason: Mapped[str] = mapped_column(String(32), default="")
    alerted_at: Mapped[datetime | None] = mapped_column(default=None)
    # Turned off by a person (``assistant account disable``): not polled, not synced, no
    # push subscription, not counted as unhealthy; its snapshots are kept.
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]

    pair: Mapped[Pair] = relationship(back_populates="accounts")

    __table_args__ = (UniqueConstraint("pair_id", "name"),)


class CalendarResourceRow(Base):
    """One calendar object resource as last synced (its etag and content hash)."""

    __tablename__ = "calendar_resources"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    href: Mapped[str] = mapped_column(String(1024))
    etag: Mapped[str] = mapped_column(String(256), default="")
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    synced_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("account_id", "href"),)


class EventSnapshot(Base):
    """One occurrence of an event as last seen (see ``assistant.domain.model.EventData``)."""

    __tablename__ = "event_snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    href: Mapped[str] = mapped_column(String(1024), default="")
    uid: Mapped[str] = mapped_column(String(512))
    recurrence_id: Mapped[str] = mapped_column(String(32), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    start_utc: Mapped[datetime]
    end_utc: Mapped[datetime]
    timezone: Mapped[str] = mapped_column(String(64), default="")
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    start_date: Mapped[date | None] = mapped_column(Date, default=None)
    end_date: Mapped[date | None] = mapped_column(Date, default=None)
    status: Mapped[str] = mapped_column(String(16), default="confirmed")
    location: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    organizer: Mapped[str] = mapped_column(String(320), default="")
    attendees: Mapped[list[Any]] = mapped_column(default=list)
    busy: Mapped[bool] = mapped_column(Boolean, default=True)
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    online_meeting_url: Mapped[str] = mapped_column(Text, default="")
    categories: Mapped[list[Any]] = mapped_column(default=list)
    own_marker: Mapped[str] = mapped_column(String(128), default="")
    modified_by: Mapped[str] = mapped_column(String(320), default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    seen_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("account_id", "uid", "recurrence_id"),
        Index("ix_event_snapshots_account_start", "account_id", "start_utc"),
        Index("ix_event_snapshots_account_href", "account_id", "href"),
    )


class ChangeBatch(Base):
    """The changes one sync found: notified together, in one message."""

    __tablename__ = "change_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    detected_at: Mapped[datetime]
    full_resync: Mapped[bool] = mapped_column(Boolean, default=False)


class ScheduleChange(Base):
    """One detected change to the manager's schedule."""

    __tablename__ = "schedule_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(
        ForeignKey("change_batches.id", ondelete="CASCADE"), index=True
    )
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    uid: Mapped[str] = mapped_column(String(512))
    recurrence_id: Mapped[str] = mapped_column(String(32), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    starts_at: Mapped[datetime]
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    detected_at: Mapped[datetime]
    priority: Mapped[str] = mapped_column(String(8), default="normal")  # high | normal | low
    reasons: Mapped[list[Any]] = mapped_column(default=list)  # the priority rules that matched
    conflicts: Mapped[list[Any]] = mapped_column(default=list)
    by_assistant: Mapped[bool] = mapped_column(Boolean, default=False)
    # pending: to notify; sent: in a message; digest: waits for the digest; undone: netted
    # out within the coalescing window; suppressed: made by the assistant, not reported
    state: Mapped[str] = mapped_column(String(16), default="pending")
    message_key: Mapped[str] = mapped_column(String(255), default="")
    notified_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_schedule_changes_pair_state", "pair_id", "state"),)


class PriorityRule(Base):
    """One of the manager's priority rules (see ``assistant.domain.priorities``)."""

    __tablename__ = "priority_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    pattern: Mapped[str] = mapped_column(String(320))
    level: Mapped[str] = mapped_column(String(8))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("pair_id", "kind", "pattern"),)


class Message(Base):
    """A mail message between (or around) the manager and the assistant."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    message_id: Mapped[str] = mapped_column(String(998))
    thread_key: Mapped[str] = mapped_column(String(998), default="")
    in_reply_to: Mapped[str] = mapped_column(String(998), default="")
    references: Mapped[list[Any]] = mapped_column(default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    from_addr: Mapped[str] = mapped_column(String(320))
    to_addrs: Mapped[list[Any]] = mapped_column(default=list)
    cc_addrs: Mapped[list[Any]] = mapped_column(default=list)
    sent_at: Mapped[datetime]
    # assistant_to_manager | manager_to_assistant | other
    direction: Mapped[str] = mapped_column(String(24))
    folder: Mapped[str] = mapped_column(String(256), default="")
    auto_reply: Mapped[bool] = mapped_column(Boolean, default=False)
    # What its text says for copies and quoted replies (``MessageData.extra``: body_key,
    # text_key, quote_keys, body_hash; short digests, never the text), where the source
    # read the body; {} otherwise.
    text_keys: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        UniqueConstraint("pair_id", "message_id"),
        Index("ix_messages_pair_sent", "pair_id", "sent_at"),
    )


class DelegatedTask(Base):
    """A task the manager delegated, with its SMART parameters and term."""

    __tablename__ = "delegated_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(500))
    result: Mapped[str] = mapped_column(Text, default="")
    measure: Mapped[str] = mapped_column(Text, default="")
    resources: Mapped[str] = mapped_column(Text, default="")
    why: Mapped[str] = mapped_column(Text, default="")
    delegator: Mapped[str] = mapped_column(String(320))
    delegate: Mapped[str] = mapped_column(String(320))
    term_start: Mapped[datetime]
    deadline: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(24), default="briefed")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    checkpoints: Mapped[list[Checkpoint]] = relationship(
        back_populates="task", cascade="all, delete-orphan", order_by="Checkpoint.kind.desc()"
    )


class Checkpoint(Base):
    """A task's Red Line or Dead Line and the calendar event that blocks time for it."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("delegated_tasks.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # red_line | dead_line
    line_at: Mapped[datetime]  # the exact line (middle of the term / the deadline)
    start_at: Mapped[datetime | None] = mapped_column(default=None)  # the placed slot
    end_at: Mapped[datetime | None] = mapped_column(default=None)
    event_uid: Mapped[str] = mapped_column(String(256), unique=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    event_href: Mapped[str] = mapped_column(String(1024), default="")
    # planned: to write; written: in the calendar; removed: to delete / deleted
    state: Mapped[str] = mapped_column(String(16), default="planned")
    written_at: Mapped[datetime | None] = mapped_column(default=None)
    note: Mapped[str] = mapped_column(Text, default="")

    task: Mapped[DelegatedTask] = relationship(back_populates="checkpoints")

    __table_args__ = (UniqueConstraint("task_id", "kind"),)


class TaskFeedback(Base):
    """An answer to a checkpoint's prompt: from the feedback page, an email reply or the CLI."""

    __tablename__ = "task_feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(
        ForeignKey("delegated_tasks.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16), default="")  # red_line | dead_line | ""
    source: Mapped[str] = mapped_column(String(8))  # web | email | cli
    respondent: Mapped[str] = mapped_column(String(320), default="")
    percent_done: Mapped[int | None] = mapped_column(Integer, default=None)
    on_time: Mapped[bool | None] = mapped_column(Boolean, default=None)
    on_track: Mapped[bool | None] = mapped_column(Boolean, default=None)
    needs_help: Mapped[bool] = mapped_column(Boolean, default=False)
    quality: Mapped[str] = mapped_column(Text, default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    # the same email reply or form post imported twice is one answer
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True, default=None)
    answered_at: Mapped[datetime]


class OutboxEntry(Base):
    """An effect to deliver (a notification), written in the same transaction as its cause."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    pair_id: Mapped[int | None] = mapped_column(
        ForeignKey("pairs.id", ondelete="SET NULL"), index=True
    )
    channel: Mapped[str] = mapped_column(String(32))  # smtp, ...
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text, default="")
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # pending -> sending -> sent | dead (pending again after a failed attempt)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    duration_ms: Mapped[float | None] = mapped_column(Float, default=None)


# ------------------------------------------------------------------ users and access


class Organisation(Base):
    """An agency (or a company) whose admins see the pairs assigned to it."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime]


class OrganisationPair(Base):
    """A pair belongs to at most one organisation."""

    __tablename__ = "organisation_pairs"

    pair_id: Mapped[int] = mapped_column(
        ForeignKey("pairs.id", ondelete="CASCADE"), primary_key=True
    )
    organisation_id: Mapped[int] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )


class User(Base):
    """A person who logs in to the web app: a manager, an assistant or an agency admin."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # An argon2id hash (PHC string); "" = no password, log in by email link only.
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[str] = mapped_column(String(16))  # admin | manager | assistant
    organisation_id: Mapped[int | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="SET NULL"), default=None, index=True
    )
    locale: Mapped[str] = mapped_column(String(16), default="en")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)


class Membership(Base):
    """A user's place in a pair: its manager or its assistant."""

    __tablename__ = "memberships"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # manager | assistant
    # Edit priorities, tasks and settings (managers always may; assistants when allowed).
    may_edit: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("user_id", "pair_id"),)


class WebSession(Base):
    """A logged-in browser. The cookie holds a random token; only its hash is stored."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class LoginAttempt(Base):
    """A refused login or a login link asked for, kept a day to throttle guessing.

    ``key`` names what is counted: ``"email:<sha256>"``, ``"ip:<address>"``,
    ``"link:<sha256>"``; the address typed in is stored only as its hash.
    """

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80), index=True)
    at: Mapped[datetime] = mapped_column(index=True)


class LoginLink(Base):
    """A one-time login link sent by mail; only the token's hash is stored."""

    __tablename__ = "login_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)
