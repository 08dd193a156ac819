"""The daily digest: one message to the assistant at the pair's local digest time.

``digest`` gathers, under the pair's lock and in one transaction: today's and tomorrow's
agenda from the stored snapshots of the pair's calendars, the changes since the last
digest (those sent at once, and the low-priority ones held in state ``digest``, which
become ``sent`` here), the conflicts among today's and tomorrow's events, the assistant's
messages the manager has left unanswered past the SLA (in working time), and the Red
Lines and Dead Lines of the next two working days. It renders them in the assistant's
locale and queues the message through the outbox, one entry per channel, keyed by pair,
digest date, recipient and channel; ``Pair.last_digest_at`` moves to ``now``.

An assistant of several managers gets one digest covering all of them: every pair with the
same assistant address and a digest time (and the pair the digest is run for) gives a part,
in pair order. The first of those pairs leads: its channels and language are the message's,
its id is in the outbox key (so with one pair the key is that pair's, as always), and the
first digest time of the day among them sends it; the others' runs that day find it queued.
Every pair covered moves its ``last_digest_at``. Parts about the service as a whole (not one
manager's day) go in ``DigestSection``'s neighbours, ``domain.digest.ExtraSection``.

One digest per digest date: the date is the local date of the latest digest time at or
before ``now`` (a digest run late after midnight still counts for the day before), so a
job run twice, a late run and the tick's safety net make one message. A run that finds
the date's message queued already changes nothing.

``next_digest_at`` is the next local digest time (DST-correct); ``pairs_due`` lists the
pairs whose digest is overdue, for the tick's safety net; ``preview`` builds the message
without queueing it (``assistant digest`` without ``--send``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from assistant.domain.changes import DetectionRules, net_changes
from assistant.domain.conflicts import find_conflicts
from assistant.domain.digest import (
    DigestChange,
    DigestContent,
    DigestSection,
    OpenMessage,
    TaskLine,
    day_bounds,
    day_conflicts,
    last_slot,
    next_slot,
    render_assistant_digest,
    structured_digest,
    working_days_end,
)
from assistant.domain.model import EventData
from assistant.domain.notify import Note, RenderedMessage
from assistant.services.account_health import pair_troubles
from assistant.services.assistant_messages import enqueue_for_assistant, lock_pair, notify_channels
from assistant.services.audience import audience_for
from assistant.services.delegation import OPEN_STATES
from assistant.services.hours import pair_hours
from assistant.services.notifications import change_from_row
from assistant.services.pairs import find_pair
from assistant.services.reply_index import fed_index
from assistant.store.db import UnitOfWork
from assistant.store.snapshots import from_row
from assistant.store.tables import (
    Account,
    Checkpoint,
    DelegatedTask,
    EventSnapshot,
    OutboxEntry,
    Pair,
    ScheduleChange,
)
from config.settings import Settings

if TYPE_CHECKING:
    from assistant.services.deps import Deps

FIRST_DIGEST_LOOKBACK = timedelta(days=1)  # with no digest before, recap the last day
GONE_CHECKPOINT_STATES = ("to_remove", "removed")
_LEVELS = {"low": 0, "normal": 1, "high": 2}


@dataclass(frozen=True)
class DigestReport:
    pair_id: int
    date: date | None = None  # the digest date the message is for
    pair_ids: list[int] = field(default_factory=list)  # every pair the message covers
    queued: bool = False
    already_sent: bool = False  # that date's digest was queued before: nothing done
    held_sent: int = 0  # held low-priority changes now reported (state digest → sent)
    keys: list[str] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    next_at: datetime | None = None
    message: RenderedMessage | None = None
    data: dict[str, Any] = field(default_factory=dict)  # the machine-readable digest

    def to_dict(self) -> dict[str, Any]:
        return {
            "pair_id": self.pair_id,
            "pair_ids": self.pair_ids,
            "date": self.date.isoformat() if self.date else None,
            "queued": self.queued,
            "already_sent": self.already_sent,
            "held_sent": self.held_sent,
            "keys": self.keys,
            "outbox_ids": self.outbox_ids,
            "counts": self.counts,
            "next_at": self.next_at.isoformat() if self.next_at else None,
            "subject": self.message.subject if self.message else None,
            "text": self.message.text if self.message else None,
        }


# ------------------------------------------------------------------------------ when


def digest_zone(pair: Pair) -> str:
    """The zone of the digest time: the assistant's, else the manager's."""
    return pair.assistant_timezone or pair.timezone or "UTC"


def next_digest_at(pair: Pair, now: datetime) -> datetime | None:
    """The next digest instant after ``now`` (UTC); None when the pair has no digest."""
    return next_slot(pair.digest_time, digest_zone(pair), now)


def digest_date(pair: Pair, now: datetime) -> date:
    """The date a digest run at ``now`` is for: that of the latest digest time at or
    before ``now`` (with the digest off, ``now``'s local date)."""
    zone = digest_zone(pair)
    slot = last_slot(pair.digest_time, zone, now)
    return (slot or now).astimezone(ZoneInfo(zone)).date()


def digest_keys(pair: Pair, day: date) -> list[str]:
    return [
        f"digest:{pair.id}:{day.isoformat()}:{pair.assistant_email}:{channel}"
        for channel in notify_channels(pair)
    ]


def assistant_pairs(session: Session, pair: Pair) -> list[Pair]:
    """The pairs one digest to ``pair``'s assistant covers, by id: every pair of the same
    assistant address whose digest is on, and ``pair`` itself. The first leads."""
    email = pair.assistant_email.strip().lower()
    if not email:
        return [pair]
    rows = session.scalars(
        select(Pair).where(func.lower(Pair.assistant_email) == email).order_by(Pair.id)
    )
    return [p for p in rows if p.digest_time or p.id == pair.id]


def group_keys(session: Session, pair: Pair, now: datetime) -> list[str]:
    """The outbox keys of the digest a run for ``pair`` at ``now`` would queue."""
    return digest_keys(assistant_pairs(session, pair)[0], digest_date(pair, now))


def pairs_due(deps: Deps) -> list[int]:
    """Pairs whose digest time has passed (``last_digest_at`` before it) and whose digest
    for that date is not queued: the tick's safety net for a lost self-scheduled job."""
    now = deps.now()
    due: list[int] = []
    with deps.uow.read() as session:
        for pair in session.scalars(select(Pair).where(Pair.digest_time != "").order_by(Pair.id)):
            try:
                slot = last_slot(pair.digest_time, digest_zone(pair), now)
            except ValueError:  # a malformed time stored by hand: nothing to schedule
                continue
            if slot is None or (pair.last_digest_at is not None and pair.last_digest_at >= slot):
                continue
            if not _queued(session, group_keys(session, pair, now)):
                due.append(pair.id)
    return due


# --------------------------------------------------------------------------- digest


def digest(deps: Deps, pair_id: int) -> DigestReport:
    """Queue the digest of the pair's assistant (covering all their managers) for the date
    ``deps.now()`` falls in (see the module docstring)."""
    now, settings = deps.now(), deps.settings
    with deps.uow.begin() as session:
        first = session.get(Pair, pair_id)
        if first is None:
            raise LookupError(f"no pair with id {pair_id}")
        # every pair covered is locked, in id order, so two pairs' jobs never wait on each other
        pairs = [lock_pair(session, p.id) for p in assistant_pairs(session, first)]
        pair, lead = next(p for p in pairs if p.id == pair_id), pairs[0]
        day = digest_date(pair, now)
        keys = digest_keys(lead, day)
        report = DigestReport(
            pair_id,
            date=day,
            pair_ids=[p.id for p in pairs],
            keys=keys,
            next_at=next_digest_at(pair, now),
        )
        if _queued(session, keys):
            return replace(report, already_sent=True)
        composed = _compose(session, deps.uow, pairs, now, settings)
        held = [r for r in composed.rows if r.state == "digest"]
        payload = {"kind": "digest", "change_ids": [r.id for r in composed.rows], **composed.data}
        outbox_ids: list[int] = []
        for channel, key in zip(notify_channels(lead), keys, strict=True):
            entry = enqueue_for_assistant(
                session, lead, composed.message, key=key, channel=channel, payload=payload,
                now=now,
            )  # fmt: skip
            if entry is not None:
                outbox_ids.append(entry.id)
        for row in held:
            row.state, row.notified_at, row.message_key = "sent", now, keys[0]
        for p in pairs:
            p.last_digest_at = now
        return replace(
            report,
            queued=True,
            held_sent=len(held),
            outbox_ids=outbox_ids,
            counts=composed.counts,
            message=composed.message,
            data=composed.data,
        )


def preview(deps: Deps, pair_ref: str | int | None) -> DigestReport:
    """The digest ``digest`` would queue at ``deps.now()``, built without writing anything."""
    now = deps.now()
    with deps.uow.read() as session:
        pair = find_pair(session, pair_ref)
        pairs = assistant_pairs(session, pair)
        day = digest_date(pair, now)
        keys = digest_keys(pairs[0], day)
        composed = _compose(session, deps.uow, pairs, now, deps.settings)
        return DigestReport(
            pair.id,
            date=day,
            pair_ids=[p.id for p in pairs],
            next_at=next_digest_at(pair, now),
            keys=keys,
            already_sent=_queued(session, keys),
            message=composed.message,
            data=composed.data,
            counts=composed.counts,
        )


@dataclass(frozen=True)
class _Composed:
    message: RenderedMessage
    data: dict[str, Any]
    counts: dict[str, int]
    rows: list[ScheduleChange]


def _compose(
    session: Session, uow: UnitOfWork, pairs: list[Pair], now: datetime, settings: Settings
) -> _Composed:
    """One message for the pairs' assistant: a part per pair, in the first pair's language."""
    sections: list[DigestSection] = []
    rows: list[ScheduleChange] = []
    counts: dict[str, int] = {}
    for p in pairs:
        content, changed = _gather(session, uow, p, now, settings)
        sections.append(DigestSection(content, audience_for(p), p.id))
        rows.extend(changed)
        for name, n in content.counts(p.timezone).items():
            counts[name] = counts.get(name, 0) + n
    locale = pairs[0].locale
    return _Composed(
        message=render_assistant_digest(sections, locale),
        data=structured_digest(sections),
        counts=counts,
        rows=rows,
    )


@dataclass(frozen=True)
class DigestShown:
    """What ``assistant digest`` shows: the report, and whether it was a send."""

    report: DigestReport
    sent: bool

    def to_dict(self) -> dict[str, Any]:
        message = self.report.message
        return self.report.to_dict() | {
            "sent": self.sent,
            "html": message.html if message else None,
            "digest": self.report.data,
        }


def digest_command(deps: Deps, pair_ref: str | int | None, *, send: bool = False) -> DigestShown:
    """What ``assistant digest [--pair P] [--json] [--send]`` shows: the digest as it would
    go now (``--send``: queued, once per digest date). The caller prints the message's
    text (or ``to_dict()`` with ``--json``) and, after a send, drains the outbox."""
    if send:
        with deps.uow.read() as session:
            pair_id = find_pair(session, pair_ref).id
        report = digest(deps, pair_id)
        if report.already_sent:  # show what went, as it would read now
            shown = preview(deps, pair_id)
            report = replace(report, message=shown.message, data=shown.data, counts=shown.counts)
    else:
        report = preview(deps, pair_ref)
    return DigestShown(report, send)


# -------------------------------------------------------------------------- gather


def _gather(
    session: Session, uow: UnitOfWork, pair: Pair, now: datetime, settings: Settings
) -> tuple[DigestContent, list[ScheduleChange]]:
    zone = pair.timezone or "UTC"
    today = now.astimezone(ZoneInfo(digest_zone(pair))).date()
    buffer = timedelta(minutes=settings.notify.travel_buffer_minutes)
    managers = frozenset({pair.manager_email.lower()})
    events = _calendar(session, pair, today, zone, buffer)
    conflicts = day_conflicts(
        events,
        (today, today + timedelta(days=1)),
        zone,
        lambda mine, calendar: find_conflicts(
            mine, calendar, travel_buffer=buffer, manager_emails=managers
        ),
    )
    since = pair.last_digest_at
    changes, rows = _changes(session, pair, now, since or now - FIRST_DIGEST_LOOKBACK)
    hours = pair_hours(
        pair, (now - timedelta(days=settings.latency.lookback_days)).year, now.year + 1
    )
    open_messages = _open_messages(session, uow, pair, now, settings, hours.working_minutes)
    until = working_days_end(hours, now, 2)
    content = DigestContent(
        today=today,
        events=events,
        changes=changes,
        conflicts=conflicts,
        open_messages=open_messages,
        tasks=_tasks(session, pair, now, until),
        since=since,
        sla_minutes=pair.sla_minutes,
        tasks_until=until,
        accounts=pair_troubles(session, pair, now, settings),
    )
    return content, rows


def _calendar(
    session: Session, pair: Pair, today: date, zone: str, buffer: timedelta
) -> list[EventData]:
    """Snapshots around today and tomorrow (a day's margin: all-day events are dates whose
    stored instants are midnights in the calendar's own zone)."""
    lo = day_bounds(today, zone)[0] - buffer - timedelta(days=1)
    hi = day_bounds(today + timedelta(days=1), zone)[1] + buffer + timedelta(days=1)
    rows = session.scalars(
        select(EventSnapshot)
        .join(Account, Account.id == EventSnapshot.account_id)
        .where(
            Account.pair_id == pair.id,
            Account.kind == "calendar",
            EventSnapshot.end_utc > lo,
            EventSnapshot.start_utc < hi,
        )
        .order_by(EventSnapshot.start_utc, EventSnapshot.id)
    )
    return [from_row(r) for r in rows]


def _changes(
    session: Session, pair: Pair, now: datetime, since: datetime
) -> tuple[list[DigestChange], list[ScheduleChange]]:
    """Changes since the last digest: those sent since, and every one held for the digest,
    merged into their net effect per occurrence. Returns them and the rows they come from."""
    rows = list(
        session.scalars(
            select(ScheduleChange)
            .where(
                ScheduleChange.pair_id == pair.id,
                or_(
                    ScheduleChange.state == "digest",
                    (ScheduleChange.state == "sent")
                    & (ScheduleChange.notified_at > since)
                    & (ScheduleChange.notified_at <= now),
                ),
            )
            .order_by(ScheduleChange.id)
        )
    )
    rules = DetectionRules(manager_emails=frozenset({pair.manager_email.lower()}))
    out: list[DigestChange] = []
    for c in net_changes([change_from_row(r) for r in rows], rules):
        keys = {e.key for e in (c.before, c.after) if e is not None}
        touching = [r for r in rows if _row_keys(r) & keys]
        level = max((r.priority for r in touching), key=_LEVELS.__getitem__, default="normal")
        note = Note(
            priority=level,
            by_assistant=bool(touching) and all(r.by_assistant for r in touching),
        )
        out.append(DigestChange(c, note, held=any(r.state == "digest" for r in touching)))
    return out, rows


def _row_keys(row: ScheduleChange) -> set[tuple[str, str]]:
    keys = {(row.uid, row.recurrence_id)}
    for side in (row.before, row.after):
        if side:
            keys.add((side["uid"], side.get("recurrence_id", "")))
    return keys


def _open_messages(
    session: Session,
    uow: UnitOfWork,
    pair: Pair,
    now: datetime,
    settings: Settings,
    working_minutes: Any,
) -> list[OpenMessage]:
    """The assistant's messages of the lookback the manager has left open past the SLA."""
    since = now - timedelta(days=settings.latency.lookback_days)
    with fed_index(session, uow, pair, now) as kept:
        waiting = kept.waiting_for_manager(since, now, working_minutes)
    return [
        OpenMessage(
            r.subject, r.sent_at, r.waiting_working_minutes or 0.0, r.waiting_minutes or 0.0
        )
        for r in waiting
        if (r.waiting_working_minutes or 0.0) >= pair.sla_minutes
    ]


def _tasks(session: Session, pair: Pair, now: datetime, until: datetime) -> list[TaskLine]:
    """Open tasks' lines (or their placed checkpoint slots) from ``now`` to ``until``."""
    rows = session.execute(
        select(Checkpoint, DelegatedTask)
        .join(DelegatedTask, DelegatedTask.id == Checkpoint.task_id)
        .where(
            DelegatedTask.pair_id == pair.id,
            DelegatedTask.state.in_(OPEN_STATES),
            Checkpoint.state.not_in(GONE_CHECKPOINT_STATES),
            or_(
                (Checkpoint.line_at >= now) & (Checkpoint.line_at < until),
                (Checkpoint.start_at >= now) & (Checkpoint.start_at < until),
            ),
        )
        .order_by(Checkpoint.line_at, Checkpoint.id)
    )
    return [
        TaskLine(
            task_id=t.id,
            title=t.title,
            delegate=t.delegate,
            kind=c.kind,
            line_at=c.line_at,
            slot_start=c.start_at,
            slot_end=c.end_at,
        )
        for c, t in rows
    ]


# -------------------------------------------------------------------------- helpers


def _queued(session: Session, keys: list[str]) -> bool:
    found = session.scalars(
        select(OutboxEntry.id).where(OutboxEntry.idempotency_key.in_(keys)).limit(1)
    ).first()
    return found is not None
