"""Queueing a rendered message for a pair's assistant, shared by the change
notifications, the daily digest and the nudges.

``lock_pair`` takes the per-pair lock under which ``dispatch`` holds changes for the
digest and the digest reads them; ``notify_channels`` are the pair's notification channels
(e-mail when none is set); ``enqueue_for_assistant`` adds one outbox entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.domain.notify import RenderedMessage
from assistant.services import outbox
from assistant.store.tables import OutboxEntry, Pair


def lock_pair(session: Session, pair_id: int) -> Pair:
    """The pair row, locked for this transaction (SQLite: BEGIN IMMEDIATE holds it all).

    ``dispatch`` takes the same lock before it holds a change for the digest, so a change
    is either held before the digest reads the held ones, or waits for the next digest.
    """
    stmt = select(Pair).where(Pair.id == pair_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    pair = session.scalars(stmt).one_or_none()
    if pair is None:
        raise LookupError(f"no pair with id {pair_id}")
    return pair


def notify_channels(pair: Pair) -> list[str]:
    """The channels the pair is notified on (``smtp`` when none is set)."""
    return [str(c) for c in (pair.notify_channels or ["smtp"])]


def enqueue_for_assistant(
    session: Session,
    pair: Pair,
    message: RenderedMessage,
    *,
    key: str,
    channel: str,
    payload: dict[str, Any],
    now: datetime,
) -> OutboxEntry | None:
    """Queue ``message`` to the pair's assistant on ``channel`` (see ``outbox.enqueue``)."""
    return outbox.enqueue(
        session,
        key=key,
        channel=channel,
        recipient=pair.assistant_email,
        subject=message.subject,
        body_text=message.text,
        body_html=message.html,
        payload=payload,
        pair_id=pair.id,
        now=now,
    )
