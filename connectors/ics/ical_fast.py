"""The fast path for the commonest calendar object: one single event.

``fast_single`` gives what icalendar and recurring-ical-events would for a resource
holding one VEVENT without recurrence, at a tenth of the cost; anything it is not sure
of goes to the full path in ``connectors.ics.ical``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

import icalendar
from icalendar.parser import Contentline, Parameters, split_on_unescaped_comma, unescape_backslash
from icalendar.parser.content_line import NEWLINE, UFOLD
from icalendar.parser.ical.component import ComponentIcalParser
from icalendar.parser_tools import DEFAULT_ENCODING
from icalendar.prop import vDDDTypes, vText
from icalendar.timezone import tzp

from assistant.domain.model import OWN_EVENT_PROPERTY, EventData
from connectors.base import Window
from connectors.ics.ical_event import MEETING_URL_PROPS, event_from_component, zoneinfo_for

# What ``event_from_component`` reads; the other properties of a single VEVENT are not parsed.
_FAST_PROPS = frozenset(
    {
        "UID", "DTSTART", "DTEND", "DURATION", "SUMMARY", "LOCATION", "DESCRIPTION",
        "STATUS", "TRANSP", "CLASS", "ORGANIZER", "ATTENDEE", "CATEGORIES", "CONFERENCE",
        "URL", "X-MODIFIED-BY", OWN_EVENT_PROPERTY, *MEETING_URL_PROPS,
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
_NO_PARAMS = Parameters()


class _Unsure(Exception):
    """The fast path cannot promise the full path's result: use the full path."""


def fast_single(text: str | bytes, window: Window, href: str) -> tuple[EventData, ...] | None:
    """The occurrences of a resource holding one single event, or None to parse it fully.

    For one VEVENT without RRULE, RDATE, EXDATE or RECURRENCE-ID (with any VALARMs and
    VTIMEZONEs of zones the zone database knows, no X-WR-TIMEZONE) that lies clearly
    inside or clearly outside ``window``, this gives what icalendar and
    recurring-ical-events would, at a tenth of the cost: lines are unfolded and split
    as icalendar does, the properties ``event_from_component`` reads are built by icalendar's own
    value types, every other line outside the VEVENT is checked as icalendar checks
    it, and ``event_from_component`` maps the result. Anything unusual, including every error,
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
    if "\n " in text or "\n\t" in text:  # every fold ends so (often none is left)
        text = UFOLD.sub("", text)
    lines = [line for line in NEWLINE.split(text) if line]
    if not lines or lines[0].upper() != "BEGIN:VCALENDAR" or lines[-1].upper() != "END:VCALENDAR":
        raise _Unsure
    stack: list[str] = []
    read: list[tuple[str, Parameters | None, str, str]] = []  # the VEVENT's lines to build
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
            if name in _FAST_PROPS or name == "SEQUENCE":  # built once the shape is known
                read.append((name, params, raw, line))
            continue  # icalendar keeps going past a bad property of a VEVENT
        if where == "VCALENDAR" and name == "X-WR-TIMEZONE":
            raise _Unsure
        if where == "VTIMEZONE" and name == "TZID" and raw not in _zone_ids():
            raise _Unsure  # icalendar would remember this zone's own rules
        _checked(line)  # elsewhere a bad property fails the calendar
    if stack or events != 1:
        raise _Unsure
    props: dict[str, Any] = {}
    for name, params, raw, line in read:
        value = _value(name, params, raw, line)  # SEQUENCE: unreadable, the full path says so
        if name != "SEQUENCE":
            _add(props, name, value)
    return _fast_event(props, window, href)


@lru_cache(maxsize=4096)
def _checked(line: str) -> None:
    """Raise as icalendar would for this line outside the VEVENT, else nothing.

    A feed's series each carry the VTIMEZONEs they name, the same lines again and again;
    each distinct line is checked once (a failure is not remembered: it raises again).
    """
    name, params, raw = _split(line)
    _value(name, params, raw, line)


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
    """The property value icalendar's parser would store for this line.

    Text and date-time values are built without their constructors' own parameter
    work (the parameters are replaced by the line's right after): the same value and
    parameters, at a fraction of the cost. A line without parameters gets the shared
    empty ``Parameters`` (these values stay inside this module and ``event_from_component``,
    which only read them).
    """
    if params is None:
        params = _NO_PARAMS
    value_param = params.value if params else None
    factory: Any = _factory(name, value_param)
    if factory is vText and name != "CATEGORIES":
        inst: Any = str.__new__(vText, unescape_backslash(raw) if "\\" in raw else raw)
        inst.encoding = DEFAULT_ENCODING
        inst.params = params
        return inst
    if factory is vDDDTypes and params is _NO_PARAMS:  # no TZID: the value alone decides
        vals = unescape_backslash(raw) if "\\" in raw else raw
        return _dates(_plain_moment(vals, tzp.name), params)
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
        value = factory.from_ical(vals, tzid) if tzid else factory.from_ical(vals)
        if factory is vDDDTypes and isinstance(value, (datetime, date, timedelta)):
            return _dates(value, params)
        inst = factory(value)
    inst.params = params
    return inst


@lru_cache(maxsize=8192)
def _plain_moment(raw: str, provider: str) -> Any:
    """``vDDDTypes.from_ical(raw)`` of a value without parameters, by ``provider``: a
    calendar's starts and ends repeat (the same hours on many days), the value is immutable."""
    value = vDDDTypes.from_ical(raw)  # type: ignore[no-untyped-call]
    if not isinstance(value, (datetime, date, timedelta)):
        raise _Unsure  # a period: built the usual way
    return value


@lru_cache(maxsize=512)
def _factory(name: str, value_param: str | None) -> Any:
    return _TYPES.for_property(name, value_param)


def plain_date(value: Any) -> Any:
    """``vDDDTypes(value)`` without the parameters icalendar derives from the value (the
    zone's TZID, VALUE=DATE): for the values only ``.dt`` is read of. They share one
    empty ``Parameters``, which nothing writes to."""
    return _dates(value, _NO_PARAMS)


def _dates(value: Any, params: Parameters) -> Any:
    """``vDDDTypes(value)`` with ``params`` as its parameters."""
    inst: Any = object.__new__(vDDDTypes)
    inst.dt = value
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
        if not timed and end == start:  # RFC-invalid, common in holiday feeds: one day
            end = start + timedelta(days=1)
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
        # near an edge: moments in a zone compare as recurring-ical-events compares them
        # (its time_span_contains_event); floating times and dates it decides itself
        if not timed or start.tzinfo is None or end.tzinfo is None:
            raise _Unsure
        if not (start < high and low < end if start != end else low <= start < high):
            return ()
    comp = dict(props)  # what Occurrence.as_component hands _occurrences
    comp["DTSTART"] = plain_date(start)
    comp.pop("DURATION", None)
    comp["DTEND"] = plain_date(end)
    return (event_from_component(comp, zoneinfo_for(window.zone), href, set()),)


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
