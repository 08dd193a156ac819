"""Read models for the CLI and the web app: frozen views, newest first."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from assistant.domain.privacy import title, visible_json
from assistant.services.pairs import NotFoundError, find_pair
from assistant.store.tables import ChangeBatch, OutboxEntry, ScheduleChange

if TYPE_CHECKING:
    from assistant.services.deps import Deps


@dataclass(frozen=True, slots=True)
class ChangeView:
    """A detected change as ``assistant changes`` shows it; ``notified`` is where its
    notification went (``channel:state``, comma-separated; "—" before any)."""

    id: int
    batch_id: int
    detected_at: str
    kind: str
    kinds: list[str] = field(hash=False)
    summary: str
    starts_at: str
    before: dict[str, Any] | None = field(hash=False)
    after: dict[str, Any] | None = field(hash=False)
    notified: str


def recent_changes(deps: Deps, pair: str | int | None, limit: int = 50) -> list[ChangeView]:
    with deps.uow.read() as session:
        p = find_pair(session, pair)
        rows = session.execute(
            select(ScheduleChange, ChangeBatch)
            .join(ChangeBatch, ChangeBatch.id == ScheduleChange.batch_id)
            .where(ScheduleChange.pair_id == p.id)
            .order_by(ScheduleChange.detected_at.desc(), ScheduleChange.id.desc())
            .limit(limit)
        ).all()
        entries = session.scalars(select(OutboxEntry).where(OutboxEntry.pair_id == p.id)).all()
        notified = where_notified(entries, rows)
        return [
            ChangeView(
                id=c.id,
                batch_id=b.id,
                detected_at=c.detected_at.isoformat(timespec="seconds"),
                kind=c.kind,
                kinds=(c.after or c.before or {}).get("kinds", [c.kind]),
                summary=title(c.summary, _private(c), p.share_private_details),
                starts_at=c.starts_at.isoformat(timespec="minutes"),
                before=visible_json(c.before, p.share_private_details),
                after=visible_json(c.after, p.share_private_details),
                notified=", ".join(f"{e.channel}:{e.state}" for e in notified[c.id]) or "—",
            )
            for c, b in rows
        ]


def where_notified(
    entries: Iterable[OutboxEntry], changes: Iterable[tuple[ScheduleChange, ChangeBatch]]
) -> dict[int, list[OutboxEntry]]:
    """The outbox entries that told the assistant about each change (by change id).

    One answer for the CLI and the web: a notification names its changes in
    ``payload["change_ids"]`` (the dispatch path) or is the change's keyed message (the
    digest); entries of the older per-sync path name a ``batch_id``.
    """
    by_change: dict[int, list[OutboxEntry]] = {}
    by_key: dict[str, OutboxEntry] = {}
    by_batch: dict[int, list[OutboxEntry]] = {}
    for e in entries:
        by_key[e.idempotency_key] = e
        for cid in e.payload.get("change_ids", []) or []:
            if isinstance(cid, int):
                by_change.setdefault(cid, []).append(e)
        bid = e.payload.get("batch_id")
        if isinstance(bid, int):
            by_batch.setdefault(bid, []).append(e)
    found: dict[int, list[OutboxEntry]] = {}
    for c, b in changes:
        told = list(by_change.get(c.id, []))
        keyed = by_key.get(c.message_key) if c.message_key else None
        if keyed is not None and keyed not in told:
            told.append(keyed)
        found[c.id] = told or by_batch.get(b.id, [])
    return found


def _private(c: ScheduleChange) -> bool:
    return bool((c.after or c.before or {}).get("private"))


@dataclass(frozen=True, slots=True)
class OutboxEntryView:
    """A queued, sent or dead notification as ``assistant outbox`` lists it."""

    id: int
    key: str
    state: str
    channel: str
    recipient: str
    subject: str
    attempts: int
    last_error: str
    created_at: str
    sent_at: str | None


def outbox_entries(deps: Deps, state: str | None, limit: int = 50) -> list[OutboxEntryView]:
    with deps.uow.read() as session:
        stmt = select(OutboxEntry).order_by(OutboxEntry.id.desc()).limit(limit)
        if state:
            stmt = stmt.where(OutboxEntry.state == state)
        return [
            OutboxEntryView(
                id=e.id,
                key=e.idempotency_key,
                state=e.state,
                channel=e.channel,
                recipient=e.recipient,
                subject=e.subject,
                attempts=e.attempts,
                last_error=e.last_error,
                created_at=e.created_at.isoformat(timespec="seconds"),
                sent_at=e.sent_at.isoformat(timespec="seconds") if e.sent_at else None,
            )
            for e in session.scalars(stmt)
        ]


def retry_entry(deps: Deps, entry_id: int) -> None:
    with deps.uow.begin() as session:
        entry = session.get(OutboxEntry, entry_id)
        if entry is None:
            raise NotFoundError(f"no outbox entry {entry_id}")
        if entry.state == "sent":
            raise ValueError(f"entry {entry_id} was sent already; it is not sent twice")
        entry.state = "pending"
        entry.next_attempt_at = deps.now()
        entry.claimed_until = None
