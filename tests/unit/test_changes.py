"""The change detector, table-driven: every kind, recurrence, horizon, zones, noise."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from assistant.domain.changes import ChangeKind, DetectionRules, detect_changes
from assistant.domain.model import Attendee, EventData, EventStatus, Response
from connectors.base import Window
from connectors.ics.ical import parse_resource

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
MANAGER = "ceo@example.com"
RULES = DetectionRules(horizon=timedelta(days=14), manager_emails=frozenset({MANAGER}))


def ev(uid: str = "a", hours: float = 24, length: float = 1, **kw: object) -> EventData:
    start = NOW + timedelta(hours=hours)
    base = EventData(
        uid=uid,
        start=start,
        end=start + timedelta(hours=length),
        summary="Board meeting",
        location="Room 1",
        attendees=(Attendee(MANAGER, response=Response.ACCEPTED), Attendee("cfo@example.com")),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def snap(*events: EventData) -> dict[tuple[str, str], EventData]:
    return {e.key: e for e in events}


def kinds(old: list[EventData], new: list[EventData], **kw: object) -> list[set[str]]:
    found = detect_changes(snap(*old), snap(*new), NOW, RULES, **kw)  # type: ignore[arg-type]
    return [{k.value for k in c.kinds} for c in found]


E = ev()
CASES = [
    ("nothing", [E], [E], []),
    ("created", [], [E], [{"created"}]),
    ("deleted", [E], [], [{"deleted"}]),
    ("cancelled", [E], [replace(E, status=EventStatus.CANCELLED)], [{"cancelled"}]),
    ("reinstated", [replace(E, status=EventStatus.CANCELLED)], [E], [{"created"}]),
    ("created cancelled is nothing", [], [replace(E, status=EventStatus.CANCELLED)], []),
    ("moved", [E], [ev(hours=26)], [{"moved"}]),
    ("longer", [E], [ev(length=2)], [{"moved"}]),
    ("relocated", [E], [replace(E, location="Room 2")], [{"relocated"}]),
    ("moved and relocated", [E], [ev(hours=30, location="HQ")], [{"moved", "relocated"}]),
    ("link", [E], [replace(E, online_meeting_url="https://meet.example/x")], [{"link_changed"}]),
    ("retitled", [E], [replace(E, summary="Board call")], [{"retitled"}]),
    (
        "manager declined",
        [E],
        [replace(E, attendees=(Attendee(MANAGER, response=Response.DECLINED), E.attendees[1]))],
        [{"response_changed"}],
    ),
    (
        "attendee added",
        [E],
        [replace(E, attendees=(*E.attendees, Attendee("coo@example.com")))],
        [{"attendees_changed"}],
    ),
    (
        "other's response is noise",
        [E],
        [replace(E, attendees=(E.attendees[0], Attendee("cfo@example.com", response=Response.DECLINED)))],
        [],
    ),
    ("free/busy", [E], [replace(E, busy=False)], [{"busy_changed"}]),
    ("description is noise by default", [E], [replace(E, description="agenda v2")], []),
    ("whitespace is noise", [E], [replace(E, location=" Room  1 ")], []),
    ("href/etag churn is noise", [E], [replace(E, href="other.ics", modified_by="x@y")], []),
    ("categories are noise", [E], [replace(E, categories=("Red",))], []),
    ("past event never", [ev(hours=-5)], [ev(hours=-4)], []),
    ("beyond horizon", [ev(hours=24 * 20)], [ev(hours=24 * 21)], []),
    ("moved into horizon", [ev(hours=24 * 20)], [ev(hours=24 * 2)], [{"moved"}]),
    ("moved out of horizon", [ev(hours=24 * 2)], [ev(hours=24 * 20)], [{"moved"}]),
    ("ongoing counts", [ev(hours=-0.5)], [ev(hours=-0.5, location="Room 9")], [{"relocated"}]),
    ("our checkpoint is never a change", [], [ev(own_marker="7:red_line")], []),
    ("our checkpoint moved", [ev(own_marker="7:red_line")], [ev(hours=30, own_marker="7:red_line")], []),
]


@pytest.mark.parametrize(("name", "old", "new", "expected"), CASES, ids=[c[0] for c in CASES])
def test_change_table(name: str, old: list[EventData], new: list[EventData], expected: list[set[str]]) -> None:
    assert kinds(old, new) == expected


def test_description_when_asked() -> None:
    rules = replace(RULES, include_description=True)
    found = detect_changes(snap(E), snap(replace(E, description="new agenda")), NOW, rules)
    assert [c.kind for c in found] == [ChangeKind.DESCRIPTION_CHANGED]


def test_main_kind_prefers_move() -> None:
    found = detect_changes(snap(E), snap(ev(hours=30, location="HQ")), NOW, RULES)
    assert found[0].kind is ChangeKind.MOVED


def test_window_growth_is_not_creation() -> None:
    far = ev(uid="weekly", hours=24 * 10)
    assert kinds([], [far], known_until=NOW + timedelta(days=9)) == []
    assert kinds([], [far], known_until=NOW + timedelta(days=11)) == [{"created"}]


def test_sorted_by_event_time() -> None:
    a, b = ev(uid="a", hours=50), ev(uid="b", hours=5)
    found = detect_changes({}, snap(a, b), NOW, RULES)
    assert [c.event.uid for c in found] == ["b", "a"]


def test_all_day_date_change_is_a_move() -> None:
    day = date(2026, 11, 26)
    before = ev(all_day=True, start_date=day, end_date=day + timedelta(days=1))
    after = replace(before, start_date=day + timedelta(days=1), end_date=day + timedelta(days=2))
    assert kinds([before], [after]) == [{"moved"}]


# ----------------------------------------------------------------- through real iCalendar

SERIES = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16010101T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE
BEGIN:VEVENT
UID:weekly-1
SUMMARY:Weekly staff meeting
DTSTART;TZID=W. Europe Standard Time:20261102T100000
DTEND;TZID=W. Europe Standard Time:20261102T110000
RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=10
LOCATION:Room 1
{exdate}END:VEVENT
{override}END:VCALENDAR
"""

OVERRIDE = """BEGIN:VEVENT
UID:weekly-1
RECURRENCE-ID;TZID=W. Europe Standard Time:20261130T100000
SUMMARY:Weekly staff meeting
DTSTART;TZID=W. Europe Standard Time:20261130T150000
DTEND;TZID=W. Europe Standard Time:20261130T160000
LOCATION:Room 1
END:VEVENT
"""

WINDOW = Window(NOW - timedelta(days=7), NOW + timedelta(days=60), "Europe/Berlin")


def occurrences(text: str) -> dict[tuple[str, str], EventData]:
    return snap(*parse_resource("w.ics", "1", text, WINDOW).events)


def test_one_occurrence_moved_in_a_windows_zone_series() -> None:
    old = occurrences(SERIES.format(exdate="", override=""))
    new = occurrences(SERIES.format(exdate="", override=OVERRIDE))
    found = detect_changes(old, new, NOW, RULES)
    assert [c.kind for c in found] == [ChangeKind.MOVED]
    change = found[0]
    assert change.before is not None and change.after is not None
    # 30 Nov 2026 is after DST ended: CET, UTC+1.
    assert change.before.start == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert change.after.start == datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
    assert change.after.timezone == "Europe/Berlin"
    assert change.after.recurrence_id == "20261130T090000Z"


def test_exdate_cancels_one_occurrence_only() -> None:
    old = occurrences(SERIES.format(exdate="", override=""))
    exdate = "EXDATE;TZID=W. Europe Standard Time:20261207T100000\n"
    new = occurrences(SERIES.format(exdate=exdate, override=""))
    found = detect_changes(old, new, NOW, RULES)
    assert [(c.kind, c.event.start) for c in found] == [
        (ChangeKind.DELETED, datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    ]


def test_whole_series_moved_pairs_occurrences() -> None:
    old = occurrences(SERIES.format(exdate="", override=""))
    moved = SERIES.replace("T100000", "T120000").replace("T110000", "T130000")
    new = occurrences(moved.format(exdate="", override=""))
    found = detect_changes(old, new, NOW, RULES)
    assert found and all(c.kinds == {ChangeKind.MOVED} for c in found)
    # Only occurrences inside the 14-day horizon are reported: 30 Nov and 7 Dec.
    assert [c.after.start.astimezone(ZoneInfo("Europe/Berlin")).hour for c in found if c.after] == [12, 12]
    assert len(found) == 2


def test_reserialised_identical_data_is_no_change() -> None:
    text = SERIES.format(exdate="", override=OVERRIDE)
    old = occurrences(text)
    new = occurrences(text.replace("\n", "\r\n").replace("SUMMARY:Weekly", "SUMMARY:Weekly"))
    assert detect_changes(old, new, NOW, RULES) == []
