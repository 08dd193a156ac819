"""iCalendar in and out: parse calendar objects into expanded occurrences, write ours.

Shared by the ICS feed and CalDAV connectors (and any provider that can hand us
iCalendar text). Parsing handles recurring series (RRULE, RDATE, EXDATE), moved and
cancelled occurrences (RECURRENCE-ID overrides, with or without a master), floating
times, all-day dates, X-WR-TIMEZONE calendars and Windows zone names from Exchange
and Outlook (mapped to IANA names; the VTIMEZONE definitions give the offsets).
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events
import x_wr_timezone
from icalendar.parser import Contentline, Parameters, split_on_unescaped_comma, unescape_backslash
from icalendar.parser.content_line import NEWLINE, UFOLD
from icalendar.parser.ical.component import ComponentIcalParser
from icalendar.prop import vDDDTypes
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from assistant.model import (
    OWN_EVENT_PROPERTY,
    Attendee,
    EventData,
    EventStatus,
    Response,
)
from connectors.base import CalendarResource, InvalidData, OwnEvent, Window

PRODID = "-//exec-assistant//checkpoints//EN"

_RESPONSES = {
    "ACCEPTED": Response.ACCEPTED,
    "DECLINED": Response.DECLINED,
    "TENTATIVE": Response.TENTATIVE,
    "DELEGATED": Response.DELEGATED,
    "NEEDS-ACTION": Response.NEEDS_ACTION,
}
_STATUSES = {
    "CONFIRMED": EventStatus.CONFIRMED,
    "TENTATIVE": EventStatus.TENTATIVE,
    "CANCELLED": EventStatus.CANCELLED,
}
_MEETING_URL_PROPS = (
    "X-GOOGLE-CONFERENCE",
    "X-MICROSOFT-ONLINEMEETINGEXTERNALLINK",
    "X-MICROSOFT-SKYPETEAMSMEETINGURL",
    "X-MS-OLK-CONFERENCEURL",
)
_MEETING_URL_RE = re.compile(
    r"https://(?:[\w.-]+\.)?(?:zoom\.us|teams\.microsoft\.com|teams\.live\.com|meet\.google\.com"
    r"|webex\.com|whereby\.com|telemost\.yandex\.ru|meet\.jit\.si)/[^\s<>\"')]*",
    re.IGNORECASE,
)


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
        groups[_text(comp.get("UID")) or _synthetic_uid(comp)].append(comp)
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
        raise InvalidData(f"{source}: not valid iCalendar ({_short(exc)})") from None
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
            raise InvalidData(f"{source}: bad X-WR-TIMEZONE ({_short(exc)})") from None
    return cal


def _occurrences(cal: icalendar.Calendar, window: Window, href: str) -> Iterator[EventData]:
    zone = _zoneinfo(window.zone)
    recurring = {
        _text(c.get("UID"))
        for c in cal.walk("VEVENT")
        if "RRULE" in c or "RDATE" in c or "RECURRENCE-ID" in c
    }
    try:
        query = recurring_ical_events.of(cal, skip_bad_series=True)
        found = list(query.between(window.start, window.end))
    except Exception as exc:  # the library raises many kinds on bad input
        raise InvalidData(f"{href}: cannot expand recurrences ({_short(exc)})") from None
    seen: set[tuple[str, str]] = set()
    for comp in found:
        try:
            event = _event(comp, zone, href, recurring)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InvalidData(f"{href}: bad event ({_short(exc)})") from None
        if event.key in seen:
            continue
        seen.add(event.key)
        yield event


def _event(comp: Any, zone: tzinfo, href: str, recurring: set[str]) -> EventData:
    uid = _text(comp.get("UID")) or _synthetic_uid(comp)
    start_v = _known_zone(comp["DTSTART"].dt)
    end_prop = comp.get("DTEND")
    all_day = isinstance(start_v, date) and not isinstance(start_v, datetime)
    if end_prop is not None:
        end_v = _known_zone(end_prop.dt)
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
        start = _to_utc(start_v, zone)
        end = _to_utc(end_v, zone)
        if end < start:
            end = start
    rid = ""
    if uid in recurring:
        rid_prop = comp.get("RECURRENCE-ID")
        rid_v = _known_zone(rid_prop.dt) if rid_prop is not None else start_v
        rid = format_recurrence_id(rid_v, zone)
    organizer = _address(comp.get("ORGANIZER"))
    attendees = tuple(_attendee(a) for a in _as_list(comp.get("ATTENDEE")))
    status = _STATUSES.get(_text(comp.get("STATUS")).upper(), EventStatus.CONFIRMED)
    return EventData(
        uid=uid,
        recurrence_id=rid,
        start=start,
        end=end,
        summary=_text(comp.get("SUMMARY")),
        timezone=tz_name,
        all_day=all_day,
        start_date=start_date,
        end_date=end_date,
        status=status,
        location=_text(comp.get("LOCATION")),
        description=_text(comp.get("DESCRIPTION")),
        organizer=organizer,
        attendees=attendees,
        busy=_text(comp.get("TRANSP")).upper() != "TRANSPARENT",
        private=_text(comp.get("CLASS")).upper() in ("PRIVATE", "CONFIDENTIAL"),
        online_meeting_url=_meeting_url(comp),
        categories=_categories(comp),
        own_marker=_text(comp.get(OWN_EVENT_PROPERTY)),
        modified_by=_address(comp.get("X-MODIFIED-BY")),
        href=href,
    )


def format_recurrence_id(value: date | datetime, zone: tzinfo) -> str:
    """RECURRENCE-ID as a stable key: UTC ``YYYYMMDDTHHMMSSZ``, or ``YYYYMMDD`` for dates."""
    if isinstance(value, datetime):
        return _to_utc(value, zone).strftime("%Y%m%dT%H%M%SZ")
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


def _known_zone(value: Any) -> Any:
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


def _to_utc(value: datetime, zone: tzinfo) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _zoneinfo(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidData(f"unknown time zone {name!r}") from None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value).strip()


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _address(value: Any) -> str:
    text = _text(value)
    if text.lower().startswith("mailto:"):
        text = text[7:]
    return text.strip().lower()


def _attendee(value: Any) -> Attendee:
    params = getattr(value, "params", {})
    partstat = str(params.get("PARTSTAT", "NEEDS-ACTION")).upper()
    response = _RESPONSES.get(partstat, Response.NEEDS_ACTION)
    return Attendee(
        email=_address(value),
        name=str(params.get("CN", "")),
        response=response,
        required=str(params.get("ROLE", "REQ-PARTICIPANT")).upper() != "OPT-PARTICIPANT",
    )


def _categories(comp: Any) -> tuple[str, ...]:
    out: list[str] = []
    for prop in _as_list(comp.get("CATEGORIES")):
        cats = getattr(prop, "cats", None)
        if cats is not None:
            out.extend(str(c) for c in cats)
        else:
            out.extend(s.strip() for s in str(prop).split(",") if s.strip())
    return tuple(out)


def _meeting_url(comp: Any) -> str:
    for key in _MEETING_URL_PROPS:
        if comp.get(key):
            return _text(comp.get(key))
    for conf in _as_list(comp.get("CONFERENCE")):
        return _text(conf)
    for key in ("LOCATION", "URL", "DESCRIPTION"):
        match = _MEETING_URL_RE.search(_text(comp.get(key)))
        if match:
            return match.group(0)
    return ""


def _synthetic_uid(comp: Any) -> str:
    """Events without a UID (it happens) get one derived from what they say."""
    basis = f"{_text(comp.get('SUMMARY'))}|{comp.get('DTSTART') and comp['DTSTART'].to_ical()!r}"
    return "no-uid-" + hashlib.sha256(basis.encode()).hexdigest()[:24]


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


# ----------------------------------------------------------------- fast single events

# What ``_event`` reads; the other properties of a single VEVENT are not parsed.
_FAST_PROPS = frozenset(
    {
        "UID", "DTSTART", "DTEND", "DURATION", "SUMMARY", "LOCATION", "DESCRIPTION",
        "STATUS", "TRANSP", "CLASS", "ORGANIZER", "ATTENDEE", "CATEGORIES", "CONFERENCE",
        "URL", "X-MODIFIED-BY", OWN_EVENT_PROPERTY, *_MEETING_URL_PROPS,
    }
)  # fmt: skip
_SERIES_PROPS = frozenset({"RRULE", "RDATE", "EXDATE", "EXRULE", "RECURRENCE-ID"})
_NESTING = {"VCALENDAR": "", "VEVENT": "VCALENDAR", "VTIMEZONE": "VCALENDAR",
            "STANDARD": "VTIMEZONE", "DAYLIGHT": "VTIMEZONE", "VALARM": "VEVENT"}  # fmt: skip
_TOKEN = re.compile(r"[A-Za-z0-9-]+\Z")
_TYPES = icalendar.Calendar.types_factory
_DATETIME_NAMES = frozenset(ComponentIcalParser.datetime_names)
_MARGIN = timedelta(days=1)  # more than any zone offset: floating and all-day times agree
_known_tzids: frozenset[str] | None = None


class _Unsure(Exception):
    """The fast path cannot promise the full path's result: use the full path."""


def fast_single(text: str | bytes, window: Window, href: str) -> tuple[EventData, ...] | None:
    """The occurrences of a resource holding one single event, or None to parse it fully.

    For one VEVENT without RRULE, RDATE, EXDATE or RECURRENCE-ID (with any VALARMs and
    VTIMEZONEs of zones the zone database knows, no X-WR-TIMEZONE) that lies clearly
    inside or clearly outside ``window``, this gives what icalendar and
    recurring-ical-events would, at a tenth of the cost: lines are unfolded and split
    as icalendar does, the properties ``_event`` reads are built by icalendar's own
    value types, every other line outside the VEVENT is checked as icalendar checks
    it, and ``_event`` maps the result. Anything unusual, including every error,
    returns None and the full path decides (and names the error).
    """
    try:
        return _fast_single(text, window, href)
    except _Unsure:
        return None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, LookupError):
        return None


def _fast_single(text: str | bytes, window: Window, href: str) -> tuple[EventData, ...]:
    if isinstance(text, bytes):
        text = text.removeprefix(b"\xef\xbb\xbf").decode("utf-8")  # invalid: full path
    else:
        text = text.removeprefix("\ufeff")
    lines = [line for line in NEWLINE.split(UFOLD.sub("", text)) if line]
    if not lines or lines[0].upper() != "BEGIN:VCALENDAR" or lines[-1].upper() != "END:VCALENDAR":
        raise _Unsure
    stack: list[str] = []
    props: dict[str, Any] = {}
    events = 0
    for line in lines:
        if not stack and events:  # something after the VCALENDAR
            raise _Unsure
        name, params, raw = _split(line)
        if name in ("BEGIN", "END"):
            comp = raw.upper()
            if name == "BEGIN":
                if _NESTING.get(comp) != (stack[-1] if stack else ""):
                    raise _Unsure
                stack.append(comp)
                events += comp == "VEVENT"
            elif not stack or stack.pop() != comp:
                raise _Unsure
            continue
        where = stack[-1] if stack else ""
        if where == "VEVENT":
            if name in _SERIES_PROPS:
                raise _Unsure
            if name in _FAST_PROPS:
                _add(props, name, _value(name, params, raw, line))
            continue  # icalendar keeps going past a bad property of a VEVENT
        if where == "VCALENDAR" and name == "X-WR-TIMEZONE":
            raise _Unsure
        if where == "VTIMEZONE" and name == "TZID" and raw not in _zone_ids():
            raise _Unsure  # icalendar would remember this zone's own rules
        _value(name, params, raw, line)  # elsewhere a bad property fails the calendar
    if stack or events != 1:
        raise _Unsure
    return _fast_event(props, window, href)


def _split(line: str) -> tuple[str, Parameters | None, str]:
    """(NAME, parameters, raw value) of a content line, as icalendar's raw_parts gives."""
    colon = line.find(":")
    head = line[:colon]
    if colon > 0 and _TOKEN.match(head):
        return head.upper(), None, line[colon + 1 :]
    if colon <= 0 or "\\" in head:
        raise _Unsure
    name, params, raw = Contentline(line).raw_parts()  # type: ignore[no-untyped-call]
    if not _TOKEN.match(name):
        raise _Unsure
    return name.upper(), params, raw


def _value(name: str, params: Parameters | None, raw: str, line: str) -> Any:
    """The property value icalendar's parser would store for this line."""
    if params is None:
        params = Parameters()
    value_param = params.value if params else None
    factory: Any = _TYPES.for_property(name, value_param)
    content_line: Any = Contentline(line)  # type: ignore[no-untyped-call]
    if name == "CATEGORIES":
        colon = content_line.value_separator_index()
        if colon <= 0:
            raise _Unsure
        inst = factory(split_on_unescaped_comma(line[colon + 1 :]))
    elif name == "FREEBUSY" or (name == "RDATE" and raw == ""):
        raise _Unsure
    else:
        get_raw = getattr(factory, "get_value_from_content_line", None)
        vals = get_raw(content_line) if get_raw is not None else unescape_backslash(raw)
        tzid = params.get("TZID") if params and name in _DATETIME_NAMES else None
        inst = factory(factory.from_ical(vals, tzid) if tzid else factory.from_ical(vals))
    inst.params = params
    return inst


def _add(props: dict[str, Any], name: str, value: Any) -> None:
    """Component.add: a repeated property becomes a list."""
    old = props.get(name)
    if old is None:
        props[name] = value
    elif isinstance(old, list):
        old.append(value)
    else:
        props[name] = [old, value]


def _fast_event(props: dict[str, Any], window: Window, href: str) -> tuple[EventData, ...]:
    start_p, end_p, dur_p = props.get("DTSTART"), props.get("DTEND"), props.get("DURATION")
    if "UID" not in props or start_p is None or isinstance(start_p, list):
        raise _Unsure
    if isinstance(end_p, list) or isinstance(dur_p, list) or (end_p and dur_p):
        raise _Unsure
    start: Any = start_p.dt
    timed = isinstance(start, datetime)
    if not timed and not isinstance(start, date):
        raise _Unsure
    end: Any
    if end_p is not None:  # recurring-ical-events' EventAdapter.raw_end, for like kinds only
        end = end_p.dt
        if isinstance(end, datetime) != timed or not isinstance(end, date):
            raise _Unsure
        if timed and (getattr(end, "tzinfo", None) is None) != (start.tzinfo is None):
            raise _Unsure
    elif dur_p is not None:
        if not timed or not isinstance(dur_p.dt, timedelta):
            raise _Unsure
        end = start + dur_p.dt
    else:
        end = start if timed else start + timedelta(days=1)
    if end < start:
        raise _Unsure
    begin, finish = _rough_utc(start), _rough_utc(end)
    low, high = window.start, window.end
    if low.tzinfo is None or high.tzinfo is None or not low < high:
        raise _Unsure
    if finish < low - _MARGIN or begin >= high + _MARGIN:
        return ()  # clearly outside the window
    if not (begin < high - _MARGIN and finish > low + _MARGIN):
        raise _Unsure  # near an edge: recurring-ical-events decides
    comp = dict(props)  # what Occurrence.as_component hands _occurrences
    comp["DTSTART"] = vDDDTypes(start)
    comp.pop("DURATION", None)
    comp["DTEND"] = vDDDTypes(end)
    return (_event(comp, _zoneinfo(window.zone), href, set()),)


def _rough_utc(value: date) -> datetime:
    """A moment within a day of ``value`` wherever it is placed."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(), UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _zone_ids() -> frozenset[str]:
    """The zone ids icalendar's zoneinfo provider knows (it caches no VTIMEZONE of them)."""
    global _known_tzids
    if _known_tzids is None:
        import zoneinfo

        _known_tzids = frozenset(zoneinfo.available_timezones())
    return _known_tzids


# ---------------------------------------------------------------------------- write


def own_event_to_ical(event: OwnEvent) -> str:
    """Serialize one of our checkpoint events as a VCALENDAR with its VTIMEZONE."""
    if event.start.tzinfo is None or event.end.tzinfo is None:
        raise ValueError("checkpoint times must be aware datetimes")
    zone = _zoneinfo(event.timezone or "UTC")
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
