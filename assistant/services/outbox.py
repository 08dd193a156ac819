"""The transactional outbox: every notification is a row first, a delivery second.

A cause (a sync that found changes, a nudge that fell due) calls ``enqueue`` in its own
transaction, under an idempotency key: the same key twice is one row. ``drain`` then
claims due rows (``claim_due``: two drainers never claim the same row) and hands each to
its channel (``deliver``), recording success, a retry with exponential back-off, or a
dead letter. A worker that dies mid-send leaves a claim that expires and is taken again;
channels make such a resend recognisable (SMTP: the same Message-ID).

Channels see an ``OutboxMessage`` snapshot, never an ORM row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from assistant.domain.text import one_line
from assistant.store.db import UnitOfWork
from assistant.store.tables import OutboxEntry
from config.settings import OutboxSettings

log = logging.getLogger(__name__)

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
DEAD = "dead"

MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class OutboxMessage:
    """What a channel needs to deliver one entry."""

    key: str
    channel: str
    recipient: str
    subject: str
    body_text: str
    body_html: str = ""
    payload: Mapping[str, Any] = field(default_factory=dict)
    pair_id: int | None = None
    created_at: datetime | None = None


class DeliveryError(Exception):
    """A channel could not deliver. ``permanent`` errors are not retried; ``retry_after``
    (seconds) is the earliest retry the other side asked for."""

    def __init__(
        self, message: str, retry_after: float | None = None, permanent: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.permanent = permanent


class Channel(Protocol):
    """A way out of the outbox (SMTP, chat, webhook...)."""

    def send(self, message: OutboxMessage) -> None:
        """Deliver or raise ``DeliveryError``."""


@dataclass(frozen=True, slots=True)
class NotSent:
    """An entry a drain could not deliver: why (the channel's words), and when it is tried
    again (``retry_at``; None when it is dead and will not be)."""

    entry_id: int
    pair_id: int | None
    channel: str
    error: str
    retry_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["retry_at"] = self.retry_at.isoformat() if self.retry_at else None
        return d


@dataclass
class DrainReport:
    """What one ``drain`` did; ``next_attempt_at`` is when a pending entry is due next;
    ``not_sent`` what this drain tried and could not deliver."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0
    next_attempt_at: datetime | None = None
    not_sent: list[NotSent] = field(default_factory=list)

    @property
    def nothing_delivered(self) -> bool:
        """Something was tried and none of it went out."""
        return bool(self.not_sent) and self.sent == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "sent": self.sent,
            "retried": self.retried,
            "dead": self.dead,
            "skipped": self.skipped,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
            "not_sent": [n.to_dict() for n in self.not_sent],
        }


# ----------------------------------------------------------------------------- enqueue


def enqueue(
    session: Session,
    *,
    key: str,
    channel: str,
    recipient: str,
    subject: str,
    body_text: str,
    body_html: str = "",
    payload: dict[str, Any] | None = None,
    pair_id: int | None,
    now: datetime,
) -> OutboxEntry | None:
    """Add an entry in the caller's transaction; None (and nothing done) if ``key`` exists."""
    values: dict[str, Any] = {
        "idempotency_key": key,
        "pair_id": pair_id,
        "channel": channel,
        "recipient": recipient,
        "subject": one_line(subject),  # never a header of its own
        "body_text": body_text,
        "body_html": body_html,
        "payload": dict(payload or {}),
        "state": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "last_error": "",
    }
    session.flush()  # rows this insert may refer to (the pair) must exist first
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        dialect_insert: Any
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        stmt = (
            dialect_insert(OutboxEntry)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(OutboxEntry.id)
        )
        new_id = session.execute(stmt).scalar_one_or_none()
    else:
        try:
            with session.begin_nested():
                new_id = session.execute(
                    insert(OutboxEntry).values(**values).returning(OutboxEntry.id)
                ).scalar_one()
        except IntegrityError:
            new_id = None
    if new_id is None:
        return None
    return session.get(OutboxEntry, new_id)


# ------------------------------------------------------------------------------- claim


def claim_due(
    uow: UnitOfWork,
    now: datetime,
    limit: int,
    claim_timeout: timedelta | float,
    max_attempts: int | None = None,
) -> list[int]:
    """Mark up to ``limit`` due entries as being sent by us until ``now + claim_timeout``.

    Due: pending with ``next_attempt_at <= now``, or sending with an expired claim (its
    worker died). PostgreSQL skips rows another drainer has locked; SQLite transactions
    start with BEGIN IMMEDIATE, so the select and update below run under the write lock.

    A claim counts as an attempt, so an entry whose sending kills the worker every time
    (a poison message) is dead after ``max_attempts`` instead of looping for ever.
    """
    if not isinstance(claim_timeout, timedelta):
        claim_timeout = timedelta(seconds=claim_timeout)
    with uow.begin() as session:
        if max_attempts is not None:
            session.execute(
                update(OutboxEntry)
                .where(
                    OutboxEntry.state == SENDING,
                    OutboxEntry.claimed_until < now,
                    OutboxEntry.attempts >= max_attempts,
                )
                .values(
                    state=DEAD,
                    claimed_until=None,
                    last_error="the worker stopped while sending, every attempt",
                )
                .execution_options(synchronize_session=False)
            )
        due = or_(
            (OutboxEntry.state == PENDING) & (OutboxEntry.next_attempt_at <= now),
            (OutboxEntry.state == SENDING) & (OutboxEntry.claimed_until < now),
        )
        ids = list(
            session.scalars(
                select(OutboxEntry.id)
                .where(due)
                .order_by(OutboxEntry.next_attempt_at, OutboxEntry.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if ids:
            session.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id.in_(ids))
                .values(
                    state=SENDING,
                    claimed_until=now + claim_timeout,
                    attempts=OutboxEntry.attempts + 1,
                )
                .execution_options(synchronize_session=False)
            )
    return ids


# ----------------------------------------------------------------------------- deliver


def backoff_delay(
    attempts: int, settings: OutboxSettings, retry_after: float | None = None
) -> float:
    """Seconds to wait after the ``attempts``-th failure: doubling from the base, capped,
    but never sooner than the other side's ``retry_after``."""
    delay = min(
        settings.backoff_seconds * 2.0 ** max(attempts - 1, 0), settings.backoff_max_seconds
    )
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay


def deliver(
    uow: UnitOfWork,
    entry_id: int,
    channels: Mapping[str, Channel],
    now_fn: Callable[[], datetime],
    settings: OutboxSettings,
) -> str:
    """Send one claimed entry; return ``sent``, ``retried``, ``dead`` or ``skipped``.

    The entry is read under our claim (an entry no longer being sent — sent, dead or
    released — is skipped); the channel is called outside any transaction; the outcome
    is recorded in a new one.
    """
    outcome, _ = _deliver(uow, entry_id, channels, now_fn, settings)
    return outcome


def _deliver(
    uow: UnitOfWork,
    entry_id: int,
    channels: Mapping[str, Channel],
    now_fn: Callable[[], datetime],
    settings: OutboxSettings,
) -> tuple[str, NotSent | None]:
    with uow.begin() as session:
        entry = session.get(OutboxEntry, entry_id)
        now = now_fn()
        if (
            entry is None
            or entry.state != SENDING
            or entry.claimed_until is None
            or entry.claimed_until < now
        ):
            return "skipped", None
        message = OutboxMessage(
            key=entry.idempotency_key,
            channel=entry.channel,
            recipient=entry.recipient,
            subject=entry.subject,
            body_text=entry.body_text,
            body_html=entry.body_html,
            payload=dict(entry.payload or {}),
            pair_id=entry.pair_id,
            created_at=entry.created_at,
        )
    error: DeliveryError | None = None
    started = time.monotonic()
    channel = channels.get(message.channel)
    if channel is None and ":" in message.channel:  # "account:12": the "account" channel
        channel = channels.get(message.channel.partition(":")[0])
    try:
        if channel is None:
            raise DeliveryError(f"no channel {message.channel!r} is configured", permanent=True)
        channel.send(message)
    except DeliveryError as exc:
        error = exc
    except Exception as exc:  # a channel bug must not stop the drain of other entries
        log.exception("outbox entry %s: channel %s failed", entry_id, message.channel)
        error = DeliveryError(f"{type(exc).__name__} in channel {message.channel}")
    duration_ms = (time.monotonic() - started) * 1000
    return _record(uow, entry_id, error, duration_ms, now_fn(), settings)


def _record(
    uow: UnitOfWork,
    entry_id: int,
    error: DeliveryError | None,
    duration_ms: float,
    now: datetime,
    settings: OutboxSettings,
) -> tuple[str, NotSent | None]:
    """Record one attempt. A send is logged at INFO, a failure as a WARNING line (the
    channel's words, no traceback: an unreachable server is not a bug of ours)."""
    with uow.begin() as session:
        entry = session.get(OutboxEntry, entry_id)
        if entry is None:
            return "skipped", None
        entry.claimed_until = None  # the attempt was counted when it was claimed
        entry.duration_ms = duration_ms
        if error is None:
            entry.state, entry.sent_at, entry.last_error = SENT, now, ""
            log.info("outbox entry %s sent (%s)", entry_id, entry.channel)
            return SENT, None
        entry.last_error = error.message[:MAX_ERROR_CHARS]
        if error.permanent or entry.attempts >= settings.max_attempts:
            entry.state = DEAD
            log.warning("outbox entry %s not sent, given up: %s", entry_id, entry.last_error)
            dead = NotSent(entry_id, entry.pair_id, entry.channel, entry.last_error, None)
            return DEAD, dead
        delay = backoff_delay(entry.attempts, settings, error.retry_after)
        entry.state = PENDING
        entry.next_attempt_at = now + timedelta(seconds=delay)
        log.warning("outbox entry %s not sent: %s; retry in %.0fs", entry_id,
                    entry.last_error, delay)  # fmt: skip
        retry = NotSent(entry_id, entry.pair_id, entry.channel, entry.last_error,
                        entry.next_attempt_at)  # fmt: skip
        return "retried", retry


# ------------------------------------------------------------------------------- drain


def drain(
    uow: UnitOfWork,
    channels: Mapping[str, Channel],
    now_fn: Callable[[], datetime],
    settings: OutboxSettings,
    limit: int = 100,
) -> DrainReport:
    """Claim what is due and deliver it, one entry at a time."""
    report = DrainReport()
    ids = claim_due(uow, now_fn(), limit, settings.claim_timeout_seconds, settings.max_attempts)
    report.claimed = len(ids)
    for entry_id in ids:
        outcome, not_sent = _deliver(uow, entry_id, channels, now_fn, settings)
        setattr(report, outcome, getattr(report, outcome) + 1)
        if not_sent is not None:
            report.not_sent.append(not_sent)
    report.next_attempt_at = next_due(uow)
    return report


def next_due(uow: UnitOfWork) -> datetime | None:
    """When the earliest entry not yet sent becomes due (a pending retry or a claim's end)."""
    with uow.read() as session:
        pending = session.scalar(
            select(func.min(OutboxEntry.next_attempt_at)).where(OutboxEntry.state == PENDING)
        )
        claimed = session.scalar(
            select(func.min(OutboxEntry.claimed_until)).where(OutboxEntry.state == SENDING)
        )
    times = [t for t in (pending, claimed) if t is not None]
    return min(times) if times else None
