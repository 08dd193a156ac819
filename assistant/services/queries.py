"""Read models for the CLI and the web app: frozen views, newest first.

One read model per view: ``change_feed`` is what ``assistant changes`` and the web's
changes page and API show (the CLI prints it, the web formats it in the pair's zone);
``outbox_entries`` is the CLI's ``assistant outbox``. Private events are masked here, once,
for the viewer's access (``assistant.domain.privacy``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from assistant.domain.privacy import busy_label, title, visible_json
from assistant.services.pairs import NotFoundError, find_pair
from assistant.store.tables import ChangeBatch, OutboxEntry, ScheduleChange

if TYPE_CHECKING:
    from assistant.services.deps import Deps


@dataclass(frozen=True, slots=True)
class FeedNotification:
    """An outbox entry as a change feed shows it: where a notification went."""

    id: int
    channel: str
    recipient: str
    subject: str
    state: str
    attempts: int
    last_error: str
    created_at: datetime
    sent_at: datetime | None

    @property
    def retryable(self) -> bool:
        return self.state == "dead"


@dataclass(frozen=True, slots=True)
class FeedChange:
    """A detected change with what this viewer may see of it (private events masked) and
    the notifications that told the assistant about it."""

    id: int
    batch_id: int
    detected_at: datetime
    kind: str
    kinds: tuple[str, ...]
    summary: str
    starts_at: datetime
    priority: str
    state: str
    by_assistant: bool
    conflicts: tuple[dict[str, Any], ...] = field(hash=False)
    before: dict[str, Any] | None = field(hash=False)
    after: dict[str, Any] | None = field(hash=False)
    notifications: tuple[FeedNotification, ...]


@dataclass(frozen=True, slots=True)
class ChangeFeed:
    """The newest changes of one pair and the pair's newest outbox entries."""

    pair_id: int
    timezone: str
    changes: tuple[FeedChange, ...]
    outbox: tuple[FeedNotification, ...]


def change_feed(
    deps: Deps,
    pair: str | int | None,
    *,
    sees_private: bool | None = None,
    limit: int = 100,
    locale: str | None = None,
) -> ChangeFeed:
    """The change feed of ``pair`` as a viewer sees it: ``sees_private`` None means the
    pair's own setting (what the assistant sees); a private event's title is the busy
    label of ``locale`` (the pair's when None)."""
    with deps.uow.read() as session:
        p = find_pair(session, pair)
        shows = p.share_private_details if sees_private is None else sees_private
        label = busy_label(locale or p.locale)
        rows = session.execute(
            select(ScheduleChange, ChangeBatch)
            .join(ChangeBatch, ChangeBatch.id == ScheduleChange.batch_id)
            .where(ScheduleChange.pair_id == p.id)
            .order_by(ScheduleChange.detected_at.desc(), ScheduleChange.id.desc())
            .limit(limit)
        ).all()
        entries = list(
            session.scalars(
                select(OutboxEntry)
                .where(OutboxEntry.pair_id == p.id)
                .order_by(OutboxEntry.id.desc())
            )
        )
        views = {e.id: _notification(e) for e in entries}
        notified = where_notified(entries, rows)
        changes = tuple(
            FeedChange(
                id=c.id,
                batch_id=b.id,
                detected_at=c.detected_at,
                kind=c.kind,
                kinds=tuple((c.after or c.before or {}).get("kinds", [c.kind])),
                summary=title(c.summary, _private(c), shows, p.locale),
                starts_at=c.starts_at,
                priority=c.priority,
                state=c.state,
                by_assistant=c.by_assistant,
                conflicts=tuple(_conflict(x, shows, label) for x in c.conflicts),
                before=visible_json(c.before, shows, label=label),
                after=visible_json(c.after, shows, label=label),
                notifications=tuple(views[e.id] for e in notified[c.id]),
            )
            for c, b in rows
        )
        return ChangeFeed(
            pair_id=p.id,
            timezone=p.timezone,
            changes=changes,
            outbox=tuple(views[e.id] for e in entries[:limit]),
        )


def _notification(e: OutboxEntry) -> FeedNotification:
    return FeedNotification(
        id=e.id,
        channel=e.channel,
        recipient=e.recipient,
        subject=e.subject,
        state=e.state,
        attempts=e.attempts,
        last_error=e.last_error,
        created_at=e.created_at,
        sent_at=e.sent_at,
    )


def _conflict(data: Any, sees_private: bool, label: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {"kind": str(data)}
    other = visible_json(data.get("other"), sees_private, label=label) or {}
    return {
        "kind": data.get("kind", ""),
        "other": other.get("summary", ""),
        "gap_minutes": data.get("gap_minutes"),
    }


@dataclass(frozen=True, slots=True)
class ChangeView:
    """A detected change as ``assistant changes`` prints it; ``notified`` is where its
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
    """``assistant changes``: the change feed as the pair's assistant sees it."""
    feed = change_feed(deps, pair, limit=limit)
    return [
        ChangeView(
            id=c.id,
            batch_id=c.batch_id,
            detected_at=c.detected_at.isoformat(timespec="seconds"),
            kind=c.kind,
            kinds=list(c.kinds),
            summary=c.summary,
            starts_at=c.starts_at.isoformat(timespec="minutes"),
            before=c.before,
            after=c.after,
            notified=", ".join(f"{n.channel}:{n.state}" for n in c.notifications) or "—",
        )
        for c in feed.changes
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
