"""The fast path for single events gives exactly what icalendar + recurring-ical-events give.

``parse_resource(..., fast=False)`` is the full path; ``fast_single`` answers None when
it is not sure, and then the full path decides. Every case here asserts that whenever
the fast path answers, its events equal the full path's (and that it answers for the
plain cases, so the comparison is not empty).
"""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import icalendar
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.domain.model import OWN_EVENT_PROPERTY
from connectors.base import InvalidData, Window
from connectors.ics.ical import parse_resource
from connectors.ics.ical_fast import fast_single

EVALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "evaldata" / "ics"
HREF = "/cal/item.ics"
WIDE = Window(datetime(1990, 1, 1, tzinfo=UTC), datetime(2035, 1, 1, tzinfo=UTC), "Europe/Berlin")
NARROW = Window(datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 4, 1, tzinfo=UTC), "Europe/Berlin")


def full(text: str | bytes, window: Window) -> tuple[object, ...] | str:
    try:
        return parse_resource(HREF, "e", text, window, fast=False).events
    except InvalidData as exc:
        return f"invalid: {exc}"


def check(text: str | bytes, window: Window) -> bool:
    """Assert fast == full whenever the fast path answers; True when it answered."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = fast_single(text, window, HREF)
        expected = full(text, window)
    if fast is None:
        return False
    assert fast == expected
    assert parse_resource(HREF, "e", text, window).events == expected
    return True


def windows_around(text: str | bytes) -> list[Window]:
    """The wide window, and windows whose edges fall on and near the event's start."""
    out = [WIDE, NARROW]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            events = parse_resource(HREF, "e", text, WIDE, fast=False).events
        except InvalidData:
            return out
    for e in events[:1]:
        for shift in (timedelta(0), timedelta(hours=13)):
            for zone in ("Pacific/Kiritimati", "America/Adak"):
                out.append(Window(e.start - shift, e.start + timedelta(days=30), zone))
                out.append(Window(e.start - timedelta(days=30), e.start + shift, zone))
                out.append(Window(e.end + shift, e.end + timedelta(days=30), zone))
    return out


# ------------------------------------------------------------------------- evaldata


def evaldata_files() -> list[Path]:
    return sorted(EVALDATA.rglob("*.ics")) if EVALDATA.is_dir() else []


def single_event_calendars(raw: bytes) -> list[bytes]:
    """Each VEVENT of a feed as its own calendar object (with the feed's VTIMEZONEs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cal = icalendar.Calendar.from_ical(raw)
        except Exception:
            return []
        if isinstance(cal, list) or cal.name != "VCALENDAR":
            return []
        out = []
        for event in cal.walk("VEVENT"):
            sub = icalendar.Calendar()
            for key in ("PRODID", "VERSION", "X-WR-TIMEZONE"):
                if key in cal:
                    sub[key] = cal[key]
            for tz in cal.walk("VTIMEZONE"):
                sub.add_component(tz)
            sub.add_component(event)
            try:
                out.append(sub.to_ical())
            except Exception:
                continue
        return out


@pytest.mark.evaldata
@pytest.mark.skipif(not EVALDATA.is_dir(), reason=f"evaldata not present at {EVALDATA}")
def test_evaldata_files_and_their_events_parse_alike() -> None:
    answered = 0
    for path in evaldata_files():
        raw = path.read_bytes()
        for window in (WIDE, NARROW):
            answered += check(raw, window)
        for i, text in enumerate(single_event_calendars(raw)[:40]):
            for window in windows_around(text) if i < 5 else [NARROW]:
                answered += check(text, window)
    assert answered > 100  # the fast path really ran on the real files


# ------------------------------------------------------------------------ generated

BEGIN = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
END = "END:VCALENDAR\r\n"
BERLIN_TZ = (
    "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
    "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\n"
    "END:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nTZOFFSETFROM:+0100\r\n"
    "TZOFFSETTO:+0200\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\n"
    "END:VTIMEZONE\r\n"
)
WINDOWS_TZ = (
    "BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\nBEGIN:STANDARD\r\n"
    "DTSTART:16010101T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n"
    "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\n"
    "DTSTART:16010101T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n"
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
)


def fold(line: str) -> str:
    """RFC 5545 folding at 75 octets (here: characters), continuation lines start with a space."""
    out, rest = [], line
    while len(rest) > 75:
        out.append(rest[:75])
        rest = " " + rest[75:]
    out.append(rest)
    return "\r\n".join(out) + "\r\n"


def escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def vevent(*lines: str, calendar: str = "", zones: str = "") -> str:
    body = "".join(fold(line) for line in lines)
    return f"{BEGIN}{calendar}{zones}BEGIN:VEVENT\r\n{body}END:VEVENT\r\n{END}"


TIMES = {
    "utc": ("DTSTART:20300115T090000Z", "DTEND:20300115T100000Z"),
    "floating": ("DTSTART:20300115T090000", "DTEND:20300115T103000"),
    "tzid": (
        "DTSTART;TZID=Europe/Berlin:20300115T090000",
        "DTEND;TZID=Europe/Berlin:20300115T1000",
    ),
    "tzid-ok": (
        "DTSTART;TZID=Europe/Berlin:20300115T090000",
        "DTEND;TZID=Europe/Berlin:20300115T100000",
    ),
    "windows": (
        "DTSTART;TZID=W. Europe Standard Time:20300115T090000",
        "DTEND;TZID=W. Europe Standard Time:20300115T100000",
    ),
    "quoted-tzid": ('DTSTART;TZID="America/New_York":20300115T090000', "DURATION:PT45M"),
    "all-day": ("DTSTART;VALUE=DATE:20300115", "DTEND;VALUE=DATE:20300117"),
    "all-day-no-end": ("DTSTART;VALUE=DATE:20300115", ""),
    "no-end": ("DTSTART:20300115T090000Z", ""),
    "duration": ("DTSTART:20300115T090000Z", "DURATION:PT1H30M"),
    "mixed": ("DTSTART;TZID=Europe/Berlin:20300115T090000", "DTEND:20300115T100000"),
    "backwards": ("DTSTART:20300115T100000Z", "DTEND:20300115T090000Z"),
    "date-and-time": ("DTSTART;VALUE=DATE:20300115", "DTEND:20300116T100000Z"),
    "outside": ("DTSTART:20250115T090000Z", "DTEND:20250115T100000Z"),
    "edge": ("DTSTART:20300101T000000Z", "DTEND:20300101T000000Z"),
}


@pytest.mark.parametrize("kind", sorted(TIMES))
def test_times_of_every_kind(kind: str) -> None:
    start, end = TIMES[kind]
    lines = ["UID:kind@test", "DTSTAMP:20291201T000000Z", start, *([end] if end else [])]
    lines.append("SUMMARY:Kind " + kind)
    zones = WINDOWS_TZ if kind == "windows" else BERLIN_TZ if "tzid" in kind else ""
    for text in (vevent(*lines), vevent(*lines, zones=zones)):
        for window in windows_around(text):
            check(text, window)
    plain = {"utc", "floating", "tzid-ok", "windows", "all-day", "all-day-no-end", "no-end"}
    if kind in plain | {"duration", "outside", "quoted-tzid"}:
        assert fast_single(vevent(*lines), NARROW, HREF) is not None
    if kind == "windows":  # icalendar keeps the rules of a zone it does not know: full path
        assert fast_single(vevent(*lines, zones=zones), NARROW, HREF) is None


def test_events_at_the_window_edges_are_answered_as_the_full_path_answers() -> None:
    """Near an edge the fast path itself decides for times in a zone (touching, zero
    length, ending or starting exactly at an edge); floating times and dates still go
    the full way there."""
    at = datetime(2030, 3, 30, 23, 30, tzinfo=UTC)  # Berlin moves its clocks that night
    kinds = [
        ("DTSTART:20300330T233000Z", "DTEND:20300331T003000Z"),
        ("DTSTART:20300330T233000Z", ""),
        ("DTSTART:20300330T233000Z", "DURATION:PT2H"),
        ("DTSTART;TZID=Europe/Berlin:20300331T003000", "DTEND;TZID=Europe/Berlin:20300331T033000"),
        ("DTSTART;TZID=Europe/Berlin:20300331T003000", "DURATION:PT3H"),
        ("DTSTART:20300330T233000Z", "DTEND;TZID=Europe/Berlin:20300331T033000"),
    ]
    offsets = [timedelta(minutes=m) for m in (-61, -60, -1, 0, 1, 59, 60, 61, 120, 121, 180)]
    answered = 0
    for start, end in kinds:
        text = vevent("UID:edge@t", start, *([end] if end else []), "SUMMARY:e", zones=BERLIN_TZ)
        for shift in offsets:
            for zone in ("UTC", "Europe/Berlin"):
                answered += check(text, Window(at + shift, at + timedelta(days=30), zone))
                answered += check(text, Window(at - timedelta(days=30), at + shift, zone))
    assert answered == len(kinds) * len(offsets) * 4
    floating = vevent("UID:f@t", "DTSTART:20300331T003000", "DTEND:20300331T013000")
    assert fast_single(floating, Window(at, at + timedelta(days=30), "UTC"), HREF) is None


def test_x_wr_timezone_and_series_go_the_full_way() -> None:
    wr = vevent(
        "UID:x@t", "DTSTART:20300115T090000", "SUMMARY:x", calendar="X-WR-TIMEZONE:Asia/Tokyo\r\n"
    )
    assert fast_single(wr, NARROW, HREF) is None
    assert check(wr, NARROW) is False and full(wr, NARROW)
    for extra in (
        "RRULE:FREQ=WEEKLY;COUNT=3",
        "EXDATE:20300122T090000Z",
        "RDATE:20300201T090000Z",
        "RECURRENCE-ID:20300115T090000Z",
    ):
        text = vevent("UID:s@t", "DTSTART:20300115T090000Z", extra)
        assert fast_single(text, NARROW, HREF) is None


def test_everything_the_assistant_reads_from_a_single_event() -> None:
    text = vevent(
        "UID:rich@test",
        "DTSTAMP:20291201T000000Z",
        "DTSTART;TZID=Europe/Berlin:20300115T090000",
        "DTEND;TZID=Europe/Berlin:20300115T100000",
        "SUMMARY:Budget\\, Q1\\; final\\nreview \\\\ notes " + "long " * 30,
        "LOCATION:Room 4\\, Floor 2 https://teams.microsoft.com/l/meetup-join/abc",
        "DESCRIPTION:Line one\\nLine two\\, with comma\\; semicolon\\NJoin: https://zoom.us/j/123",
        "URL:https://example.com/a,b;c",
        "CLASS:PRIVATE",
        "TRANSP:TRANSPARENT",
        "STATUS:CANCELLED",
        "ORGANIZER;CN=Boss:mailto:Boss@Example.com",
        'ATTENDEE;CN="Doe, Jane";PARTSTAT=ACCEPTED;ROLE=REQ-PARTICIPANT:mailto:jane@example.com',
        "ATTENDEE;PARTSTAT=DECLINED;ROLE=OPT-PARTICIPANT:MAILTO:bob@example.com",
        "ATTENDEE;PARTSTAT=TENTATIVE;CN=Ann:mailto:ann@example.com",
        "ATTENDEE:mailto:nobody@example.com",
        "CATEGORIES:Work,Delegation\\,Urgent",
        "CATEGORIES:Second",
        f"{OWN_EVENT_PROPERTY}:checkpoint:42:red",
        "X-MODIFIED-BY:mailto:Assistant@Example.com",
        "X-MICROSOFT-SKYPETEAMSMEETINGURL:https://teams.microsoft.com/l/x",
        zones=BERLIN_TZ,
    )
    assert check(text, NARROW)
    (event,) = parse_resource(HREF, "e", text, NARROW).events
    assert event.private and not event.busy and event.own_marker == "checkpoint:42:red"
    assert [a.response.value for a in event.attendees][:3] == ["accepted", "declined", "tentative"]
    alarm = text.replace(
        "END:VEVENT",
        "BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nDESCRIPTION:x\r\nEND:VALARM\r\nEND:VEVENT",
    )
    assert check(alarm, NARROW)


def test_broken_input_is_left_to_the_full_path() -> None:
    for text in (
        "",
        "not a calendar",
        "BEGIN:VEVENT\r\nUID:bare@t\r\nDTSTART:20300115T090000Z\r\nEND:VEVENT\r\n",
        vevent("UID:a@t", "DTSTART:20300115T090000Z") + vevent("UID:b@t", "DTSTART:20300116T090000Z"),
        vevent("UID:bad@t", "DTSTART:2030-01-15"),
        vevent("DTSTART:20300115T090000Z", "SUMMARY:no uid"),
        vevent("UID:c@t", "DTSTART:20300115T090000Z").replace("VERSION:2.0", "VERSION:2.0\r\nbroken line"),
        vevent("UID:d@t", "DTSTART;TZID=Custom/Zone:20300115T090000",
               zones=BERLIN_TZ.replace("Europe/Berlin", "Custom/Zone")),
        vevent("UID:e@t", "DTSTART:20300115T090000Z", "DTSTART:20300116T090000Z"),
    ):  # fmt: skip
        check(text, NARROW)
        check(text.encode(), NARROW)
    assert check("\ufeff" + vevent("UID:bom@t", "DTSTART:20300115T090000Z"), NARROW)
    assert check(b"\xef\xbb\xbf" + vevent("UID:bom@t", "DTSTART:20300115T090000Z").encode(), NARROW)


text_values = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]) | st.sampled_from(",;\\\n:\"'"),
    max_size=120,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(TIMES)),
    summary=text_values,
    location=text_values,
    description=text_values,
    cn=st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=20),
    partstat=st.sampled_from(
        ["ACCEPTED", "DECLINED", "TENTATIVE", "DELEGATED", "NEEDS-ACTION", "X-ODD"]
    ),
    klass=st.sampled_from(["", "PUBLIC", "PRIVATE", "CONFIDENTIAL"]),
    transp=st.sampled_from(["", "OPAQUE", "TRANSPARENT"]),
    status=st.sampled_from(["", "CONFIRMED", "TENTATIVE", "CANCELLED"]),
    marker=st.sampled_from(["", "checkpoint:1", "x\\,y"]),
    day=st.integers(-40, 120),
    crlf=st.booleans(),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "Pacific/Kiritimati", "America/Adak"]),
)
def test_generated_single_events(
    kind: str,
    summary: str,
    location: str,
    description: str,
    cn: str,
    partstat: str,
    klass: str,
    transp: str,
    status: str,
    marker: str,
    day: int,
    crlf: bool,
    zone: str,
) -> None:
    start, end = TIMES[kind]
    shift = (date(2030, 1, 15) + timedelta(days=day)).strftime("%Y%m%d")
    start, end = start.replace("20300115", shift), end.replace("20300115", shift)
    quoted = cn.replace('"', "")
    lines = [
        "UID:gen@test",
        start,
        *([end] if end else []),
        "SUMMARY:" + escape(summary),
        "LOCATION:" + escape(location),
        "DESCRIPTION:" + escape(description),
        f'ATTENDEE;CN="{quoted}";PARTSTAT={partstat}:mailto:a@example.com',
        *([f"CLASS:{klass}"] if klass else []),
        *([f"TRANSP:{transp}"] if transp else []),
        *([f"STATUS:{status}"] if status else []),
        *([f"{OWN_EVENT_PROPERTY}:{marker}"] if marker else []),
    ]
    zones = WINDOWS_TZ if kind == "windows" else BERLIN_TZ if "tzid" in kind else ""
    text = vevent(*lines, zones=zones)
    if not crlf:
        text = text.replace("\r\n", "\n")
    window = Window(NARROW.start, NARROW.end, zone)
    check(text, window)
    check(text.encode(), window)
