"""The fast path for the commonest recurring object: one weekly (or any) series in a zone.

``fast_series`` gives what icalendar, recurring-ical-events and ``connectors.ics.ical``
would for a resource holding one series: a master VEVENT with one RRULE (and EXDATEs),
and overrides of single occurrences (RECURRENCE-ID), all with one UID, every time in a
zone the zone database knows (UTC included). Lines are read as ``connectors.ics.ical_fast``
reads them (icalendar's own value types); the occurrences are walked with the same
dateutil rules and the same steps as recurring-ical-events' ``Series.between`` (its own
helpers compare and identify the times). Anything else, or anything it is not sure of,
returns None and the full path decides.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from dateutil.rrule import rrule, rruleset, rrulestr
from icalendar.parser.content_line import NEWLINE, UFOLD
from icalendar.prop import vDDDTypes
from recurring_ical_events.constants import NEGATIVE_RRULE_COUNT_REGEX
from recurring_ical_events.util import (
    compare_greater,
    convert_to_datetime,
    get_any,
    is_pytz,
    normalize_pytz,
    time_span_contains_event,
    to_recurrence_ids,
)

from assistant.domain.model import EventData
from connectors.base import ParseLimits, Window
from connectors.ics.ical_event import event_from_component, text_value, zoneinfo_for
from connectors.ics.ical_fast import (
    _FAST_PROPS,
    _NESTING,
    _add,
    _checked,
    _split,
    _Unsure,
    _value,
    _zone_ids,
    plain_date,
)

# What is read of a series' VEVENTs besides the properties of a single event.
_RULE_PROPS = frozenset({"RRULE", "EXDATE", "RECURRENCE-ID"})
_REFUSED = frozenset({"RDATE", "EXRULE"})
_ONCE = ("UID", "DTSTART", "DTEND", "DURATION", "RECURRENCE-ID", "SEQUENCE", "RRULE")

TooFrequent = Callable[[Any, Window, Any, ParseLimits], str]


def fast_series(
    text: bytes, window: Window, href: str, limits: ParseLimits, too_frequent: TooFrequent
) -> tuple[EventData, ...] | None:
    """The occurrences of a resource holding one plain series, or None to parse it fully.

    ``text`` is bounded and unfolded (``bound_calendar``); ``too_frequent`` is the full
    path's check (a series it would not expand goes the full way).
    """
    try:
        return _fast_series(text, window, href, limits, too_frequent)
    except _Unsure:
        return None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, LookupError):
        return None


def _fast_series(
    raw: bytes, window: Window, href: str, limits: ParseLimits, too_frequent: TooFrequent
) -> tuple[EventData, ...]:
    text = raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    if "\n " in text or "\n\t" in text:
        text = UFOLD.sub("", text)
    lines = [line for line in NEWLINE.split(text) if line]
    if not lines or lines[0].upper() != "BEGIN:VCALENDAR" or lines[-1].upper() != "END:VCALENDAR":
        raise _Unsure
    stack: list[str] = []
    events: list[list[tuple[str, Any, str, str]]] = []
    closed = False
    for line in lines:
        if closed:  # something after the VCALENDAR
            raise _Unsure
        name, params, value = _split(line)
        if name in ("BEGIN", "END"):
            comp = value.upper()
            if name == "BEGIN":
                if _NESTING.get(comp) != (stack[-1] if stack else ""):
                    raise _Unsure
                stack.append(comp)
                if comp == "VEVENT":
                    events.append([])
            elif not stack or stack.pop() != comp:
                raise _Unsure
            closed = not stack
            continue
        where = stack[-1] if stack else ""
        if where == "VEVENT":
            if name in _REFUSED:
                raise _Unsure
            if name in _FAST_PROPS or name in _RULE_PROPS or name == "SEQUENCE":
                events[-1].append((name, params, value, line))
            continue
        if where == "VCALENDAR" and name == "X-WR-TIMEZONE":
            raise _Unsure
        if where == "VTIMEZONE" and name == "TZID" and value not in _zone_ids():
            raise _Unsure
        _checked(line)
    if stack or len(events) < 1:
        raise _Unsure
    comps = [_props(lines_of) for lines_of in events]
    masters = [c for c in comps if "RECURRENCE-ID" not in c]
    if len(masters) != 1 or "RRULE" not in masters[0]:
        raise _Unsure
    core = masters[0]
    uid = text_value(core.get("UID"))
    if not uid or any(text_value(c.get("UID")) != uid for c in comps):
        raise _Unsure  # several series, or events without a UID: the full path groups them
    mods = [c for c in comps if c is not core]
    if any("RRULE" in c or "EXDATE" in c for c in mods):
        raise _Unsure
    return _expand(core, mods, uid, window, href, limits, too_frequent)


def _props(lines: list[tuple[str, Any, str, str]]) -> dict[str, Any]:
    """One VEVENT's properties as icalendar would store them (only what is read)."""
    props: dict[str, Any] = {}
    for name, params, value, line in lines:
        if name in props and name in _ONCE:
            raise _Unsure  # the full path keeps the first and says so
        built = _value(name, params, value, line)
        if name != "SEQUENCE":
            _add(props, name, built)
    return props


def _span(comp: dict[str, Any]) -> tuple[datetime, datetime]:
    """recurring-ical-events' adapter span (start, end) of a VEVENT in a zone."""
    start_p, end_p, dur_p = comp.get("DTSTART"), comp.get("DTEND"), comp.get("DURATION")
    if start_p is None or (end_p is not None and dur_p is not None):
        raise _Unsure
    start = start_p.dt
    if end_p is not None:
        end = end_p.dt
    elif dur_p is not None and isinstance(dur_p.dt, timedelta):
        end = start + dur_p.dt
    else:
        raise _Unsure
    for moment in (start, end):
        if not isinstance(moment, datetime) or moment.tzinfo is None or is_pytz(moment.tzinfo):
            raise _Unsure
    if start > end:
        raise _Unsure
    return start, end


def _expand(
    core: dict[str, Any],
    mods: list[dict[str, Any]],
    uid: str,
    window: Window,
    href: str,
    limits: ParseLimits,
    too_frequent: TooFrequent,
) -> tuple[EventData, ...]:
    """``Series.between`` of recurring-ical-events for this series, then ``_occurrences``."""
    start, end = _span(core)
    duration = end - start
    exdates: set[Any] = set()
    for exdate in (
        core.get("EXDATE", [])
        if isinstance(core.get("EXDATE"), list)
        else ([core["EXDATE"]] if "EXDATE" in core else [])
    ):
        for value in exdate.dts:
            moment = value.dt
            if not isinstance(moment, datetime) or moment.tzinfo is None:
                raise _Unsure
            exdates.update(to_recurrence_ids(moment))
            exdates.add(moment)
    by_id: dict[Any, dict[str, Any]] = {}
    spans: dict[int, tuple[datetime, datetime]] = {}
    mod_ids: dict[int, tuple[Any, ...]] = {}
    for mod in mods:
        rid_p = mod["RECURRENCE-ID"]
        if rid_p.params.get("RANGE") or not isinstance(rid_p.dt, datetime):
            raise _Unsure
        if rid_p.dt.tzinfo is None:
            raise _Unsure
        ids = to_recurrence_ids(rid_p.dt)
        if any(i in by_id for i in ids):
            raise _Unsure  # two overrides of one occurrence: their SEQUENCE decides
        for i in ids:
            by_id[i] = mod
        spans[id(mod)] = _span(mod)
        mod_ids[id(mod)] = ids
    rule_text = core["RRULE"].to_ical().decode()
    rule_text = NEGATIVE_RRULE_COUNT_REGEX.sub("", rule_text)
    rule = rrulestr(rule_text, dtstart=start, cache=True)
    if not isinstance(rule, rrule):
        raise _Unsure
    until = None
    parts = rule_text.split(";UNTIL=")
    if len(parts) > 2:
        raise _Unsure
    if len(parts) == 2:
        cut = parts[1].find(";")
        until = vDDDTypes.from_ical(parts[1][: cut if cut >= 0 else len(parts[1])])  # type: ignore[no-untyped-call]
    rule_set = rruleset(cache=True)
    if not until or not compare_greater(start, until):
        rule_set.rdate(start)
    rules: list[Any] = [rule_set, rule]
    zone = zoneinfo_for(window.zone)
    series = SimpleNamespace(recurrence=SimpleNamespace(rrules=rules, tzinfo=start.tzinfo))
    if too_frequent(series, window, zone, limits):
        raise _Unsure  # kept as one flagged item by the full path
    low, high = window.start, window.end
    wide_low = convert_to_datetime(normalize_pytz(low - duration), start.tzinfo)
    wide_high = convert_to_datetime(normalize_pytz(high), start.tzinfo)
    found: list[tuple[dict[str, Any], datetime, datetime]] = []
    seen_starts: set[Any] = set()
    seen_mods: set[int] = set()
    for r in rules:
        for when in r.between(wide_low, wide_high, inc=True):
            if r is rule and until is not None and compare_greater(when, until):
                continue
            ids = to_recurrence_ids(when)
            if when in seen_starts or exdates & set(ids):
                continue
            mod = get_any(by_id, ids, None)
            if mod is None:
                seen_starts.add(when)
                o_start = normalize_pytz(when)
                o_end = normalize_pytz(o_start + duration)
                if time_span_contains_event(low, high, o_start, o_end):
                    found.append((core, o_start, o_end))
                continue
            if id(mod) in seen_mods:
                continue
            seen_mods.add(id(mod))
            m_start, m_end = spans[id(mod)]
            if time_span_contains_event(low, high, m_start, m_end):
                found.append((mod, m_start, m_end))
    rest = [
        m
        for m in mods
        if id(m) not in seen_mods
        and not exdates & set(mod_ids[id(m)])
        and time_span_contains_event(low, high, *spans[id(m)])
    ]
    if len(rest) > 1:
        raise _Unsure  # the library yields these in an order of its own
    found.extend((m, *spans[id(m)]) for m in rest)
    kept: list[EventData] = []
    keys: set[tuple[str, str]] = set()
    recurring = {uid}
    for comp, o_start, o_end in found:
        props = dict(comp)
        props["DTSTART"] = plain_date(o_start)
        props.pop("DURATION", None)
        props["DTEND"] = plain_date(o_end)
        for name in ("RRULE", "EXDATE"):
            props.pop(name, None)
        if "RECURRENCE-ID" not in props:
            props["RECURRENCE-ID"] = plain_date(props["DTSTART"].dt)
        event = event_from_component(props, zone, href, recurring)
        if event.key in keys:
            continue
        keys.add(event.key)
        kept.append(event)
    return tuple(kept)
