"""EWS calendar items → our events, and recurring series expanded locally.

``event_from_item`` maps one calendar item (a single, a series master, an occurrence or
an exception) to ``EventData``; a few helpers convert times and zones both ways.

``expand_series`` expands a series master: the pattern (daily, weekly, absolute and
relative monthly and yearly; "day 31" falls on the last day of shorter months, as in
Exchange) and its boundary (no end, end date, number of occurrences, deleted ones
counted) become a dateutil ``rrule`` over the wall-clock time of the master's
``StartTimeZone`` (a Windows zone, mapped to its IANA zone by exchangelib), and each
occurrence is converted to UTC on its own date, so a 9:00 meeting stays at 9:00 across
DST. Deleted occurrences are left out, modified ones are the exceptions to read by id,
the others are the master's event at their own start (``occurrence``; timed: the
master's duration; all-day: the master's number of days, midnight to midnight in the
zone). This is cheaper than the alternatives: a ``CalendarView`` lists every occurrence
of every series (capped at 1,000 a view, and UIDs need a ``GetItem`` per 100
occurrences), and ``OccurrenceItemId`` (master id + instance index) costs a ``GetItem``
entry per occurrence and still needs the expansion to know which indexes fall in the
window.

The expansion is checked against what the server says of the series before it is
trusted: the original start of ``FirstOccurrence`` (everything expanded before it
deleted), of ``LastOccurrence`` (for a bounded series, everything after it deleted),
of every modified occurrence and every deleted one must be occurrences we expanded. A
series that fails a check, has a pattern we do not know, or a zone exchangelib cannot
map (a custom time zone definition) gets ``None``: ``connectors.ews.calendar`` has the
server expand it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil import rrule
from exchangelib import (
    EWSDateTime,
    EWSTimeZone,
    HTMLBody,
)
from exchangelib import errors as ews_errors

from assistant.domain.model import Attendee, EventData, EventStatus, Response
from connectors.base import (
    Window,
)
from connectors.ews.account import EWS_UTC, MARKER

NEAR = timedelta(days=1)  # slack around the window when judging by SyncFolderItems' start/end
EXPANSION_LIMIT = 20_000  # occurrences expanded for one series before giving up on it
RESPONSES = {
    "Accept": Response.ACCEPTED,
    "Decline": Response.DECLINED,
    "Tentative": Response.TENTATIVE,
    "Organizer": Response.ACCEPTED,
}
MEETING_URL = re.compile(
    r"https://(?:[\w.-]+\.)?(?:teams\.microsoft\.com|zoom\.us|webex\.com|meet\.google\.com)"
    r"/[^\s<>\"')]*",
    re.IGNORECASE,
)


# ------------------------------------------------------------------------ mapping


def event_from_item(item: Any, href: str, zone_name: str) -> EventData:
    """One exchangelib CalendarItem (single, occurrence or exception) as EventData."""
    zone = zoneinfo_for(zone_name)
    tz = item._start_timezone
    tz_name = str(getattr(tz, "key", "") or "") if tz is not None else ""
    start_date: date | None = None
    end_date: date | None = None
    if item.is_all_day and not isinstance(item.start, datetime):
        start_date = date(item.start.year, item.start.month, item.start.day)
        last = item.end if item.end is not None else item.start
        end_date = date(last.year, last.month, last.day) + timedelta(days=1)
        start = datetime.combine(start_date, time(), zone).astimezone(UTC)
        end = datetime.combine(end_date, time(), zone).astimezone(UTC)
    else:
        start, end = as_utc(item.start), as_utc(item.end)
    recurrence_id = ""
    if item.type in ("Occurrence", "Exception"):
        original = item.recurrence_id or item.original_start
        if original is None:
            raise ValueError("an occurrence without RecurrenceId")
        if start_date is not None:
            local = as_utc(original).astimezone(zoneinfo_for(tz_name or zone_name))
            recurrence_id = f"{local:%Y%m%d}"
        else:
            recurrence_id = f"{as_utc(original):%Y%m%dT%H%M%SZ}"
    description = _text(item.body)
    location = str(item.location or "")
    attendees = tuple(
        _attendee(a, required)
        for required, group in ((True, item.required_attendees), (False, item.optional_attendees))
        for a in group or ()
        if a.mailbox is not None and a.mailbox.email_address
    )
    meeting = MEETING_URL.search(f"{location}\n{description}")
    return EventData(
        uid=str(item.uid or item.id),
        start=start,
        end=end,
        recurrence_id=recurrence_id,
        summary=str(item.subject or ""),
        timezone=tz_name,
        all_day=start_date is not None,
        start_date=start_date,
        end_date=end_date,
        status=EventStatus.CANCELLED if item.is_cancelled else EventStatus.CONFIRMED,
        location=location,
        description=description,
        organizer=str(item.organizer.email_address or "").lower() if item.organizer else "",
        attendees=attendees,
        busy=item.legacy_free_busy_status not in ("Free", "WorkingElsewhere"),
        private=item.sensitivity in ("Private", "Confidential"),
        online_meeting_url=meeting.group(0) if meeting else "",
        categories=tuple(str(c) for c in item.categories or ()),
        own_marker=str(getattr(item, MARKER, None) or ""),
        modified_by=str(item.last_modified_name or ""),
        href=href,
    )


# ---------------------------------------------------------------- series expansion


@dataclass(frozen=True, slots=True)
class Expansion:
    """A master's occurrences in the window: plain ones (original, start, end in UTC),
    and the (id, change key) of its exceptions near the window, to read in full."""

    occurrences: list[tuple[datetime, datetime, datetime]]
    exceptions: list[tuple[str, str]]


_WEEKDAYS = (rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA, rrule.SU)
# exchangelib's DaysOfWeek: 1-7 Monday to Sunday, 8 Day, 9 Weekday, 10 WeekendDay
_DAY_SETS = {8: _WEEKDAYS, 9: _WEEKDAYS[:5], 10: _WEEKDAYS[5:]}


def expand_series(master: Any, window: Window) -> Expansion | None:
    """Expand a recurring master over the window; None when we cannot vouch for it."""
    recurrence = master.recurrence
    zone = master._start_timezone
    if recurrence is None or recurrence.boundary is None or zone is None:
        return None
    end_key = getattr(master._end_timezone, "key", zone.key)
    tz, end_tz = zoneinfo_for(zone.key), zoneinfo_for(end_key)
    if tz.key != zone.key or master.start is None or master.end is None:
        return None  # a zone ZoneInfo does not know: let the server expand it
    all_day = bool(master.is_all_day) and not isinstance(master.start, datetime)
    if all_day:
        first = datetime.combine(master.start, time())
        days = timedelta(days=(master.end - master.start).days + 1)  # end is inclusive here
    else:
        first = as_utc(master.start).astimezone(tz).replace(tzinfo=None)
        duration = as_utc(master.end) - as_utc(master.start)
    boundary = recurrence.boundary
    start_date = _date_of(boundary.start)
    rule = recurrence_rule(recurrence.pattern, boundary, datetime.combine(start_date, first.time()))
    if rule is None:
        return None
    modified = {as_utc(o.original_start): o for o in master.modified_occurrences or ()}
    deleted = {as_utc(o.start) for o in master.deleted_occurrences or ()}
    known = [*modified, *deleted]
    first = master.first_occurrence
    if first is not None and first.original_start is not None:
        known.append(as_utc(first.original_start))
    horizon = max([window.end, *known]) + NEAR
    originals: list[datetime] = []
    exhausted = True  # the whole series expanded (then its last occurrence is checked)
    for local in rule:
        original = local.replace(tzinfo=tz).astimezone(UTC)
        if original > horizon:
            exhausted = False
            break
        originals.append(original)
        if len(originals) > EXPANSION_LIMIT:
            return None
    if not set(known) <= set(originals) or not _ends_agree(master, originals, deleted, exhausted):
        return None
    occurrences = []
    for original in originals:
        if original in deleted or original in modified:
            continue
        if all_day:
            local_day = original.astimezone(tz).date()
            start = datetime.combine(local_day, time(), tz).astimezone(UTC)
            end = datetime.combine(local_day + days, time(), end_tz).astimezone(UTC)
        else:
            start, end = original, original + duration
        if start < window.end + NEAR and end > window.start - NEAR:
            occurrences.append((original, start, end))
    exceptions = [
        (str(o.id), str(o.changekey or ""))
        for o in modified.values()
        if o.start is None or o.end is None
        or (as_utc(o.start) < window.end + NEAR and as_utc(o.end) > window.start - NEAR)
    ]  # fmt: skip
    return Expansion(occurrences, exceptions)


def _ends_agree(master: Any, originals: list[datetime], deleted: set[datetime],
                exhausted: bool) -> bool:  # fmt: skip
    """The server's first occurrence is our first (not deleted), and its last is our last
    when the whole series was expanded (one that ends before the horizon)."""
    first = master.first_occurrence
    if first is None or first.original_start is None or not originals:
        return False  # nothing to check the expansion against
    kept = [o for o in originals if o not in deleted]
    if not kept or kept[0] != as_utc(first.original_start):
        return False
    last = master.last_occurrence
    if last is not None and last.original_start is not None:
        original = as_utc(last.original_start)
        return kept[-1] == original if exhausted else original > originals[-1]
    return True


def recurrence_rule(pattern: Any, boundary: Any, start: datetime) -> rrule.rrule | None:
    """The dateutil rule (naive wall-clock times) of an EWS recurrence pattern."""
    kind = type(pattern).__name__
    options: dict[str, Any] = {"dtstart": start, "interval": getattr(pattern, "interval", 1)}
    freq: Any
    if kind == "DailyPattern":
        freq = rrule.DAILY
    elif kind == "WeeklyPattern":
        freq = rrule.WEEKLY
        days = pattern.weekdays if isinstance(pattern.weekdays, list) else [pattern.weekdays]
        options["byweekday"] = [_WEEKDAYS[int(d) - 1] for d in days]
        options["wkst"] = int(pattern.first_day_of_week or 1) - 1
    elif kind in ("AbsoluteMonthlyPattern", "AbsoluteYearlyPattern"):
        freq = rrule.MONTHLY if kind == "AbsoluteMonthlyPattern" else rrule.YEARLY
        day = int(pattern.day_of_month)
        # day 31 of a 30-day month is its day 30 in Exchange (RFC 5545 would skip it)
        options["bymonthday"] = list(range(min(day, 28), day + 1))
        options["bysetpos"] = -1
    elif kind in ("RelativeMonthlyPattern", "RelativeYearlyPattern"):
        freq = rrule.MONTHLY if kind == "RelativeMonthlyPattern" else rrule.YEARLY
        weekday = int(pattern.weekday)
        options["byweekday"] = list(_DAY_SETS[weekday] if weekday in _DAY_SETS
                                    else (_WEEKDAYS[weekday - 1],))  # fmt: skip
        week = int(pattern.week_number)
        options["bysetpos"] = -1 if week == 5 else week
    else:
        return None  # regeneration patterns belong to tasks
    if freq == rrule.YEARLY:
        options["bymonth"] = int(pattern.month)
        options["interval"] = 1
    name = type(boundary).__name__
    if name == "NumberedPattern":
        options["count"] = int(boundary.number)
    elif name == "EndDatePattern":
        options["until"] = datetime.combine(_date_of(boundary.end), time(23, 59, 59))
    elif name != "NoEndPattern":
        return None
    return rrule.rrule(freq, **options)


def occurrence(
    base: EventData, original: datetime, start: datetime, end: datetime, zone_name: str
) -> EventData:
    """An occurrence of a series that was not modified: the master's event at its time,
    mapped as ``event_from_item`` maps an occurrence that GetItem returns."""
    if not base.all_day:
        return replace(base, start=start, end=end,
                       recurrence_id=f"{original:%Y%m%dT%H%M%SZ}")  # fmt: skip
    tz = zoneinfo_for(base.timezone or zone_name)
    zone = zoneinfo_for(zone_name)
    start_date = start.astimezone(tz).date()
    end_date = (end - timedelta(days=1)).astimezone(tz).date() + timedelta(days=1)
    return replace(
        base,
        start=datetime.combine(start_date, time(), zone).astimezone(UTC),
        end=datetime.combine(end_date, time(), zone).astimezone(UTC),
        start_date=start_date,
        end_date=end_date,
        recurrence_id=f"{original.astimezone(tz):%Y%m%d}",
    )


def _date_of(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    return date(value.year, value.month, value.day)


def maybe_utc(value: Any) -> datetime | None:
    return as_utc(value) if isinstance(value, datetime) else None


def _attendee(value: Any, required: bool) -> Attendee:
    return Attendee(
        email=str(value.mailbox.email_address).lower(),
        name=str(value.mailbox.name or ""),
        response=RESPONSES.get(str(value.response_type), Response.NEEDS_ACTION),
        required=required,
    )


def _text(body: Any) -> str:
    if not body:
        return ""
    text = str(body)
    if isinstance(body, HTMLBody) or text.lstrip().lower().startswith(("<html", "<!doctype")):
        from lxml import html

        try:
            text = str(html.fromstring(text).text_content())
        except (ValueError, TypeError):
            text = re.sub(r"<[^>]+>", " ", text)
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(line for line in lines if line).strip()


def overlaps(event: EventData, window: Window) -> bool:
    if event.start == event.end:
        return window.start <= event.start < window.end
    return event.start < window.end and event.end > window.start


def as_utc(value: Any) -> datetime:
    if value is None:
        raise ValueError("a calendar item without start or end")
    return datetime.fromtimestamp(value.timestamp(), tz=UTC)


def ews_time(value: datetime, zone: Any) -> Any:
    utc = value.astimezone(UTC)
    return EWSDateTime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second,
                       tzinfo=EWS_UTC).astimezone(zone)  # fmt: skip


def ews_zone(name: str) -> Any:
    try:
        return EWSTimeZone(name or "UTC")
    except (ews_errors.UnknownTimeZone, ValueError, KeyError):
        return EWS_UTC


def zoneinfo_for(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ValueError, KeyError):
        return ZoneInfo("UTC")
