"""Bounding and splitting a calendar's text (connectors.ics.ical_scan)."""

from __future__ import annotations

import pytest

from connectors.base import TRUNCATED, InvalidData, ParseLimits
from connectors.ics.ical_scan import bound_calendar, event_uid, split_calendar, zones_named

HEAD = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n"
TAIL = b"END:VCALENDAR\r\n"
SMALL = ParseLimits(property_bytes=300, events_per_calendar=2, properties_per_event=20)


def event(uid: str, *lines: str) -> bytes:
    body = "".join(f"{line}\r\n" for line in lines)
    return f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTART:20300101T100000Z\r\n{body}END:VEVENT\r\n".encode()


def test_a_long_text_is_cut_whole_characters_and_escapes_and_marked() -> None:
    text = "DESCRIPTION;LANGUAGE=de:" + "ä\\," * 400
    raw, notes = bound_calendar(HEAD + event("a", text) + TAIL, SMALL, "cal")
    line = next(x for x in raw.split(b"\r\n") if x.startswith(b"DESCRIPTION"))
    assert line.endswith(TRUNCATED.encode()) and len(line) <= 300
    value = line.decode("utf-8")  # no half character
    assert not value.removesuffix(TRUNCATED).endswith("\\")  # no half escape
    assert notes == ["cal: 1 text(s) longer than 300 bytes were cut (marked [truncated])"]


def test_a_folded_long_text_is_unfolded_before_it_is_measured() -> None:
    folded = "SUMMARY:" + "\r\n ".join(["x" * 70] * 10)
    raw, notes = bound_calendar(HEAD + event("a", folded) + TAIL, SMALL, "cal")
    assert b"\r\n x" not in raw and len(notes) == 1


def test_a_long_property_that_is_not_text_is_left_out() -> None:
    raw, notes = bound_calendar(
        HEAD + event("a", "RDATE:" + "20300101T100000Z," * 40) + TAIL, SMALL, "c"
    )
    assert b"RDATE" not in raw and b"UID:a" in raw
    assert "left out" in notes[0]


def test_events_beyond_the_cap_and_crowded_events_are_left_out() -> None:
    crowded = event("c", *(f"ATTENDEE:mailto:p{i}@x.org" for i in range(30)))
    data = HEAD + event("a") + crowded + event("b") + event("d") + TAIL
    raw, notes = bound_calendar(data, SMALL, "cal")
    assert [event_uid(b) for b in split_calendar(raw).events] == ["a"]
    assert "2 event(s) beyond the limit of 2" in notes[0]  # the crowded one counts
    assert "1 event(s) with more than 20 lines" in notes[1]


def test_nesting_deeper_than_the_limit_names_the_line() -> None:
    deep = HEAD + b"BEGIN:X\r\n" * 9 + b"END:X\r\n" * 9 + TAIL
    with pytest.raises(InvalidData, match=r"cal: components nested deeper than 8 \(line 11\)"):
        bound_calendar(deep, ParseLimits(), "cal")


def test_split_keeps_zones_header_and_events_apart() -> None:
    zone = b"BEGIN:VTIMEZONE\r\nTZID:My Zone\r\nEND:VTIMEZONE\r\n"
    alarm = b"BEGIN:VALARM\r\nUID:alarm\r\nEND:VALARM\r\n"
    ev = (
        b"BEGIN:VEVENT\r\n"
        + alarm
        + b'DTSTART;TZID="My Zone":20300101T100000\r\nUID:x\\,y\r\nEND:VEVENT\r\n'
    )
    parts = split_calendar(HEAD + b"X-WR-TIMEZONE:Europe/Berlin\r\n" + zone + ev + TAIL)
    assert parts.header == b"X-WR-TIMEZONE:Europe/Berlin\r\n"
    assert parts.zones == {"My Zone": zone}
    assert parts.events == [ev] and b"VEVENT" not in parts.skeleton
    assert event_uid(ev) == "x,y"  # the event's own UID, unescaped, not the alarm's
    assert zones_named(parts.events) == {"My Zone"}
