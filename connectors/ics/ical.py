"""iCalendar in and out: parse calendar objects into expanded occurrences, write ours.

Shared by the ICS feed and CalDAV connectors (and any provider that can hand us
iCalendar text). Parsing handles recurring series (RRULE, RDATE, EXDATE), moved and
cancelled occurrences (RECURRENCE-ID overrides, with or without a master), floating
times, all-day dates, X-WR-TIMEZONE calendars and Windows zone names from Exchange
and Outlook (mapped to IANA names; the VTIMEZONE definitions give the offsets).
One event becomes ``EventData`` in ``connectors.ics.ical_event``; lone single events take the
fast path of ``connectors.ics.ical_fast``. A CalDAV object and a feed are read the same way,
series by series (``_read_series``), so the same text gives the same events on every path;
what cannot be read is left out by the property, not by the series
(``connectors.ics.ical_repair``), and said in a note.

Everything read is bounded by ``connectors.base.ParseLimits`` while it is read: the text
by ``connectors.ics.ical_scan`` (long texts cut and marked, events per calendar, lines per
event, nesting), each series by a lazy walk of its rule that stops at the cap (a series
too frequent to expand is kept as one flagged item), a calendar by a time budget. What
went beyond a limit is returned as notes and problems, which the sync reports.
"""

from __future__ import annotations

import calendar
import hashlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

import icalendar
import recurring_ical_events
import x_wr_timezone
from dateutil.rrule import DAILY, MINUTELY, SECONDLY, WEEKLY, rrule, rruleset
from recurring_ical_events import ComponentsWithName, EventAdapter

from assistant.domain.model import OWN_EVENT_PROPERTY, EventData
from connectors.base import (
    DEFAULT_LIMITS,
    TOO_FREQUENT,
    CalendarResource,
    InvalidData,
    OwnEvent,
    ParseLimits,
    Window,
)
from connectors.ics.ical_event import (
    event_from_component,
    synthetic_uid,
    text_value,
    zoneinfo_for,
)
from connectors.ics.ical_fast import fast_single, plain_date
from connectors.ics.ical_repair import repair
from connectors.ics.ical_scan import (
    CalendarParts,
    bound_calendar,
    event_uid,
    is_override,
    renamed,
    sequence,
    split_calendar,
    zones_named,
)
from connectors.ics.ical_series import fast_series

PRODID = "-//exec-assistant//checkpoints//EN"

# ---------------------------------------------------------------------------- parse


class NotICalendar(InvalidData):
    """The text is not iCalendar (icalendar cannot parse it)."""

    def __init__(self, source: str, why: str) -> None:
        super().__init__(f"{source}: not valid iCalendar ({why})")
        self.reason = why


def parse_resource(
    href: str,
    etag: str,
    text: str | bytes,
    window: Window,
    *,
    fast: bool = True,
    limits: ParseLimits = DEFAULT_LIMITS,
    clock: Callable[[], float] = time.monotonic,
) -> CalendarResource:
    """One calendar object resource (usually one series) → its occurrences in ``window``.

    A lone single event (most of a calendar) is read by ``fast_single`` (unless ``fast``
    is false); anything else, or anything that path is not sure of, series by series as
    ``parse_feed`` reads a feed: both give the same events for the same text. ``limits``
    bound what is read (see ``connectors.ics.ical_scan``) and how far a series is
    expanded; what went beyond them, or was left out, is in the resource's ``notes``. A
    resource none of whose series can be read raises ``InvalidData``.
    """
    raw, notes = bound_calendar(text, limits, _shown(href))
    found = fast_single(raw, window, href) if fast else None
    if found is None and fast:
        found = fast_series(raw, window, href, limits, _too_frequent)
    if found is not None:
        return CalendarResource(href=href, etag=etag, events=found, notes=tuple(notes))
    read, said, failed = _read_series(
        raw, window, _shown(href), fast=fast, limits=limits, clock=clock, href=lambda uid: href
    )
    if failed and not read:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise InvalidData(failed[0] + more)
    events = tuple(e for res in read for e in res.events)
    extra = tuple(n for res in read for n in res.notes)
    return CalendarResource(
        href=href, etag=etag, events=events, notes=(*notes, *said, *failed, *extra)
    )


def _resource(
    href: str,
    etag: str,
    raw: bytes,
    window: Window,
    fast: bool,
    limits: ParseLimits,
    name: str = "",
) -> CalendarResource:
    """One series' small calendar → its resource; ``name`` (default ``href``) in notes."""
    name = name or href
    found = fast_single(raw, window, href) if fast else None
    if found is not None:
        return CalendarResource(href=href, etag=etag, events=found)
    cal = _load(raw, name)
    mended = repair(cal, lambda comp: _shown(name))
    if mended and not cal.walk("VEVENT"):  # nothing of the series is left to read
        raise InvalidData("; ".join(mended))
    events, more = _occurrences(cal, window, href, limits, name)
    return CalendarResource(href=href, etag=etag, events=events, notes=(*mended, *more))


def parse_feed(
    text: str | bytes,
    window: Window,
    source: str = "feed",
    *,
    limits: ParseLimits = DEFAULT_LIMITS,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[CalendarResource], list[str]]:
    """A whole calendar (an ICS feed or export) → one resource per UID, and the problems.

    A feed has no hrefs; each UID becomes a resource named ``uid:<UID>`` whose etag is
    a hash of that UID's components, so unchanged series compare equal across fetches.
    A series that cannot be read is left out and described in the second list; the
    rest of the feed still counts. A feed that is not iCalendar at all raises.

    Linear, in one pass: the text is bounded and cut into its parts
    (``connectors.ics.ical_scan``); the calendar without its events is checked once as a
    whole; the VEVENTs are grouped into series (``_series``), and each series is read
    as a small calendar of its own with the header and just the VTIMEZONEs it names (a
    lone single event by the fast path). A series too frequent to expand is kept as one
    item (see ``_occurrences``). Reading for longer than ``limits.parse_seconds`` (by
    ``clock``) stops with ``InvalidData``: a partial calendar is never taken for the whole.
    """
    raw, notes = bound_calendar(text, limits, source)
    read, said, failed = _read_series(
        raw, window, source, fast=True, limits=limits, clock=clock, href=lambda uid: f"uid:{uid}"
    )
    return read, [*notes, *said, *failed]


def _read_series(
    raw: bytes,
    window: Window,
    source: str,
    *,
    fast: bool,
    limits: ParseLimits,
    clock: Callable[[], float],
    href: Callable[[str], str],
) -> tuple[list[CalendarResource], list[str], list[str]]:
    """Bounded calendar bytes → (a resource per series, notes, why series were not read).

    ``href(uid)`` names each series' resource (and its events' ``href``); when the
    resources share one href (a CalDAV object) the notes add the UID where there are
    several series.
    """
    started = clock()
    parts = split_calendar(raw)
    if not parts.events:
        _load(raw, source)  # empty, not iCalendar, or a calendar without events
        return [], [], []
    if parts.skeleton.strip():
        _check_skeleton(parts.skeleton, source)  # what every series shares must be sound
    groups, said = _series(parts, source)
    resources: list[CalendarResource] = []
    failed: list[str] = []
    for done, (uid, blocks) in enumerate(groups):
        if clock() - started > limits.parse_seconds:
            raise InvalidData(
                f"{source}: reading stopped after {limits.parse_seconds:g} s "
                f"({done} of {len(groups)} series read)"
            )
        zones = [parts.zones[z] for z in sorted(zones_named(blocks)) if z in parts.zones]
        mini = b"".join(
            [b"BEGIN:VCALENDAR\r\n", parts.header, *zones, *blocks, b"END:VCALENDAR\r\n"]
        )
        digest = hashlib.sha256(b"".join(blocks)).hexdigest()[:32]
        where = href(uid)
        name = f"{where} (uid:{uid})" if len(groups) > 1 and not where.startswith("uid:") else ""
        try:
            resources.append(_resource(where, digest, mini, window, fast, limits, name))
        except NotICalendar as exc:  # as the whole calendar would have failed to parse
            raise NotICalendar(source, exc.reason) from None
        except InvalidData as exc:
            failed.append(str(exc))
    return resources, said, failed


_SOUND_SKELETONS: dict[bytes, None] = {}  # skeletons that parsed, newest last


def _check_skeleton(skeleton: bytes, source: str) -> None:
    """``_load`` the lines every series of a calendar shares, once per distinct text: a
    server's objects all carry the same few (VERSION, PRODID, CALSCALE)."""
    if skeleton in _SOUND_SKELETONS:
        return
    _load(skeleton, source)
    if len(_SOUND_SKELETONS) >= 256:
        _SOUND_SKELETONS.pop(next(iter(_SOUND_SKELETONS)), None)
    _SOUND_SKELETONS[skeleton] = None


def _series(parts: CalendarParts, source: str) -> tuple[list[tuple[str, list[bytes]]], list[str]]:
    """The VEVENT blocks grouped into series by UID, and notes on what was replaced.

    An event without a UID is given the one ``synthetic_uid`` derives from what it says,
    the same on every path and every sync. Two VEVENTs with the same UID and no
    RECURRENCE-ID are two events (the later ones get ``<UID>#2``, ``#3`` …), except
    where their SEQUENCE says one is a later version of the other: then the latest
    counts (as recurring-ical-events reads them), and a note says so.
    """
    groups: dict[str, list[bytes]] = {}
    for block in parts.events:
        uid = event_uid(block)
        if not uid:
            uid = _synthetic_uid(parts.header, block)
            block = renamed(block, uid)
        groups.setdefault(uid, []).append(block)
    out: list[tuple[str, list[bytes]]] = []
    notes: list[str] = []
    taken = set(groups)
    for uid, blocks in groups.items():
        masters = [i for i, b in enumerate(blocks) if not is_override(b)]
        if len(masters) < 2:
            out.append((uid, blocks))
            continue
        versions = {i: sequence(blocks[i]) for i in masters}
        latest = [i for i in masters if versions[i] == max(versions.values())]
        older = len(masters) - len(latest)
        if older:
            notes.append(
                f"{_shown('uid:' + uid)}: {older} earlier version(s) of the event "
                "(a lower SEQUENCE) replaced by the latest"
            )
        out.append((uid, [b for i, b in enumerate(blocks) if i not in latest[1:]]))
        for n, i in enumerate(latest[1:], 2):
            other = f"{uid}#{n}"
            while other in taken:
                other += "+"
            taken.add(other)
            out.append((other, [renamed(blocks[i], other)]))
    return out, notes


def _synthetic_uid(header: bytes, block: bytes) -> str:
    """The UID ``synthetic_uid`` gives the event as the whole calendar reads it."""
    text = b"".join([b"BEGIN:VCALENDAR\r\n", header, block, b"END:VCALENDAR\r\n"])
    try:
        comps = _load(text, "event").walk("VEVENT")
    except InvalidData:
        comps = []
    return synthetic_uid(comps[0] if comps else icalendar.Event())


def _load(text: str | bytes, source: str) -> icalendar.Calendar:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    if not raw.strip():
        raise InvalidData(f"{source}: empty calendar data")
    try:
        cal = icalendar.Calendar.from_ical(raw)
    except (ValueError, KeyError, IndexError, TypeError, RecursionError) as exc:
        raise NotICalendar(source, _where_not_icalendar(raw) or reason(exc)) from None
    if isinstance(cal, list):  # several VCALENDARs concatenated
        merged = icalendar.Calendar()
        for part in cal:
            for comp in part.subcomponents:
                merged.add_component(comp)
        cal = merged
    if cal.name in ("VEVENT", "VTIMEZONE"):  # a bare component: wrap it
        wrapper = icalendar.Calendar()
        wrapper.add_component(cal)
        cal = wrapper
    if cal.name != "VCALENDAR":
        raise NotICalendar(source, "it holds no VCALENDAR")
    if cal.get("X-WR-TIMEZONE"):
        try:
            cal = x_wr_timezone.to_standard(cal)
        except (ValueError, KeyError, ZoneInfoNotFoundError):
            raise NotICalendar(source, "bad X-WR-TIMEZONE") from None
    return cal


def _where_not_icalendar(raw: bytes) -> str:
    """Where ``raw`` stops being iCalendar, by line number and never by content."""
    lines = raw.splitlines()
    first = next((n for n, line in enumerate(lines, 1) if line.strip()), 0)
    if first and lines[first - 1].strip().upper() != b"BEGIN:VCALENDAR":
        return f"line {first} does not begin a VCALENDAR"
    for number, line in enumerate(lines, 1):
        if line and not line[:1].isspace() and b":" not in line and b";" not in line:
            return f"line {number} is not a content line"
    return ""


def _occurrences(
    cal: icalendar.Calendar, window: Window, href: str, limits: ParseLimits, name: str = ""
) -> tuple[tuple[EventData, ...], tuple[str, ...]]:
    """The occurrences of ``cal``'s series in ``window``, and notes on what was not expanded.

    A series whose rule repeats every minute or second, or that has more than
    ``limits.occurrences_per_series`` occurrences in the window (or takes more than
    ``limits.series_scan_steps`` repetitions to get there), or that can never recur, is
    not expanded: it is kept as ONE item, the series as written, with the category
    ``TOO_FREQUENT``, and a note naming it. The rule is walked lazily and stops at the
    cap, so nothing beyond the cap is ever built.
    """
    name = name or href
    zone = zoneinfo_for(window.zone)
    recurring = {
        text_value(c.get("UID"))
        for c in cal.walk("VEVENT")
        if "RRULE" in c or "RDATE" in c or "RECURRENCE-ID" in c
    }
    kept: list[EventData] = []
    notes: list[str] = []
    try:
        query = recurring_ical_events.of(cal, components=_EVENTS, skip_bad_series=True)
        expand = []
        for series in query.series:
            why = _too_frequent(series, window, zone, limits)
            if not why:
                expand.append(series)
                continue
            notes.append(f"{_shown(name)}: too frequent to expand ({why}); kept as one item")
            core = series.recurrence.core._component
            event = event_from_component(core, zone, href, set())
            kept.append(replace(event, categories=(*event.categories, TOO_FREQUENT)))
        query.series = expand
        found = list(query.between(window.start, window.end))
    except Exception as exc:  # the library raises many kinds on bad input
        raise InvalidData(f"{_shown(name)}: cannot expand recurrences ({reason(exc)})") from None
    seen: set[tuple[str, str]] = {e.key for e in kept}
    for comp in found:
        try:
            event = event_from_component(comp, zone, href, recurring)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InvalidData(f"{_shown(name)}: bad event ({reason(exc)})") from None
        if event.key in seen:
            continue
        seen.add(event.key)
        kept.append(event)
    return tuple(kept), tuple(notes)


class _PlainEvent(EventAdapter):  # type: ignore[misc]
    """recurring-ical-events' event adapter, giving each occurrence as the plain dict of
    properties ``event_from_component`` reads (the library copies the whole component,
    its subcomponents and its values' parameters for each occurrence)."""

    def as_component(
        self, start: Any = None, stop: Any = None, keep_recurrence_attributes: bool = True
    ) -> dict[str, Any]:
        props = dict(self._component)
        props["DTSTART"] = plain_date(self.start if start is None else start)
        props.pop("DURATION", None)
        props["DTEND"] = plain_date(self.end if stop is None else stop)
        if not keep_recurrence_attributes:
            for name in self.ATTRIBUTES_TO_DELETE_ON_COPY:
                props.pop(name, None)
        if "RECURRENCE-ID" not in props:
            props["RECURRENCE-ID"] = plain_date(props["DTSTART"].dt)
        return props


_EVENTS = (ComponentsWithName("VEVENT", _PlainEvent),)
_MARGIN = timedelta(days=2)


def _too_frequent(series: Any, window: Window, zone: tzinfo, limits: ParseLimits) -> str:
    """Why ``series`` is not to be expanded ("" when it may be), walking it lazily."""
    rules = getattr(getattr(series, "recurrence", None), "rrules", None)
    if not rules:
        return ""
    for rule in rules:
        freq = getattr(rule, "_freq", None)
        if freq in (MINUTELY, SECONDLY):
            return "FREQ=" + ("MINUTELY" if freq == MINUTELY else "SECONDLY")
        if isinstance(rule, rrule) and _never(rule):
            return "its rule names no day that exists"
    rule_zone = series.recurrence.tzinfo
    low, high = window.start - _MARGIN, window.end + _MARGIN
    if rule_zone is None:  # floating: wall-clock times in the calendar's zone
        low = low.astimezone(zone).replace(tzinfo=None)
        high = high.astimezone(zone).replace(tzinfo=None)
    cap, steps = limits.occurrences_per_series, limits.series_scan_steps
    inside = 0
    budget = nullcontext() if all(map(_steady, rules)) else _call_budget(steps * CALLS_PER_STEP)
    try:
        with budget:
            for rule in rules:
                for walked, when in enumerate(islice(rule, steps), 1):
                    if when > high:
                        break
                    if when >= low:
                        inside += 1
                        if inside > cap:
                            return f"more than {cap} occurrences in the sync window"
                    if walked == steps:
                        return f"more than {steps} repetitions before the sync window ends"
    except _Spinning:
        return f"its rule finds no occurrence within {steps} repetitions"
    return ""


# dateutil calls this many functions per occurrence it finds (about 20); a rule that
# finds none (BYSETPOS=2 with one candidate per period) calls them without end.
CALLS_PER_STEP = 40


def _steady(rule: Any) -> bool:
    """Whether walking ``rule`` finds an occurrence with every few calls, so that the
    call budget could never stop it: a weekly rule (every week has the days it names),
    a daily one naming no days, the start and RDATEs. Measured: at most 20 calls per
    occurrence, half of ``CALLS_PER_STEP``; anything else walks under the budget."""
    if isinstance(rule, rruleset):
        return not any(getattr(rule, part, True) for part in ("_rrule", "_exrule", "_exdate"))
    if not isinstance(rule, rrule) or getattr(rule, "_bysetpos", True):
        return False
    given = {k for k, v in getattr(rule, "_original_rule", {"?": 1}).items() if v}
    freq = getattr(rule, "_freq", None)
    if freq == WEEKLY:
        return given <= {"byweekday"}
    return freq == DAILY and not given


class _Spinning(Exception):
    """A rule went on past its budget of function calls without getting anywhere."""


@contextmanager
def _call_budget(calls: int) -> Iterator[None]:
    """Raise ``_Spinning`` inside the block once it has made more than ``calls`` calls.

    dateutil only checks UNTIL when it finds an occurrence: a rule that can never
    match would run to the year 9999. Counting calls (a profile hook, this thread
    only) stops it at a bound, whatever the rule.
    """
    made = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal made
        made += 1
        if made > calls:
            raise _Spinning

    previous = sys.getprofile()
    sys.setprofile(count)
    try:
        yield
    finally:
        sys.setprofile(previous)


def _never(rule: Any) -> bool:
    """A rule whose months, days of the month and days of the year exclude each other
    (30 February): dateutil would look for a match until the year 9999.

    Checked against one common and one leap year; weekday and week-number rules are
    left to the per-calendar time budget.
    """
    mdays = {
        *(getattr(rule, "_bymonthday", None) or ()),
        *(getattr(rule, "_bynmonthday", None) or ()),
    }
    ydays = set(getattr(rule, "_byyearday", None) or ())
    if not mdays and not ydays:
        return False
    months = set(getattr(rule, "_bymonth", None) or range(1, 13))
    for year in (2023, 2024):
        length = 366 if calendar.isleap(year) else 365
        for i in range(length):
            day = date(year, 1, 1) + timedelta(days=i)
            if day.month not in months:
                continue
            month_days = calendar.monthrange(year, day.month)[1]
            if mdays and day.day not in mdays and day.day - month_days - 1 not in mdays:
                continue
            if ydays and i + 1 not in ydays and i - length not in ydays:
                continue
            return False
    return True


def reason(exc: BaseException) -> str:
    """An error's reason without the text it quotes from the data (never echo content)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if text[:1] in ("'", '"'):  # a KeyError's message is all quoted: it may be all content
        return type(exc).__name__
    for mark in ("'", '"', ": "):
        cut = text.find(mark)
        if cut > 0:
            text = text[:cut]
    return text.strip(" :")[:120] or type(exc).__name__


def _shown(href: str) -> str:
    """An href or uid as named in a note: one line, not too long."""
    if len(href) <= 120 and href.isprintable():
        return href
    one = "".join(ch if ch.isprintable() else "?" for ch in href[:120])
    return one + ("…" if len(href) > 120 else "")


# ---------------------------------------------------------------------------- write


def own_event_to_ical(event: OwnEvent) -> str:
    """Serialize one of our checkpoint events as a VCALENDAR with its VTIMEZONE."""
    if event.start.tzinfo is None or event.end.tzinfo is None:
        raise ValueError("checkpoint times must be aware datetimes")
    zone = zoneinfo_for(event.timezone or "UTC")
    cal = icalendar.Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    vevent = icalendar.Event()
    vevent.add("UID", event.uid)
    vevent.add("DTSTAMP", datetime.now(UTC).replace(microsecond=0))
    vevent.add("DTSTART", event.start.astimezone(zone).replace(microsecond=0))
    vevent.add("DTEND", event.end.astimezone(zone).replace(microsecond=0))
    vevent.add("SUMMARY", event.summary)
    vevent.add("DESCRIPTION", event.description)
    vevent.add("TRANSP", "OPAQUE")
    vevent.add("STATUS", "CONFIRMED")
    vevent.add("CATEGORIES", ["Delegation"])
    vevent[OWN_EVENT_PROPERTY] = event.marker
    if event.url:
        vevent.add("URL", event.url)
    for att in event.attendees:
        addr = icalendar.vCalAddress(f"mailto:{att.email}")
        if att.name:
            addr.params["CN"] = att.name
        addr.params["ROLE"] = "REQ-PARTICIPANT" if att.required else "OPT-PARTICIPANT"
        addr.params["PARTSTAT"] = att.response.value.upper()
        addr.params["RSVP"] = "TRUE"
        vevent.add("ATTENDEE", addr, encode=False)
    cal.add_component(vevent)
    if event.timezone and event.timezone != "UTC":
        cal.add_missing_timezones()
    return str(cal.to_ical().decode("utf-8"))


def events_in(resources: Iterable[CalendarResource]) -> Iterator[EventData]:
    for res in resources:
        yield from res.events
