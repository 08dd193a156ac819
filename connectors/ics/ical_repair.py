"""What is wrong in a series is left out by the property, not by the series.

icalendar keeps a value it cannot read as ``vBroken`` (and recurring-ical-events then
fails on the whole series). ``repair`` goes through the VEVENTs of a calendar before
it is expanded and, for each unreadable property, does the least that lets the rest be
read, saying what it did: the unreadable values of an RDATE or EXDATE are left out (the
rule and the other dates stay), an unreadable SEQUENCE counts as 0, an unreadable
DTEND, DURATION or RRULE is ignored, and a VEVENT whose DTSTART or RECURRENCE-ID cannot
be read is left out. An all-day event whose DTEND date equals its DTSTART (not valid,
common in holiday feeds) lasts one day.

Notes name the property and the number of values, never the content.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import icalendar
from icalendar.prop import vBroken, vDDDLists, vDDDTypes

# Properties ignored (with a note) when unreadable: the event is still read without them.
_IGNORED = {
    "SEQUENCE": "counted as 0",
    "DTEND": "the event is read without an end",
    "DURATION": "the event is read without a duration",
    "RRULE": "the event is read without its rule",
    "EXRULE": "the event is read without it",
}
_LISTS = ("RDATE", "EXDATE")
_ESSENTIAL = ("DTSTART", "RECURRENCE-ID")
# Properties a VEVENT has at most once (RFC 5545 3.6.1): of several, the first is read.
_SINGLE = ("DTSTART", "DTEND", "DURATION", "RECURRENCE-ID", "SEQUENCE")


def repair(cal: icalendar.Calendar, where: Callable[[Any], str]) -> list[str]:
    """Mend the VEVENTs of ``cal`` in place; notes on what was left out, by ``where(event)``."""
    notes: list[str] = []
    kept: list[Any] = []
    changed = False
    for comp in cal.subcomponents:
        if comp.name != "VEVENT":
            kept.append(comp)
            continue
        for name in _SINGLE:
            given = comp.get(name)
            if isinstance(given, list):
                comp[name] = given[0]
                notes.append(f"{where(comp)}: {name} given {len(given)} times; the first is read")
        lost = _essential_lost(comp)
        if lost:
            notes.append(f"{where(comp)}: an event whose {lost} cannot be read was left out")
            changed = True
            continue
        kept.append(comp)
        for name, what in _IGNORED.items():
            if any(isinstance(v, vBroken) for v in _values(comp.get(name))):
                del comp[name]
                notes.append(f"{where(comp)}: {name} cannot be read; {what}")
        for name in _LISTS:
            left_out = _mend_list(comp, name)
            if left_out:
                notes.append(
                    f"{where(comp)}: {name}: {left_out} value(s) cannot be read and were "
                    "left out; the rest of the series is kept"
                )
        _one_day_at_least(comp)
    if changed:
        cal.subcomponents[:] = kept
    return notes


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _essential_lost(comp: Any) -> str:
    if "DTSTART" not in comp:
        return "DTSTART"
    for name in _ESSENTIAL:
        if any(isinstance(v, vBroken) for v in _values(comp.get(name))):
            return name
    return ""


def _mend_list(comp: Any, name: str) -> int:
    """Keep the readable values of every ``name`` line (dates, date-times, periods); the
    number left out (unreadable, or of a kind a recurrence set cannot hold, like TIME)."""
    values = _values(comp.get(name))
    if all(not isinstance(v, vBroken) and all(_usable(d) for d in v.dts) for v in values):
        return 0
    left_out = 0
    mended: list[Any] = []
    for value in values:
        params = getattr(value, "params", None) or {}
        good: list[Any] = []
        if isinstance(value, vBroken):
            for piece in str(value).split(","):
                try:
                    read = vDDDLists.from_ical(piece.strip(), params.get("TZID"))  # type: ignore[no-untyped-call]
                    good.extend(read)
                except (ValueError, TypeError, KeyError, IndexError):
                    left_out += 1
        else:
            good = [d.dt for d in value.dts]
        usable = [v for v in good if _usable_value(v)]
        left_out += len(good) - len(usable)
        if usable:
            line = vDDDLists(usable)
            line.params = icalendar.Parameters(params)
            mended.append(line)
    del comp[name]
    for value in mended:
        comp.add(name, value, encode=False)
    return left_out


def _usable(value: Any) -> bool:
    return _usable_value(getattr(value, "dt", None))


def _usable_value(value: Any) -> bool:
    if isinstance(value, tuple):  # a PERIOD: start and end or duration
        return len(value) == 2 and isinstance(value[0], datetime)
    return isinstance(value, date)


def _one_day_at_least(comp: Any) -> None:
    """An all-day DTEND on the DTSTART date (RFC-invalid) reads as one day."""
    start, end = comp.get("DTSTART"), comp.get("DTEND")
    if end is None or isinstance(end, list) or isinstance(start, list):
        return
    s, e = getattr(start, "dt", None), getattr(end, "dt", None)
    if isinstance(s, date) and not isinstance(s, datetime) and e == s:
        params = end.params
        comp["DTEND"] = vDDDTypes(s + timedelta(days=1))
        comp["DTEND"].params = params
