"""Nothing in a calendar is dropped silently (issue 14, points 6 and 8).

Each case is read the three ways the service reads calendar text (an ICS feed, a CalDAV
object by the full path, and with the single-event fast path first) and must give the
same events on all three; what was left out is said in a note naming the property.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from assistant.domain.model import EventData
from connectors.base import ParseLimits, Window
from connectors.ics.ical import parse_feed, parse_resource

WINDOW = Window(datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 3, 1, tzinfo=UTC), "Europe/Berlin")


def calendar(*events: str) -> bytes:
    body = "".join(f"BEGIN:VEVENT\r\n{e.strip()}\r\nEND:VEVENT\r\n" for e in events)
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n{body}END:VCALENDAR\r\n".encode()


def read(text: bytes, window: Window = WINDOW) -> tuple[list[EventData], list[str]]:
    """The events (sorted, href cleared) and notes, asserting every path agrees."""
    resources, problems = parse_feed(text, window, "feed.ics")
    feed = [replace(e, href="") for r in resources for e in r.events]
    notes = [*problems, *(n for r in resources for n in r.notes)]
    feed.sort(key=_order)
    for fast in (True, False):
        res = parse_resource("/cal/x.ics", "e", text, window, fast=fast)
        assert sorted((replace(e, href="") for e in res.events), key=_order) == feed, fast
        assert len(res.notes) == len(notes), (fast, res.notes, notes)
    return feed, notes


def _order(event: EventData) -> tuple[datetime, str, str]:
    return (event.start, event.uid, event.recurrence_id)


def test_two_events_with_one_uid_are_two_events() -> None:
    events, notes = read(
        calendar(
            "UID:same\r\nDTSTART:20300105T100000Z\r\nDTEND:20300105T110000Z\r\nSUMMARY:one",
            "UID:same\r\nDTSTART:20300107T100000Z\r\nDTEND:20300107T110000Z\r\nSUMMARY:two",
        )
    )
    assert [e.summary for e in events] == ["one", "two"]
    assert len({e.key for e in events}) == 2  # two events in the store, not one
    assert events[0].uid == "same" and events[1].uid.startswith("same")
    assert notes == []


def test_a_later_sequence_of_the_same_series_replaces_the_earlier_and_says_so() -> None:
    old = "UID:s\r\nSEQUENCE:1\r\nDTSTART:20300105T100000Z\r\nDURATION:PT1H\r\nSUMMARY:old"
    new = "UID:s\r\nSEQUENCE:2\r\nDTSTART:20300106T100000Z\r\nDURATION:PT1H\r\nSUMMARY:new"
    events, notes = read(calendar(old, new))
    assert [e.summary for e in events] == ["new"]
    assert len(notes) == 1 and "uid:s" in notes[0] and "SEQUENCE" in notes[0]


def test_a_broken_rdate_keeps_the_rule_and_the_other_dates() -> None:
    events, notes = read(
        calendar(
            "UID:series\r\nDTSTART:20300107T100000Z\r\nDTEND:20300107T110000Z\r\n"
            "RRULE:FREQ=WEEKLY;COUNT=3\r\n"
            "RDATE:20300201T100000Z,2030XX02T100000Z\r\nRDATE:20300210T100000Z\r\n"
            "RDATE:garbage\r\nSUMMARY:weekly"
        )
    )
    days = [e.start.date() for e in events]
    assert days == [
        date(2030, 1, 7), date(2030, 1, 14), date(2030, 1, 21), date(2030, 2, 1), date(2030, 2, 10)
    ]  # fmt: skip
    assert len(notes) == 1
    assert "RDATE" in notes[0] and "2 value(s)" in notes[0] and "series" in notes[0]
    assert "garbage" not in notes[0] and "XX" not in notes[0]  # never the content


def test_an_rdate_of_times_is_left_out_with_a_note() -> None:
    events, notes = read(
        calendar("UID:t\r\nDTSTART:20300107T000000Z\r\nRDATE;VALUE=TIME:133000Z\r\nSUMMARY:t")
    )
    assert [e.start for e in events] == [datetime(2030, 1, 7, tzinfo=UTC)]
    assert len(notes) == 1 and "RDATE" in notes[0]


@pytest.mark.parametrize("recurring", [False, True])
def test_a_garbage_sequence_is_imported(recurring: bool) -> None:
    rule = "\r\nRRULE:FREQ=DAILY;COUNT=2" if recurring else ""
    events, notes = read(
        calendar(f"UID:g\r\nSEQUENCE:v2-final\r\nDTSTART:20300107T100000Z{rule}\r\nSUMMARY:g")
    )
    assert len(events) == (2 if recurring else 1) and events[0].summary == "g"
    assert len(notes) == 1 and "SEQUENCE" in notes[0] and "uid:g" in notes[0]


def test_an_event_without_a_readable_start_is_listed_with_the_reason() -> None:
    text = calendar(
        "UID:fine\r\nDTSTART:20300107T100000Z\r\nSUMMARY:fine",
        "UID:nostart\r\nSUMMARY:no start\r\nRRULE:FREQ=DAILY",
    )
    resources, problems = parse_feed(text, WINDOW, "feed.ics")
    assert [e.uid for r in resources for e in r.events] == ["fine"]
    assert len(problems) == 1 and "uid:nostart" in problems[0] and "DTSTART" in problems[0]
    res = parse_resource("/cal/x.ics", "e", text, WINDOW)
    assert [e.uid for e in res.events] == ["fine"]
    assert any("nostart" in n and "DTSTART" in n for n in res.notes)


def test_a_repeated_dtstart_reads_the_first_and_says_so() -> None:
    events, notes = read(
        calendar("UID:d\r\nDTSTART:20300107T080000Z\r\nDTSTART:20300107T100000Z\r\nSUMMARY:d")
    )
    assert [e.start.hour for e in events] == [8]
    assert len(notes) == 1 and "DTSTART given 2 times" in notes[0]


# ------------------------------------------------------------------ point 8


@pytest.mark.parametrize("rule", ["", "RRULE:FREQ=YEARLY;COUNT=2\r\n"])
@pytest.mark.parametrize(
    "window",
    [
        WINDOW,
        # the window starts at noon on the holiday (Berlin): the holiday is still on
        Window(
            datetime(2030, 1, 7, 11, tzinfo=UTC), datetime(2030, 2, 1, tzinfo=UTC), "Europe/Berlin"
        ),
        # the window ends in the morning of the holiday
        Window(
            datetime(2029, 12, 1, tzinfo=UTC), datetime(2030, 1, 7, 8, tzinfo=UTC), "Europe/Berlin"
        ),
    ],
)
def test_a_dtend_date_equal_to_dtstart_is_one_day(rule: str, window: Window) -> None:
    events, notes = read(
        calendar(
            f"UID:hol\r\nDTSTART;VALUE=DATE:20300107\r\nDTEND;VALUE=DATE:20300107\r\n{rule}"
            "SUMMARY:Holiday"
        ),
        window,
    )
    assert [(e.start_date, e.end_date) for e in events] == [(date(2030, 1, 7), date(2030, 1, 8))]
    assert events[0].all_day and notes == []


def test_many_events_with_one_uid_are_read_in_linear_time() -> None:
    def cpu(n: int) -> float:
        text = calendar(
            *(f"UID:same\r\nDTSTART:20300107T{i % 24:02d}0000Z\r\nSUMMARY:e{i}" for i in range(n))
        )
        began = time.thread_time()
        resources, problems = parse_feed(text, WINDOW, "feed.ics")
        took = time.thread_time() - began
        assert sum(len(r.events) for r in resources) == n and problems == []
        return took

    small, large = cpu(250), cpu(1000)
    assert large < 8 * small + 0.5  # linear: about 4 times; quadratic: 16 times


@pytest.mark.parametrize(
    ("rule", "said"),
    [
        ("FREQ=WEEKLY;BYDAY=MO,TH", "more than 2000 repetitions before the sync window ends"),
        ("FREQ=DAILY;INTERVAL=3", "more than 2000 repetitions before the sync window ends"),
        # a daily rule naming one weekday walks six empty days per occurrence: the call
        # budget (not the step count) stops it, whichever way the rule is walked
        ("FREQ=DAILY;BYDAY=SU", "its rule finds no occurrence within 2000 repetitions"),
    ],
)
def test_a_series_begun_long_ago_is_walked_to_the_same_verdict(rule: str, said: str) -> None:
    """Weekly and plain daily rules are walked without the call budget (they find an
    occurrence with every few calls); the verdict on a series is the same either way."""
    text = calendar(f"UID:old\r\nDTSTART:19000101T090000Z\r\nRRULE:{rule}\r\nSUMMARY:old")
    limits = ParseLimits(series_scan_steps=2000)
    for fast in (True, False):
        res = parse_resource("/cal/x.ics", "e", text, WINDOW, fast=fast, limits=limits)
        assert [e.uid for e in res.events] == ["old"]
        assert len(res.notes) == 1 and said in res.notes[0], res.notes
