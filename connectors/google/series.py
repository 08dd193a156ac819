"""Google Calendar events → our events: series grouped with their exceptions, expanded.

A page of ``events.list`` mixes singles, series masters (``recurrence``) and exceptions
(``recurringEventId`` + ``originalStartTime``); ``group_items`` puts each series together,
``resource_events`` turns a single or a series into its occurrences in the window (the
master's RRULE/EXDATE/RDATE expanded in its own zone, exceptions replacing or cancelling
their occurrences). Used by ``connectors.google.calendar``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events

from assistant.domain.model import Attendee, EventData, EventStatus, Response
from connectors.base import (
    InvalidData,
    Window,
)
from connectors.ics.ical_event import MEETING_URL_RE, format_recurrence_id

MARKER_KEY = "x-exec-assistant-checkpoint"
UID_KEY = "x-exec-assistant-uid"
RESPONSES = {
    "accepted": Response.ACCEPTED,
    "declined": Response.DECLINED,
    "tentative": Response.TENTATIVE,
    "needsAction": Response.NEEDS_ACTION,
}
STATUSES = {
    "confirmed": EventStatus.CONFIRMED,
    "tentative": EventStatus.TENTATIVE,
    "cancelled": EventStatus.CANCELLED,
}

Item = dict[str, Any]


@dataclass(slots=True)
class Series:
    """A recurring event as one page of events.list gives it: master and exceptions."""

    master: Item | None = None
    exceptions: dict[str, Item] = field(default_factory=dict)
    ical_uid: str = ""


# --------------------------------------------------------------------- grouping


def is_cancelled(item: Mapping[str, Any]) -> bool:
    return item.get("status") == "cancelled"


def group_items(items: Iterable[Item]) -> tuple[list[Item], dict[str, Series], set[str]]:
    """(live single events, series by master id, deleted ids of singles and masters)."""
    singles: dict[str, Item] = {}
    series: dict[str, Series] = {}
    deleted: set[str] = set()
    for item in items:
        parent = item.get("recurringEventId")
        if parent:
            group = series.setdefault(str(parent), Series())
            group.exceptions[str(item["id"])] = item
        elif is_cancelled(item):  # a deleted event or series: Google sends little more than the id
            deleted.add(str(item["id"]))
            singles.pop(str(item["id"]), None)
            continue
        elif item.get("recurrence"):
            group = series.setdefault(str(item["id"]), Series())
            group.master = item
        else:
            singles[str(item["id"])] = item
            continue
        group.ical_uid = group.ical_uid or str(item.get("iCalUID", ""))
    return list(singles.values()), series, deleted


# ---------------------------------------------------------------------- mapping


def resource_events(
    href: str, members: list[Item], group: Series | None, window: Window, cal_zone: str
) -> list[EventData]:
    """The occurrences in ``window`` of one single event or one series."""
    zone = ZoneInfo(zone_or_utc(window.zone))
    try:
        if group is None:
            item = members[0]
            event = _event(item, _uid(item), "", item, zone, cal_zone, href)
            return [event] if _overlaps(event, window) else []
        return _series_events(href, group, window, zone, cal_zone)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidData(f"bad event ({str(exc)[:160] or type(exc).__name__})") from None


def _series_events(
    href: str, group: Series, window: Window, zone: ZoneInfo, cal_zone: str
) -> list[EventData]:
    master = group.master
    by_rid: dict[str, Item] = {}
    for item in group.exceptions.values():
        original = item.get("originalStartTime") or item.get("start")
        if original:
            by_rid[_recurrence_id(original, zone, cal_zone)] = item
    live = [e for e in group.exceptions.values() if not is_cancelled(e)]
    basis = master or (live[0] if live else None)
    if basis is None:
        return []
    uid = _uid(basis)
    out: list[EventData] = []
    if master is not None:
        for start, end in _expand(master, window, cal_zone):
            rid = format_recurrence_id(start, zone)
            if rid in by_rid:
                continue
            zone_name = str(master["start"].get("timeZone") or "")
            times = {"start": _value_dict(start, zone_name), "end": _value_dict(end, zone_name)}
            out.append(_event(master, uid, rid, times, zone, cal_zone, href))
    for rid, item in by_rid.items():
        if is_cancelled(item):
            continue
        event = _event(item, uid, rid, item, zone, cal_zone, href)
        if _overlaps(event, window):
            out.append(event)
    out.sort(key=lambda e: (e.start, e.recurrence_id))
    return out


def _expand(master: Item, window: Window, cal_zone: str) -> list[tuple[Any, Any]]:
    """(start, end) of the master's occurrences overlapping ``window``, by its own rules."""
    start, end = master["start"], master["end"]
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "BEGIN:VEVENT", "UID:series"]
    if "date" in start:
        lines.append(f"DTSTART;VALUE=DATE:{date.fromisoformat(start['date']):%Y%m%d}")
        lines.append(f"DTEND;VALUE=DATE:{date.fromisoformat(end['date']):%Y%m%d}")
    else:
        tz_name = zone_or_utc(start.get("timeZone") or cal_zone)
        for key, value in (("DTSTART", start), ("DTEND", end)):
            moment = instant(value, cal_zone, ZoneInfo(tz_name))
            if tz_name == "UTC":
                lines.append(f"{key}:{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}")
            else:
                lines.append(
                    f"{key};TZID={tz_name}:{moment.astimezone(ZoneInfo(tz_name)):%Y%m%dT%H%M%S}"
                )
    lines.extend(str(r).strip() for r in master.get("recurrence", ()) if str(r).strip())
    lines += ["END:VEVENT", "END:VCALENDAR", ""]
    try:
        cal = icalendar.Calendar.from_ical("\r\n".join(lines))
        found = recurring_ical_events.of(cal).between(window.start, window.end)
        return [(c["DTSTART"].dt, c["DTEND"].dt) for c in found]
    except Exception as exc:  # the libraries raise many kinds on bad rules
        raise InvalidData(f"cannot expand the recurrence ({str(exc)[:160]})") from None


def _event(
    item: Item,
    uid: str,
    rid: str,
    times: Mapping[str, Any],
    zone: ZoneInfo,
    cal_zone: str,
    href: str,
) -> EventData:
    start_v, end_v = times.get("start") or {}, times.get("end") or {}
    start_date = end_date = None
    tz_name = ""
    if "date" in start_v:
        start_date = _date(start_v["date"], item)
        end_date = _date(end_v["date"], item) if "date" in end_v else start_date
        if end_date <= start_date:
            end_date = start_date + timedelta(days=1)
        start = datetime.combine(start_date, time(), zone).astimezone(UTC)
        end = datetime.combine(end_date, time(), zone).astimezone(UTC)
    elif "dateTime" in start_v:
        start = instant(start_v, cal_zone, zone).astimezone(UTC)
        end = instant(end_v, cal_zone, zone).astimezone(UTC) if end_v else start
        end = max(end, start)
        tz_name = _known_zone(str(start_v.get("timeZone") or ""))
    else:
        raise InvalidData(f"event {item.get('id')} has no start")
    private = (item.get("extendedProperties") or {}).get("private") or {}
    organizer = item.get("organizer") or {}
    return EventData(
        uid=uid,
        recurrence_id=rid,
        start=start,
        end=end,
        summary=str(item.get("summary") or ""),
        timezone=tz_name,
        all_day=start_date is not None,
        start_date=start_date,
        end_date=end_date,
        status=STATUSES.get(str(item.get("status") or ""), EventStatus.CONFIRMED),
        location=str(item.get("location") or ""),
        description=str(item.get("description") or ""),
        organizer=str(organizer.get("email") or "").lower(),
        attendees=tuple(_attendee(a) for a in item.get("attendees") or () if a.get("email")),
        busy=item.get("transparency") != "transparent",
        private=item.get("visibility") in ("private", "confidential"),
        online_meeting_url=_meeting_url(item),
        own_marker=str(private.get(MARKER_KEY) or ""),
        href=href,
    )


def _date(value: Any, item: Mapping[str, Any]) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidData(f"event {item.get('id')} has a malformed date {value!r}") from None


def _uid(item: Mapping[str, Any]) -> str:
    private = (item.get("extendedProperties") or {}).get("private") or {}
    return str(private.get(UID_KEY) or item.get("iCalUID") or f"{item['id']}@google.com")


def _attendee(value: Mapping[str, Any]) -> Attendee:
    return Attendee(
        email=str(value["email"]).lower(),
        name=str(value.get("displayName") or ""),
        response=RESPONSES.get(str(value.get("responseStatus")), Response.NEEDS_ACTION),
        required=not value.get("optional", False),
    )


def _meeting_url(item: Mapping[str, Any]) -> str:
    if item.get("hangoutLink"):
        return str(item["hangoutLink"])
    points = (item.get("conferenceData") or {}).get("entryPoints") or []
    for kind in ("video", "more", "phone", "sip"):
        for point in points:
            if point.get("entryPointType") == kind and point.get("uri"):
                return str(point["uri"])
    for key in ("location", "description"):
        match = MEETING_URL_RE.search(str(item.get(key) or ""))
        if match:
            return match.group(0)
    return ""


def instant(value: Mapping[str, Any], cal_zone: str, fallback: ZoneInfo) -> datetime:
    """An aware datetime of a ``{"dateTime", "timeZone"}`` (or a date's midnight)."""
    if "dateTime" not in value:
        day = date.fromisoformat(str(value["date"]))
        return datetime.combine(day, time(), fallback)
    moment = datetime.fromisoformat(str(value["dateTime"]))
    if moment.tzinfo is None:
        name = zone_or_utc(str(value.get("timeZone") or cal_zone or fallback.key))
        moment = moment.replace(tzinfo=ZoneInfo(name))
    return moment


def _recurrence_id(original: Mapping[str, Any], zone: ZoneInfo, cal_zone: str) -> str:
    if "date" in original and "dateTime" not in original:
        return format_recurrence_id(date.fromisoformat(str(original["date"])), zone)
    return format_recurrence_id(instant(original, cal_zone, zone), zone)


def _value_dict(value: Any, zone_name: str) -> dict[str, str]:
    if isinstance(value, datetime):
        return {"dateTime": value.isoformat(), "timeZone": zone_name}
    return {"date": value.isoformat()}


def _overlaps(event: EventData, window: Window) -> bool:
    if event.end == event.start:
        return window.start <= event.start < window.end
    return event.start < window.end and event.end > window.start


def _known_zone(name: str) -> str:
    if not name:
        return ""
    if name in ("UTC", "Etc/UTC", "GMT", "Z"):
        return "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ""
    return name


def zone_or_utc(name: str) -> str:
    return _known_zone(name) or "UTC"
