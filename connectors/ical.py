"""iCalendar in and out: parse calendar objects into expanded occurrences, write ours.

Shared by the ICS feed and CalDAV connectors (and any provider that can hand us
iCalendar text). Parsing handles recurring series (RRULE, RDATE, EXDATE), moved and
cancelled occurrences (RECURRENCE-ID overrides, with or without a master), floating
times, all-day dates, X-WR-TIMEZONE calendars and Windows zone names from Exchange
and Outlook (mapped to IANA names; the VTIMEZONE definitions give the offsets).
One event becomes ``EventData`` in ``connectors.ical_event``; lone single events take the
fast path of ``connectors.ical_fast``.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

import icalendar
import recurring_ical_events
import x_wr_timezone

from assistant.model import OWN_EVENT_PROPERTY, EventData
from connectors.base import CalendarResource, InvalidData, OwnEvent, Window
from connectors.ical_event import (
    event_from_component,
    short_error,
    synthetic_uid,
    text_value,
    zoneinfo_for,
)
from connectors.ical_fast import fast_single

PRODID = "-//exec-assistant//checkpoints//EN"

# ---------------------------------------------------------------------------- parse


def parse_resource(
    href: str, etag: str, text: str | bytes, window: Window, *, fast: bool = True
) -> CalendarResource:
    """One calendar object resource (usually one series) → its occurrences in ``window``.

    A lone single event (most of a calendar) is read by ``fast_single`` (unless ``fast``
    is false); anything else, or anything that path is not sure of, by icalendar and
    recurring-ical-events. Both give the same result.
    """
    found = fast_single(text, window, href) if fast else None
    if found is not None:
        return CalendarResource(href=href, etag=etag, events=found)
    cal = _load(text, href)
    return CalendarResource(href=href, etag=etag, events=tuple(_occurrences(cal, window, href)))


def parse_feed(
    text: str | bytes, window: Window, source: str = "feed"
) -> tuple[list[CalendarResource], list[str]]:
    """A whole calendar (an ICS feed or export) → one resource per UID, and the problems.

    A feed has no hrefs; each UID becomes a resource named ``uid:<UID>`` whose etag is
    a hash of that UID's components, so unchanged series compare equal across fetches.
    A series that cannot be read is left out and described in the second list; the
    rest of the feed still counts. A feed that is not iCalendar at all raises.
    """
    cal = _load(text, source)
    groups: dict[str, list[Any]] = defaultdict(list)
    for comp in cal.walk("VEVENT"):
        groups[text_value(comp.get("UID")) or synthetic_uid(comp)].append(comp)
    resources: list[CalendarResource] = []
    problems: list[str] = []
    for uid, comps in groups.items():
        sub = icalendar.Calendar()
        for key in ("PRODID", "VERSION", "X-WR-TIMEZONE"):
            if key in cal:
                sub[key] = cal[key]
        for tz in cal.walk("VTIMEZONE"):
            sub.add_component(tz)
        for comp in comps:
            if not comp.get("UID"):
                comp["UID"] = uid
            sub.add_component(comp)
        digest = hashlib.sha256(b"".join(c.to_ical() for c in comps)).hexdigest()[:32]
        href = f"uid:{uid}"
        try:
            events = tuple(_occurrences(sub, window, href))
        except InvalidData as exc:
            problems.append(str(exc))
            continue
        resources.append(CalendarResource(href=href, etag=digest, events=events))
    return resources, problems


def _load(text: str | bytes, source: str) -> icalendar.Calendar:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    if not raw.strip():
        raise InvalidData(f"{source}: empty calendar data")
    try:
        cal = icalendar.Calendar.from_ical(raw)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise InvalidData(f"{source}: not valid iCalendar ({short_error(exc)})") from None
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
        raise InvalidData(f"{source}: expected a VCALENDAR, found {cal.name}")
    if cal.get("X-WR-TIMEZONE"):
        try:
            cal = x_wr_timezone.to_standard(cal)
        except (ValueError, KeyError, ZoneInfoNotFoundError) as exc:
            raise InvalidData(f"{source}: bad X-WR-TIMEZONE ({short_error(exc)})") from None
    return cal


def _occurrences(cal: icalendar.Calendar, window: Window, href: str) -> Iterator[EventData]:
    zone = zoneinfo_for(window.zone)
    recurring = {
        text_value(c.get("UID"))
        for c in cal.walk("VEVENT")
        if "RRULE" in c or "RDATE" in c or "RECURRENCE-ID" in c
    }
    try:
        query = recurring_ical_events.of(cal, skip_bad_series=True)
        found = list(query.between(window.start, window.end))
    except Exception as exc:  # the library raises many kinds on bad input
        raise InvalidData(f"{href}: cannot expand recurrences ({short_error(exc)})") from None
    seen: set[tuple[str, str]] = set()
    for comp in found:
        try:
            event = event_from_component(comp, zone, href, recurring)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InvalidData(f"{href}: bad event ({short_error(exc)})") from None
        if event.key in seen:
            continue
        seen.add(event.key)
        yield event


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
