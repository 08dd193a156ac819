"""The assistant's daily digest: when it is due and what it says (pure: no I/O, no clock).

The digest goes at the pair's ``digest_time`` ("HH:MM") on the assistant's local clock
(the manager's when the assistant has no zone of their own). ``last_slot``/``next_slot``
turn that wall-clock time into instants day by day, so a DST change moves the instant,
never the local time: 08:00 stays 08:00 on the 23- and 25-hour days. A local time the
spring gap skips is read as zoneinfo reads it (``fold=0``: shifted forward by the gap);
one the autumn fold repeats is the first of the two, and a day has one digest either way.

"Today" and "tomorrow" are the digest's local dates; each is shown as the manager's day
(local midnight to midnight in the manager's zone, 23 or 25 hours on a DST day), with the
times in the manager's zone and, when it differs, the assistant's beside them, as the
change notifications do. Private events are busy time only unless the manager allows
details (``assistant.domain.privacy`` decides, for the text, the HTML and the JSON alike); our
own checkpoint events are marked as such. Every section is rendered, an
empty one saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup

from assistant.domain import privacy, timefmt
from assistant.domain.account_health import AccountTrouble, describe
from assistant.domain.changes import Change
from assistant.domain.conflicts import Conflict
from assistant.domain.model import EventData, EventStatus, Response
from assistant.domain.notify import (
    Audience,
    Note,
    RenderedMessage,
    annotate_item,
    change_item,
    template_env,
)
from assistant.domain.text import one_line
from assistant.domain.worktime import WorkingHours

WORDS = {
    "en": {
        "red_line": "Red Line",
        "dead_line": "Dead Line",
        "all_day": "all day",
        "minutes": "{m} min",
        "hours": "{h} h {m} min",
        "overlap": "{a} overlaps {b}",
        "travel": "only {gap} min to get from {pa} ({a}) to {pb} ({b})",
    },
    "ru": {
        "red_line": "Красная линия",
        "dead_line": "Мёртвая линия",
        "all_day": "весь день",
        "minutes": "{m} мин",
        "hours": "{h} ч {m} мин",
        "overlap": "«{a}» пересекается с «{b}»",
        "travel": "на дорогу из «{pa}» ({a}) в «{pb}» ({b}) только {gap} мин",
    },
}


# ------------------------------------------------------------------------------ when


def parse_clock(text: str) -> time | None:
    """``"08:00"`` → 08:00; ``""`` (digest off) → None."""
    text = text.strip()
    if not text:
        return None
    return time.fromisoformat(text)


def slot_on(day: date, at: time, zone: str) -> datetime:
    """The instant (UTC) of local ``at`` on ``day`` in ``zone``."""
    return datetime.combine(day, at, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def last_slot(digest_time: str, zone: str, now: datetime) -> datetime | None:
    """The latest digest instant at or before ``now`` (UTC), or None when the digest is off."""
    at = parse_clock(digest_time)
    if at is None:
        return None
    today = now.astimezone(ZoneInfo(zone)).date()
    for back in range(0, 3):
        t = slot_on(today - timedelta(days=back), at, zone)
        if t <= now:  # both aware: compared as instants
            return t
    raise AssertionError("a day always has a digest instant")  # pragma: no cover


def next_slot(digest_time: str, zone: str, now: datetime) -> datetime | None:
    """The first digest instant strictly after ``now`` (UTC), or None when the digest is off."""
    at = parse_clock(digest_time)
    if at is None:
        return None
    today = now.astimezone(ZoneInfo(zone)).date()
    for ahead in range(0, 3):
        t = slot_on(today + timedelta(days=ahead), at, zone)
        if t > now:
            return t
    raise AssertionError("a day always has a digest instant")  # pragma: no cover


def day_bounds(day: date, zone: str) -> tuple[datetime, datetime]:
    """Local midnight to the next local midnight in ``zone``, as UTC instants."""
    tz = ZoneInfo(zone)
    start = datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=tz).astimezone(UTC)
    return start, end


def working_days_end(hours: WorkingHours, now: datetime, days: int = 2) -> datetime:
    """The end (next local midnight) of the ``days``-th working day that still has working
    time at or after ``now``; a week with no working time gives ``now + days`` days."""
    tz = hours.tz
    seen: list[date] = []
    for start, _ in hours.intervals(now, now + timedelta(days=31)):
        d = start.astimezone(tz).date()
        if d not in seen:
            seen.append(d)
        if len(seen) == days:
            return day_bounds(d, hours.zone)[1]
    return now + timedelta(days=days)


def on_day(event: EventData, day: date, zone: str) -> bool:
    """Whether ``event`` takes place (in part) on the manager's local ``day``."""
    if event.all_day and event.start_date is not None:
        last = event.end_date or event.start_date + timedelta(days=1)
        return event.start_date <= day < last
    lo, hi = day_bounds(day, zone)
    return event.end > lo and event.start < hi


# ------------------------------------------------------------------------- content


@dataclass(frozen=True, slots=True)
class OpenMessage:
    """An assistant → manager message still unanswered past the SLA."""

    subject: str
    sent_at: datetime
    waited_working_minutes: float
    waited_minutes: float


@dataclass(frozen=True, slots=True)
class TaskLine:
    """A delegated task's Red Line or Dead Line that falls soon."""

    task_id: int
    title: str
    delegate: str
    kind: str  # red_line | dead_line
    line_at: datetime
    slot_start: datetime | None = None
    slot_end: datetime | None = None


@dataclass(frozen=True, slots=True)
class DigestChange:
    change: Change
    note: Note
    held: bool  # held for the digest: the assistant has not been told yet


@dataclass(frozen=True)
class DigestContent:
    """Everything one digest says, gathered by ``assistant.services.digest``."""

    today: date
    events: Sequence[EventData]  # the calendar around today and tomorrow
    changes: Sequence[DigestChange] = ()
    conflicts: Sequence[Conflict] = ()
    open_messages: Sequence[OpenMessage] = ()
    tasks: Sequence[TaskLine] = ()
    since: datetime | None = None
    sla_minutes: int = 30
    tasks_until: datetime | None = None
    accounts: Sequence[AccountTrouble] = ()  # calendars and mailboxes that do not sync
    days: tuple[date, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "days", (self.today, self.today + timedelta(days=1)))

    def agenda(self, zone: str) -> list[tuple[date, list[EventData]]]:
        """Today's and tomorrow's events (not cancelled), by start."""
        shown = [e for e in self.events if e.status is not EventStatus.CANCELLED]
        shown.sort(key=lambda e: (not e.all_day, e.start, e.end, e.uid, e.recurrence_id))
        return [(d, [e for e in shown if on_day(e, d, zone)]) for d in self.days]

    def counts(self, zone: str) -> dict[str, int]:
        agenda = self.agenda(zone)
        return {
            "today": len(agenda[0][1]),
            "tomorrow": len(agenda[1][1]),
            "changes": len(self.changes),
            "conflicts": len(self.conflicts),
            "overdue": len(self.open_messages),
            "tasks": len(self.tasks),
        }


def day_conflicts(
    events: Iterable[EventData],
    days: Sequence[date],
    zone: str,
    find: Callable[[list[EventData], list[EventData]], list[Conflict]],
) -> list[Conflict]:
    """Conflicts among the events of ``days``: ``find(changed, calendar)`` is
    ``assistant.domain.conflicts.find_conflicts`` with the pair's buffer and manager bound."""
    calendar = list(events)
    mine = [e for e in calendar if any(on_day(e, d, zone) for d in days)]
    found = find(mine, calendar)
    # one line per pair of events, whichever of the two the search started from
    seen: set[frozenset[tuple[str, str]]] = set()
    out = []
    for c in found:
        pair = frozenset({c.event.key, c.other.key})
        if pair not in seen:
            seen.add(pair)
            out.append(c)
    out.sort(key=lambda c: min(c.event.start, c.other.start))
    return out


# ------------------------------------------------------------------------ rendering


def _hidden(event: EventData, aud: Audience) -> bool:
    return privacy.hides(event.private, aud.share_private_details)


def _title(event: EventData, aud: Audience, lg: str) -> str:
    return privacy.title(event.summary, event.private, aud.share_private_details, lg, "—")


def _declined(event: EventData, aud: Audience) -> bool:
    return any(
        a.email.lower() in aud.manager_emails and a.response is Response.DECLINED
        for a in event.attendees
    )


def _clock_span(event: EventData, day: date, zone: str, lg: str) -> str:
    """``10:00–11:00`` on ``day``; ``…`` where the event runs over from or into another day."""
    if event.all_day:
        return WORDS[lg]["all_day"]
    tz = ZoneInfo(zone)
    s, e = event.start.astimezone(tz), event.end.astimezone(tz)
    left = f"{s:%H:%M}" if s.date() == day else "…"
    ends_today = e.date() == day or (e.date() == day + timedelta(days=1) and e.time() == time())
    right = f"{e:%H:%M}" if ends_today else "…"
    return f"{left}–{right}"


def _agenda_line(event: EventData, day: date, aud: Audience, lg: str) -> dict[str, Any]:
    hidden = _hidden(event, aud)
    local = ""
    if not event.all_day and aud.assistant_zone and aud.assistant_zone != aud.manager_zone:
        local = timefmt.span(event.start, event.end, aud.assistant_zone, lg)
    return {
        "when": _clock_span(event, day, aud.manager_zone, lg),
        "when_local": local,
        "title": _title(event, aud, lg),
        "place": privacy.place(event, aud.share_private_details),
        "private": hidden,
        "checkpoint": event.is_ours,
        "free": not event.busy,
        "tentative": event.status is EventStatus.TENTATIVE,
        "declined": _declined(event, aud),
    }


def _event_when(event: EventData, zone: str, lg: str) -> str:
    if event.all_day and event.start_date and event.end_date:
        return timefmt.date_span(event.start_date, event.end_date, lg)
    return timefmt.span(event.start, event.end, zone, lg)


def _conflict_line(c: Conflict, aud: Audience, lg: str) -> str:
    first, second = sorted((c.event, c.other), key=lambda e: (e.start, e.end))
    a = f"{_title(first, aud, lg)}, {_event_when(first, aud.manager_zone, lg)}"
    b = f"{_title(second, aud, lg)}, {_event_when(second, aud.manager_zone, lg)}"
    if c.kind == "overlap":
        return WORDS[lg]["overlap"].format(a=a, b=b)
    return WORDS[lg]["travel"].format(
        gap=round(c.gap_minutes or 0),
        a=a,
        b=b,
        pa=privacy.place(first, aud.share_private_details) or "…",
        pb=privacy.place(second, aud.share_private_details) or "…",
    )


def duration(minutes: float, lg: str) -> str:
    m = round(minutes)
    if m < 60:
        return WORDS[lg]["minutes"].format(m=m)
    return WORDS[lg]["hours"].format(h=m // 60, m=m % 60)


def _moment(t: datetime, zone: str, lg: str) -> str:
    local = t.astimezone(ZoneInfo(zone))
    return f"{timefmt.day(local.date(), lg)} {local:%H:%M}"


def context(content: DigestContent, aud: Audience) -> dict[str, Any]:
    """The plain values the digest templates render."""
    lg = timefmt.lang(aud.locale)
    zone = aud.manager_zone
    days = []
    for n, (d, events) in enumerate(content.agenda(zone)):
        days.append(
            {
                "today": n == 0,
                "day": timefmt.day(d, lg),
                "events": [_agenda_line(e, d, aud, lg) for e in events],
            }
        )
    changes = []
    for dc in content.changes:
        item = change_item(dc.change, aud, lg)
        annotate_item(item, dc.note, aud, lg)
        changes.append({"item": item, "held": dc.held})
    tasks = [
        {
            "label": WORDS[lg][t.kind],
            "title": one_line(t.title),
            "delegate": one_line(t.delegate),
            "line": _moment(t.line_at, zone, lg),
            "slot": (
                timefmt.span(t.slot_start, t.slot_end, zone, lg)
                if t.slot_start is not None and t.slot_end is not None
                else ""
            ),
        }
        for t in content.tasks
    ]
    overdue = [
        {
            "subject": one_line(m.subject) or "—",
            "sent": _moment(m.sent_at, zone, lg),
            "waited": duration(m.waited_working_minutes, lg),
        }
        for m in content.open_messages
    ]
    return {
        "manager": aud.manager_name,
        "zone": timefmt.zone_label(zone),
        "date": timefmt.day(content.today, lg),
        "days": days,
        "changes": changes,
        "since": _moment(content.since, zone, lg) if content.since else "",
        "conflicts": [_conflict_line(c, aud, lg) for c in content.conflicts],
        "overdue": overdue,
        "sla": content.sla_minutes,
        "tasks": tasks,
        "counts": content.counts(zone),
        "accounts": [_trouble_line(a, lg) for a in content.accounts],
    }


@dataclass(frozen=True)
class DigestSection:
    """One manager's part of an assistant's digest: what the pair's digest gathered, and
    how that manager's calendar is shown (zone, privacy, names)."""

    content: DigestContent
    audience: Audience
    pair_id: int = 0


@dataclass(frozen=True)
class ExtraSection:
    """A part of the digest about the assistant's service as a whole rather than one
    manager's day (e.g. accounts that need attention): a heading and its lines, shown after
    the managers' parts; ``empty`` is said when there are no lines."""

    title: str
    lines: tuple[str, ...] = ()
    empty: str = ""


def _trouble_line(a: AccountTrouble, lg: str) -> dict[str, Any]:
    what, fix = describe(a.failure, lg)
    return {"account": one_line(a.account), "provider": a.provider, "what": what, "fix": fix,
            "since": a.since, "parked": a.parked}  # fmt: skip


def render_digest(content: DigestContent, aud: Audience) -> RenderedMessage:
    """One pair's digest (an assistant of one manager)."""
    return render_assistant_digest([DigestSection(content, aud)], aud.locale)


def render_assistant_digest(
    sections: Sequence[DigestSection], locale: str, extras: Sequence[ExtraSection] = ()
) -> RenderedMessage:
    """An assistant's one digest: a part per manager (the first section's date heads it),
    then ``extras``. With one manager it reads as that pair's digest always has."""
    if not sections:
        raise ValueError("a digest needs at least one manager's section")
    lg = timefmt.lang(locale)
    env = template_env()
    parts = []
    for sec in sections:
        aud = replace(sec.audience, locale=locale)  # one message, one language
        ctx = context(sec.content, aud)
        body = {
            kind: env.get_template(f"digest/section.{lg}.{kind}.j2").render(ctx)
            for kind in ("txt", "html")
        }
        label = aud.manager_name or ", ".join(sorted(aud.manager_emails)) or "—"
        parts.append((ctx, label, body))
    first = parts[0][0]

    def main(kind: str) -> dict[str, Any]:
        def body(text: str) -> Any:
            # the section's HTML comes from an autoescaping template: escaped already
            return Markup(text) if kind == "html" else text  # noqa: S704

        return first | {
            "sections": [
                {
                    "manager": label,
                    "zone": ctx["zone"],
                    "counts": ctx["counts"],
                    "body": body(b[kind]),
                }
                for ctx, label, b in parts
            ],
            "names": ", ".join(label for _, label, _ in parts),
            "extras": [
                {"title": x.title, "lines": list(x.lines), "empty": x.empty} for x in extras
            ],
        }

    subject = one_line(env.get_template(f"digest/digest.{lg}.subject.j2").render(main("txt")))
    text = env.get_template(f"digest/digest.{lg}.txt.j2").render(main("txt"))
    html = env.get_template(f"digest/digest.{lg}.html.j2").render(main("html"))
    return RenderedMessage(subject=subject, text=text, html=html)


def structured(content: DigestContent, aud: Audience) -> dict[str, Any]:
    """A machine-readable digest (webhook payload, ``--json``): private events as busy only."""
    zone = aud.manager_zone

    def event(e: EventData) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "uid": e.uid, "recurrence_id": e.recurrence_id,
            "start": e.start.isoformat(), "end": e.end.isoformat(), "all_day": e.all_day,
            "busy": e.busy, "private": e.private, "checkpoint": e.is_ours,
        }  # fmt: skip
        if not _hidden(e, aud):
            seen = privacy.visible(e, aud.share_private_details)
            shown |= {"summary": seen.summary, "location": seen.location}
        return shown

    return {
        "date": content.today.isoformat(),
        "since": content.since.isoformat() if content.since else None,
        "tasks_until": content.tasks_until.isoformat() if content.tasks_until else None,
        "counts": content.counts(zone),
        "agenda": {d.isoformat(): [event(e) for e in es] for d, es in content.agenda(zone)},
        "changes": [
            {
                "kind": dc.change.kind.value,
                "event": event(dc.change.event),
                "held": dc.held,
                "priority": dc.note.priority,
            }
            for dc in content.changes
        ],
        "conflicts": [
            {
                "kind": c.kind,
                "events": [event(c.event), event(c.other)],
                "gap_minutes": c.gap_minutes,
            }
            for c in content.conflicts
        ],
        "overdue": [
            {
                "subject": m.subject,
                "sent_at": m.sent_at.isoformat(),
                "waited_working_minutes": round(m.waited_working_minutes, 1),
            }
            for m in content.open_messages
        ],
        "tasks": [
            {
                "task_id": t.task_id,
                "title": t.title,
                "kind": t.kind,
                "line_at": t.line_at.isoformat(),
                "delegate": t.delegate,
            }
            for t in content.tasks
        ],
        "unhealthy_accounts": [
            {
                "account": a.account,
                "provider": a.provider,
                "failure": a.failure.value,
                "since": a.since,
                "parked": a.parked,
            }
            for a in content.accounts
        ],
    }


def structured_digest(sections: Sequence[DigestSection]) -> dict[str, Any]:
    """The machine-readable form of an assistant's digest: one manager's is ``structured``
    as it always was; several are ``{"date", "sections": [{"pair_id", "manager", ...}]}``."""
    if len(sections) == 1:
        return structured(sections[0].content, sections[0].audience)
    return {
        "date": sections[0].content.today.isoformat(),
        "sections": [
            {
                "pair_id": sec.pair_id,
                "manager": sec.audience.manager_name,
                "manager_emails": sorted(sec.audience.manager_emails),
                **structured(sec.content, sec.audience),
            }
            for sec in sections
        ],
    }
