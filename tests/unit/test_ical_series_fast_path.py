"""The fast path for one series gives exactly what icalendar + recurring-ical-events give.

``parse_resource(..., fast=False)`` is the full path; ``fast_series`` answers None when
it is not sure, and then the full path decides. Every case asserts that the resource
read with the fast paths first equals the full path's (events in the same order, the
same notes), and that the series path answered for the plain cases.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import DEFAULT_LIMITS, InvalidData, Window
from connectors.ics.ical import _too_frequent, parse_resource
from connectors.ics.ical_scan import bound_calendar
from connectors.ics.ical_series import fast_series

HREF = "/cal/series.ics"
WINDOW = Window(
    datetime(2030, 1, 7, tzinfo=UTC), datetime(2030, 5, 14, tzinfo=UTC), "Europe/Berlin"
)
BERLIN_TZ = (
    "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
    "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\n"
    "END:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nTZOFFSETFROM:+0100\r\n"
    "TZOFFSETTO:+0200\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\n"
    "END:VTIMEZONE\r\n"
)


def calendar(*events: list[str], zones: str = "") -> str:
    body = "".join(
        "BEGIN:VEVENT\r\n" + "".join(f"{x}\r\n" for x in e) + "END:VEVENT\r\n" for e in events
    )
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n{zones}{body}END:VCALENDAR\r\n"


def full(text: str, window: Window) -> object:
    try:
        res = parse_resource(HREF, "e", text, window, fast=False)
    except InvalidData as exc:
        return f"invalid: {exc}"
    return (res.events, res.notes)


def check(text: str, window: Window) -> bool:
    """Assert the fast paths give the full path's resource; True when the series path answered."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw, _ = bound_calendar(text, DEFAULT_LIMITS, HREF)
        answered = fast_series(raw, window, HREF, DEFAULT_LIMITS, _too_frequent) is not None
        expected = full(text, window)
        try:
            res = parse_resource(HREF, "e", text, window)
            got: object = (res.events, res.notes)
        except InvalidData as exc:
            got = f"invalid: {exc}"
    if answered or isinstance(got, str) or isinstance(expected, str):
        assert got == expected
    else:  # full against full: the library yields moved occurrences off the rule in any order
        assert _sorted(got) == _sorted(expected)
    return answered


def _sorted(read: object) -> object:
    events, notes = read  # type: ignore[misc]
    return sorted(events, key=lambda e: (e.start, e.recurrence_id, e.summary)), notes


def stamp(moment: datetime, zone: str) -> str:
    if zone == "UTC":
        return ":" + moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f";TZID={zone}:" + moment.strftime("%Y%m%dT%H%M%S")


RULES = [
    "FREQ=WEEKLY;COUNT=12",
    "FREQ=WEEKLY",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH",
    "FREQ=DAILY;COUNT=40",
    "FREQ=DAILY;INTERVAL=3",
    "FREQ=MONTHLY;BYMONTHDAY=31",
    "FREQ=WEEKLY;UNTIL=20300401T000000Z",
    "FREQ=WEEKLY;BYDAY=TU;UNTIL=20300305T090000Z",
    "FREQ=WEEKLY;COUNT=-3",
    "FREQ=HOURLY;INTERVAL=5;COUNT=30",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rule=st.sampled_from(RULES),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
    with_tz=st.booleans(),
    day=st.integers(-60, 120),
    hour=st.integers(0, 23),
    minutes=st.sampled_from([0, 15, 45, 90, 24 * 60, 3 * 24 * 60]),
    use_duration=st.booleans(),
    exdates=st.lists(st.integers(0, 15), max_size=3),
    exdate_shift=st.sampled_from([0, 0, 60]),
    moved=st.lists(st.tuples(st.integers(-1, 15), st.integers(-200, 200)), max_size=3),
    window_zone=st.sampled_from(["Europe/Berlin", "UTC", "Pacific/Kiritimati"]),
    edge=st.integers(-3, 3),
)
def test_generated_series(
    rule: str,
    zone: str,
    with_tz: bool,
    day: int,
    hour: int,
    minutes: int,
    use_duration: bool,
    exdates: list[int],
    exdate_shift: int,
    moved: list[tuple[int, int]],
    window_zone: str,
    edge: int,
) -> None:
    tz = UTC if zone == "UTC" else __import__("zoneinfo").ZoneInfo(zone)
    start = datetime(2030, 1, 10, hour, tzinfo=tz) + timedelta(days=day)
    step = timedelta(days=1) if "DAILY" in rule else timedelta(weeks=1)
    length = timedelta(minutes=minutes)
    master = [
        "UID:series@test",
        "DTSTAMP:20291201T000000Z",
        "DTSTART" + stamp(start, zone),
        f"DURATION:PT{minutes}M" if use_duration else "DTEND" + stamp(start + length, zone),
        f"RRULE:{rule}",
        "SUMMARY:Weekly",
        "LOCATION:Room 1",
    ]
    for k in exdates:
        master.append("EXDATE" + stamp(start + k * step + timedelta(minutes=exdate_shift), zone))
    overrides = []
    for k, hours in moved:
        original = start + k * step
        new = original + timedelta(hours=hours)
        overrides.append(
            [
                "UID:series@test",
                "RECURRENCE-ID" + stamp(original, zone),
                "DTSTART" + stamp(new, zone),
                "DTEND" + stamp(new + length, zone),
                f"SUMMARY:Moved {k}",
            ]
        )
    text = calendar(
        master, *overrides, zones=BERLIN_TZ if with_tz and zone == "Europe/Berlin" else ""
    )
    low = WINDOW.start + edge * timedelta(hours=7)
    check(text, Window(low, WINDOW.end, window_zone))
    check(
        text,
        Window(
            start - timedelta(days=1), start + 10 * step + edge * timedelta(hours=1), window_zone
        ),
    )


def test_the_series_path_answers_for_plain_series() -> None:
    start = datetime(2030, 1, 8, 9, tzinfo=UTC)
    master = [
        "UID:s@t",
        "DTSTART" + stamp(start, "UTC"),
        "DTEND" + stamp(start + timedelta(minutes=45), "UTC"),
        "RRULE:FREQ=WEEKLY;COUNT=12",
        "EXDATE" + stamp(start + timedelta(weeks=4), "UTC"),
        "SUMMARY:Weekly",
    ]
    moved = [
        "UID:s@t",
        "RECURRENCE-ID" + stamp(start + timedelta(weeks=2), "UTC"),
        "DTSTART" + stamp(start + timedelta(weeks=2, hours=2), "UTC"),
        "DTEND" + stamp(start + timedelta(weeks=2, hours=3), "UTC"),
        "SUMMARY:Moved",
    ]
    berlin = [line.replace(":20300", ";TZID=Europe/Berlin:20300").replace("00Z", "00")
              for line in master]  # fmt: skip
    for text in (calendar(master), calendar(master, moved), calendar(berlin, zones=BERLIN_TZ)):
        assert check(text, WINDOW)
    (events, _) = full(calendar(master, moved), WINDOW)  # type: ignore[misc]
    assert len(events) == 11 and events[2].summary == "Moved"


def test_what_the_series_path_does_not_read_goes_the_full_way() -> None:
    start = "DTSTART:20300108T090000Z"
    for events in (
        [["UID:a@t", start, "RRULE:FREQ=WEEKLY;COUNT=3", "RDATE:20300301T090000Z"]],
        [["UID:a@t", "DTSTART:20300108T090000", "RRULE:FREQ=WEEKLY;COUNT=3"]],  # floating
        [["UID:a@t", "DTSTART;VALUE=DATE:20300108", "RRULE:FREQ=WEEKLY;COUNT=3"]],  # all day
        [["UID:a@t", start, "RRULE:FREQ=WEEKLY;COUNT=3"], ["UID:b@t", start, "SUMMARY:x"]],
        [["UID:a@t", start, "RRULE:FREQ=WEEKLY;COUNT=3", "SEQUENCE:x"]],
        [
            [
                "UID:a@t",
                start,
                "RRULE:FREQ=WEEKLY;COUNT=3",
                "DTEND:20300108T100000Z",
                "DTEND:20300108T110000Z",
            ]
        ],
        [["UID:a@t", start, "RRULE:FREQ=MINUTELY"]],
        [
            ["UID:a@t", start, "DURATION:PT1H", "RRULE:FREQ=WEEKLY;COUNT=3"],
            [
                "UID:a@t",
                "RECURRENCE-ID;RANGE=THISANDFUTURE:20300115T090000Z",
                "DTSTART:20300115T100000Z",
                "DURATION:PT1H",
            ],
        ],
    ):
        text = calendar(*events)
        assert not check(text, WINDOW)
