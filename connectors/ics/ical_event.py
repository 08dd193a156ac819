"""One iCalendar VEVENT (an icalendar component) → our ``EventData``.

Times and zones (floating times in the manager's zone, all-day dates, Windows zone names
from Exchange and Outlook mapped to IANA ones), the manager's response, status and
free/busy, people, categories, the online-meeting link and our own marker. Used by the
full parse path (``connectors.ics.ical``) and the fast one (``connectors.ics.ical_fast``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from assistant.domain.model import (
    OWN_EVENT_PROPERTY,
    Attendee,
    EventData,
    EventStatus,
    Response,
)
from connectors.base import InvalidData

RESPONSES = {
    "ACCEPTED": Response.ACCEPTED,
    "DECLINED": Response.DECLINED,
    "TENTATIVE": Response.TENTATIVE,
    "DELEGATED": Response.DELEGATED,
    "NEEDS-ACTION": Response.NEEDS_ACTION,
}
STATUSES = {
    "CONFIRMED": EventStatus.CONFIRMED,
    "TENTATIVE": EventStatus.TENTATIVE,
    "CANCELLED": EventStatus.CANCELLED,
}
MEETING_URL_PROPS = (
    "X-GOOGLE-CONFERENCE",
    "X-MICROSOFT-ONLINEMEETINGEXTERNALLINK",
    "X-MICROSOFT-SKYPETEAMSMEETINGURL",
    "X-MS-OLK-CONFERENCEURL",
)
MEETING_URL_RE = re.compile(
    r"https://(?:[\w.-]+\.)?(?:zoom\.us|teams\.microsoft\.com|teams\.live\.com|meet\.google\.com"
    r"|webex\.com|whereby\.com|telemost\.yandex\.ru|meet\.jit\.si)/[^\s<>\"')]*",
    re.IGNORECASE,
)


# The keys of floating events read while ``floating_keys`` is active (for ``ics expand``).
_FLOATING: ContextVar[set[tuple[str, str]] | None] = ContextVar("ics_floating", default=None)


@contextmanager
def floating_keys() -> Iterator[set[tuple[str, str]]]:
    """Collect the (uid, recurrence id) of every floating (zone-less) timed event read in
    the block: ``EventData`` keeps them in UTC, placed in the calendar's zone."""
    found: set[tuple[str, str]] = set()
    token = _FLOATING.set(found)
    try:
        yield found
    finally:
        _FLOATING.reset(token)


def event_from_component(comp: Any, zone: tzinfo, href: str, recurring: set[str]) -> EventData:
    # the properties as a plain dict (an icalendar component's keys are upper case
    # already): twenty look-ups without CaselessDict's cost per look-up
    comp = comp if type(comp) is dict else dict(comp)
    uid = text_value(comp.get("UID")) or synthetic_uid(comp)
    start_v = known_zone(comp["DTSTART"].dt)
    end_prop = comp.get("DTEND")
    all_day = isinstance(start_v, date) and not isinstance(start_v, datetime)
    if end_prop is not None:
        end_v = known_zone(end_prop.dt)
    elif comp.get("DURATION") is not None:
        end_v = start_v + comp["DURATION"].dt
    else:
        end_v = start_v + (timedelta(days=1) if all_day else timedelta(0))
    start_date = end_date = None
    if all_day:
        start_date = start_v
        end_date = end_v if not isinstance(end_v, datetime) else end_v.date()
        if end_date <= start_date:
            end_date = start_date + timedelta(days=1)
        start = datetime.combine(start_date, time(), zone).astimezone(UTC)
        end = datetime.combine(end_date, time(), zone).astimezone(UTC)
        tz_name = ""
    else:
        if not isinstance(end_v, datetime):
            end_v = datetime.combine(end_v, time(), start_v.tzinfo)
        tz_name = zone_name(start_v)
        start = to_utc(start_v, zone)
        end = to_utc(end_v, zone)
        if end < start:
            end = start
    rid = ""
    if uid in recurring:
        rid_prop = comp.get("RECURRENCE-ID")
        rid_v = known_zone(rid_prop.dt) if rid_prop is not None else start_v
        rid = format_recurrence_id(rid_v, zone)
    floating = _FLOATING.get()
    if floating is not None and not all_day and start_v.tzinfo is None:
        floating.add((uid, rid))
    organizer = _address(comp.get("ORGANIZER"))
    attendees = tuple(_attendee(a) for a in as_list(comp.get("ATTENDEE")))
    status = STATUSES.get(text_value(comp.get("STATUS")).upper(), EventStatus.CONFIRMED)
    return EventData(
        uid=uid,
        recurrence_id=rid,
        start=start,
        end=end,
        summary=text_value(comp.get("SUMMARY")),
        timezone=tz_name,
        all_day=all_day,
        start_date=start_date,
        end_date=end_date,
        status=status,
        location=text_value(comp.get("LOCATION")),
        description=text_value(comp.get("DESCRIPTION")),
        organizer=organizer,
        attendees=attendees,
        busy=text_value(comp.get("TRANSP")).upper() != "TRANSPARENT",
        private=text_value(comp.get("CLASS")).upper() in ("PRIVATE", "CONFIDENTIAL"),
        online_meeting_url=_meeting_url(comp),
        categories=_categories(comp),
        own_marker=text_value(comp.get(OWN_EVENT_PROPERTY)),
        modified_by=_address(comp.get("X-MODIFIED-BY")),
        href=href,
    )


def format_recurrence_id(value: date | datetime, zone: tzinfo) -> str:
    """RECURRENCE-ID as a stable key: UTC ``YYYYMMDDTHHMMSSZ``, or ``YYYYMMDD`` for dates."""
    if isinstance(value, datetime):
        return to_utc(value, zone).strftime("%Y%m%dT%H%M%SZ")
    return value.strftime("%Y%m%d")


def zone_name(value: datetime) -> str:
    """The IANA name of a datetime's zone ("" when floating); Windows names mapped."""
    tz = value.tzinfo
    if tz is None:
        return ""
    key = getattr(tz, "key", None) or getattr(tz, "_tzid", None) or ""
    if not key:
        try:
            key = icalendar.timezone.tzid_from_dt(value) or ""
        except Exception:  # a zone we cannot name is simply unnamed
            key = ""
    key = WINDOWS_TO_OLSON.get(key, key).removeprefix("posix/")
    if key in ("UTC", "Z", "Etc/UTC", "GMT"):
        return "UTC"
    try:
        ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        return ""
    return str(key)


def known_zone(value: Any) -> Any:
    """Trust the IANA zone a Windows zone name stands for over the VTIMEZONE sent with it.

    Exchange and Outlook often send VTIMEZONE blocks with truncated or wrong rules; the
    wall-clock time is what the organiser meant, in the zone the name stands for.
    """
    if not isinstance(value, datetime) or value.tzinfo is None:
        return value
    tz = value.tzinfo
    if getattr(tz, "key", None):
        return value
    name = getattr(tz, "_tzid", None) or ""
    iana = WINDOWS_TO_OLSON.get(name)
    if not iana:
        return value
    try:
        return value.replace(tzinfo=ZoneInfo(iana))
    except (ZoneInfoNotFoundError, ValueError):
        return value


def to_utc(value: datetime, zone: tzinfo) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def zoneinfo_for(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidData(f"unknown time zone {name!r}") from None


def text_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value).strip()


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _address(value: Any) -> str:
    text = text_value(value)
    if text.lower().startswith("mailto:"):
        text = text[7:]
    return text.strip().lower()


def _attendee(value: Any) -> Attendee:
    params = getattr(value, "params", {})
    partstat = str(params.get("PARTSTAT", "NEEDS-ACTION")).upper()
    response = RESPONSES.get(partstat, Response.NEEDS_ACTION)
    return Attendee(
        email=_address(value),
        name=str(params.get("CN", "")),
        response=response,
        required=str(params.get("ROLE", "REQ-PARTICIPANT")).upper() != "OPT-PARTICIPANT",
    )


def _categories(comp: Any) -> tuple[str, ...]:
    out: list[str] = []
    for prop in as_list(comp.get("CATEGORIES")):
        cats = getattr(prop, "cats", None)
        if cats is not None:
            out.extend(str(c) for c in cats)
        else:
            out.extend(s.strip() for s in str(prop).split(",") if s.strip())
    return tuple(out)


def _meeting_url(comp: Any) -> str:
    for key in MEETING_URL_PROPS:
        if comp.get(key):
            return text_value(comp.get(key))
    for conf in as_list(comp.get("CONFERENCE")):
        return text_value(conf)
    for key in ("LOCATION", "URL", "DESCRIPTION"):
        text = text_value(comp.get(key))
        match = MEETING_URL_RE.search(text) if "://" in text else None  # most have no link
        if match:
            return match.group(0)
    return ""


def synthetic_uid(comp: Any) -> str:
    """Events without a UID (it happens) get one derived from what they say."""
    start = comp.get("DTSTART") and comp["DTSTART"].to_ical()
    basis = f"{text_value(comp.get('SUMMARY'))}|{start!r}"
    return "no-uid-" + hashlib.sha256(basis.encode()).hexdigest()[:24]
