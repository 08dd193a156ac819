"""From pending schedule changes to one message per burst, through the outbox.

Sync stores each detected change as ``pending`` with its priority. ``dispatch`` runs for
one pair (a Huey job scheduled by the sync, and again when the coalescing window ends):

- nothing is sent until no new change has been seen for ``coalesce_seconds`` (a quiet
  period, restarted by every change of the pair; ``domain.quiet_period``), or the first
  pending change is ``coalesce_max_seconds`` old, unless a high-priority change is among
  them: then everything pending goes at once. While the changes settle, the pipeline
  polls the pair's polled calendars again every ``sync.repoll_seconds`` (``settles_at``
  of the report), so that a burst's end or an undo is seen before anything is sent;
- in the assistant's quiet hours only high-priority changes go, and only when the pair
  lets them break through; the rest waits for the end of the quiet hours;
- low-priority changes wait for the daily digest (when the pair has one);
- changes to the same occurrence are merged into their net effect, and a change undone
  within the window sends nothing;
- changes the assistant made themselves are marked "made by you" or suppressed;
- conflicts (double bookings, no travel time) are worked out against the calendar as
  the store holds it now, and spelled out.

The outbox rows and the changes' new state are written in one transaction, under a
per-pair lock, with an idempotency key built from the change ids: a job run twice, or
two workers at once, still make one message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.domain import privacy
from assistant.domain.changes import Change, ChangeKind, DetectionRules, net_changes
from assistant.domain.conflicts import Conflict, find_conflicts
from assistant.domain.model import EventData
from assistant.domain.notify import Note, render_changes
from assistant.domain.quiet_period import Seen, send_at
from assistant.services.assistant_messages import enqueue_for_assistant, lock_pair, notify_channels
from assistant.services.audience import audience_for
from assistant.store.db import UnitOfWork
from assistant.store.snapshots import from_json, from_row, to_json
from assistant.store.tables import Account, EventSnapshot, Pair, ScheduleChange
from config.settings import NotifySettings

_LEVELS = {"low": 0, "normal": 1, "high": 2}


@dataclass(frozen=True, slots=True)
class DispatchReport:
    """What one ``dispatch`` did for a pair."""

    pair_id: int
    sent: int = 0  # changes that went into a message
    undone: int = 0
    suppressed: int = 0
    digest: int = 0
    outbox_ids: tuple[int, ...] = ()
    next_due: datetime | None = None  # when to run again for what still waits
    settles_at: datetime | None = None  # held for quiet until then (not for quiet hours)

    def to_json(self) -> dict[str, object]:
        """As a job's result: plain values, times in ISO 8601."""
        return {
            "pair_id": self.pair_id,
            "sent": self.sent,
            "undone": self.undone,
            "suppressed": self.suppressed,
            "digest": self.digest,
            "outbox_ids": list(self.outbox_ids),
            "next_due": self.next_due.isoformat() if self.next_due else None,
            "settles_at": self.settles_at.isoformat() if self.settles_at else None,
        }


@dataclass
class _Tally:
    """What ``dispatch`` counts while it works, frozen into the report at the end."""

    suppressed: int = 0
    digest: int = 0
    sent: int = 0
    undone: int = 0
    outbox_ids: list[int] = field(default_factory=list)

    def report(
        self, pair_id: int, next_due: datetime | None = None, settles_at: datetime | None = None
    ) -> DispatchReport:
        return DispatchReport(pair_id, self.sent, self.undone, self.suppressed, self.digest,
                              tuple(self.outbox_ids), next_due, settles_at)  # fmt: skip


def pairs_with_pending(uow: UnitOfWork) -> list[int]:
    with uow.read() as session:
        held = (
            select(ScheduleChange.pair_id)
            .join(Pair, Pair.id == ScheduleChange.pair_id)
            .where(ScheduleChange.state == "digest", Pair.digest_time == "")
        )
        pending = select(ScheduleChange.pair_id).where(ScheduleChange.state == "pending")
        return sorted(set(session.scalars(pending.distinct())) | set(session.scalars(held)))


def dispatch(
    uow: UnitOfWork,
    pair_id: int,
    now: datetime,
    settings: NotifySettings,
    *,
    force: bool = False,
    next_poll_at: datetime | None = None,
    pushes: Callable[[str], bool] | None = None,
    repolled: bool = False,
) -> DispatchReport:
    """Send what is due for one pair. ``force`` skips the coalescing wait (CLI sync).

    The wait is a quiet period (``domain.quiet_period.send_at``): it ends
    ``coalesce_seconds`` after the newest pending change was seen, at the latest
    ``coalesce_max_seconds`` after the first.

    ``repolled``: the pair's polled calendars are polled again while the changes settle
    (``sync.repoll_seconds``), so a change can always join and the wait holds to its end.
    Without it, ``next_poll_at`` (when the next polling round starts) and
    ``pushes(provider)`` (can such a calendar account report a change between polls?) let
    the wait end early when it would hold in vain: no calendar account of the pair
    pushes, each has synced since the newest pending change was seen, and the next round
    comes after the quiet period ends, so nothing could join the message by waiting.
    """
    tally = _Tally()
    with uow.begin() as session:
        pair = lock_pair(session, pair_id)
        digest_on = bool(pair.digest_time)
        # With the digest turned off, changes held for it go out like normal ones.
        states = ("pending",) if digest_on else ("pending", "digest")
        rows = list(
            session.scalars(
                select(ScheduleChange)
                .where(ScheduleChange.pair_id == pair_id, ScheduleChange.state.in_(states))
                .order_by(ScheduleChange.id)
            )
        )
        for r in rows:
            r.state = "pending"
        if not rows:
            return tally.report(pair_id)
        if settings.assistant_changes == "suppress":
            for r in [r for r in rows if r.by_assistant]:
                r.state, r.notified_at = "suppressed", now
                tally.suppressed += 1
            rows = [r for r in rows if r.state == "pending"]
        if digest_on:
            for r in [r for r in rows if r.priority == "low"]:
                r.state = "digest"
                tally.digest += 1
            rows = [r for r in rows if r.state == "pending"]
        if not rows:
            return tally.report(pair_id)
        high = any(r.priority == "high" for r in rows)
        due_at = send_at(
            [Seen(r.detected_at, r.priority == "high") for r in rows],
            timedelta(seconds=settings.coalesce_seconds),
            timedelta(seconds=settings.coalesce_max_seconds),
        )
        last_seen = max(r.detected_at for r in rows)
        if now < due_at and not repolled and _nothing_can_join(
            session, pair_id, last_seen, due_at, next_poll_at, pushes
        ):
            due_at = now
        if not force and now < due_at:
            return tally.report(pair_id, next_due=due_at, settles_at=due_at)
        quiet_until = _quiet_until(pair, now)
        if quiet_until is not None and not (high and pair.quiet_hours.get("high_breaks_through")):
            return tally.report(pair_id, next_due=quiet_until)
        _send(session, pair, rows, now, settings, tally)
    return tally.report(pair_id)


def _nothing_can_join(
    session: Session,
    pair_id: int,
    last_seen: datetime,
    due_at: datetime,
    next_poll_at: datetime | None,
    pushes: Callable[[str], bool] | None,
) -> bool:
    """True when no change can reach the store before ``due_at`` (see ``dispatch``)."""
    if next_poll_at is None or pushes is None or next_poll_at < due_at:
        return False
    calendars = session.execute(
        select(Account.provider, Account.last_sync_at).where(
            Account.pair_id == pair_id, Account.kind == "calendar"
        )
    ).all()
    return all(
        not pushes(provider) and last is not None and last >= last_seen
        for provider, last in calendars
    )


def _quiet_until(pair: Pair, now: datetime) -> datetime | None:
    """The end of the quiet hours ``now`` is in (assistant's zone), or None."""
    q = pair.quiet_hours or {}
    if not q.get("start") or not q.get("end"):
        return None
    zone = ZoneInfo(pair.assistant_timezone or pair.timezone)
    local = now.astimezone(zone)
    start, end = time.fromisoformat(q["start"]), time.fromisoformat(q["end"])
    t = local.time()
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return None
    day = local.date() if (start < end or t < end) else local.date() + timedelta(days=1)
    return datetime.combine(day, end, zone)


def _send(
    session: Session,
    pair: Pair,
    rows: Sequence[ScheduleChange],
    now: datetime,
    settings: NotifySettings,
    report: _Tally,
) -> None:
    rules = DetectionRules(manager_emails=frozenset({pair.manager_email.lower()}))
    detected = [change_from_row(r) for r in rows]
    net = net_changes(detected, rules)
    keys = {c.event.key for c in net} | {c.before.key for c in net if c.before is not None}
    notes: dict[tuple[str, str], Note] = {}
    conflicts = _conflicts(session, pair, [c.after for c in net if c.after is not None],
                           settings)  # fmt: skip
    for c in net:
        touching = [r for r in rows if _keys_of(r) & _keys_of_change(c)]
        level = max((r.priority for r in touching), key=_LEVELS.__getitem__, default="normal")
        reasons = tuple(
            dict.fromkeys(x for r in touching if r.priority == level for x in r.reasons)
        )
        notes[c.event.key] = Note(
            priority=level,
            reasons=reasons,
            conflicts=tuple(conflicts.get(c.event.key, ())),
            by_assistant=all(r.by_assistant for r in touching) if touching else False,
        )
    for r in rows:
        r.notified_at = now
        if _keys_of(r) & keys:
            r.state = "sent"
            report.sent += 1
            k = (r.uid, r.recurrence_id)
            r.conflicts = [x.to_json() for x in conflicts.get(k, ())]
        else:
            r.state = "undone"
            report.undone += 1
    if not net:
        return
    message = render_changes(net, audience_for(pair), notes)
    digest = hashlib.sha256(",".join(str(r.id) for r in rows).encode()).hexdigest()[:16]
    for channel in notify_channels(pair):
        key = f"changes:{pair.id}:{digest}:{pair.assistant_email}:{channel}"
        entry = enqueue_for_assistant(
            session,
            pair,
            message,
            key=key,
            channel=channel,
            payload={
                "change_ids": [r.id for r in rows if r.state == "sent"],
                "kinds": [c.kind.value for c in net],
                "priority": max((n.priority for n in notes.values()), key=_LEVELS.__getitem__),
                "conflicts": sum(len(n.conflicts) for n in notes.values()),
                "changes": [_structured(c, notes[c.event.key], pair) for c in net],
            },
            now=now,
        )
        for r in rows:
            if r.state == "sent":
                r.message_key = key
        if entry is not None:
            report.outbox_ids.append(entry.id)


def _shown(event: EventData | None, pair: Pair) -> dict[str, object] | None:
    """An event as a machine-readable channel may see it: private ones as busy time only."""
    if event is None:
        return None
    return privacy.visible_json(to_json(event), pair.share_private_details)


def _structured(c: Change, note: Note, pair: Pair) -> dict[str, object]:
    return {
        "kind": c.kind.value,
        "kinds": sorted(k.value for k in c.kinds),
        "before": _shown(c.before, pair),
        "after": _shown(c.after, pair),
        "priority": note.priority,
        "by_assistant": note.by_assistant,
        "conflicts": [
            {"kind": x.kind, "gap_minutes": x.gap_minutes, "other": _shown(x.other, pair)}
            for x in note.conflicts
        ],
    }


def change_from_row(row: ScheduleChange) -> Change:
    before = from_json(row.before) if row.before else None
    after = from_json(row.after) if row.after else None
    kinds = frozenset(ChangeKind(k) for k in (row.after or row.before or {}).get("kinds", []))
    return Change(kinds or frozenset({ChangeKind(row.kind)}), before, after)


def _keys_of(row: ScheduleChange) -> set[tuple[str, str]]:
    keys = {(row.uid, row.recurrence_id)}
    for side in (row.before, row.after):
        if side:
            keys.add((side["uid"], side.get("recurrence_id", "")))
    return keys


def _keys_of_change(c: Change) -> set[tuple[str, str]]:
    return {e.key for e in (c.before, c.after) if e is not None}


def _conflicts(
    session: Session, pair: Pair, changed: list[EventData], settings: NotifySettings
) -> dict[tuple[str, str], list[Conflict]]:
    if not changed:
        return {}
    buffer = timedelta(minutes=settings.travel_buffer_minutes)
    lo = min(e.start for e in changed) - buffer - timedelta(days=1)
    hi = max(e.end for e in changed) + buffer + timedelta(days=1)
    rows = session.scalars(
        select(EventSnapshot)
        .join(Account, Account.id == EventSnapshot.account_id)
        .where(
            Account.pair_id == pair.id,
            EventSnapshot.end_utc > lo,
            EventSnapshot.start_utc < hi,
        )
    )
    calendar = [from_row(r) for r in rows]
    found = find_conflicts(
        changed, calendar, travel_buffer=buffer,
        manager_emails=frozenset({pair.manager_email.lower()}),
    )  # fmt: skip
    out: dict[tuple[str, str], list[Conflict]] = {}
    for c in found:
        out.setdefault(c.event.key, []).append(c)
    return out
