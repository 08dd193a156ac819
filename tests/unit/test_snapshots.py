"""EventData and its two stored forms (snapshot row, change JSON): one encoding of attendees.

An event written by one path and read back by the other is the same event; rows written
before the encodings were one are still read right.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from assistant.domain.model import Attendee, EventData, EventStatus, Response
from assistant.store.snapshots import from_json, from_row, to_json, to_row

START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

EVENT = EventData(
    uid="board@example.com",
    start=START,
    end=START + timedelta(hours=1),
    recurrence_id="20261124T090000Z",
    summary="Board meeting",
    timezone="Europe/Berlin",
    status=EventStatus.TENTATIVE,
    location="Room 4",
    description="Budget",
    organizer="alex@example.com",
    # not in alphabetical order, and every field of an attendee set to a non-default value
    attendees=(
        Attendee("zoe@example.com", "Zoë Z", Response.DECLINED, required=False),
        Attendee("amy@example.com", "Amy A", Response.ACCEPTED),
        Attendee("kim@example.com", "", Response.TENTATIVE),
    ),
    busy=False,
    private=True,
    online_meeting_url="https://meet.example/x",
    categories=("Finance", "Board"),
    modified_by="sam@example.com",
)
ALL_DAY = replace(
    EVENT, uid="off", all_day=True, start_date=date(2026, 11, 24), end_date=date(2026, 11, 25)
)


def as_stored(data: object) -> object:
    """What a JSON column gives back: lists, strings, numbers."""
    return json.loads(json.dumps(data))


def test_each_stored_form_reads_back_the_event_it_was_written_from() -> None:
    for event in (EVENT, ALL_DAY):
        row = to_row(7, replace(event, href="/cal/board.ics", own_marker=""), START)
        row.attendees = as_stored(row.attendees)  # type: ignore[assignment]
        assert from_row(row) == replace(event, href="/cal/board.ics")
        # the change record keeps neither the href nor our own marker
        assert from_json(as_stored(to_json(event))) == event  # type: ignore[arg-type]


def test_rows_and_change_records_encode_attendees_alike() -> None:
    row = to_row(7, EVENT, START)
    assert as_stored(row.attendees) == as_stored(to_json(EVENT)["attendees"])
    assert row.attendees[0] == ["zoe@example.com", "declined", "Zoë Z", False]


def test_written_by_one_path_and_read_by_the_other_is_equal() -> None:
    row = to_row(7, EVENT, START)
    record = to_json(EVENT)
    # the row's attendees in a change record, and the record's in a row
    from_record = from_json(as_stored(record | {"attendees": row.attendees}))  # type: ignore[arg-type]
    crossed = to_row(7, EVENT, START)
    crossed.attendees = as_stored(record["attendees"])  # type: ignore[assignment]
    assert from_record.attendees == EVENT.attendees
    assert from_row(crossed).attendees == EVENT.attendees
    assert from_record == from_json(record) and from_row(crossed) == from_row(row)


def test_rows_written_before_the_encodings_were_one_are_still_read() -> None:
    row = to_row(7, EVENT, START)
    row.attendees = [[a.email, a.name, a.response.value, a.required] for a in EVENT.attendees]
    assert from_row(row).attendees == EVENT.attendees
    # and change records from before names and the required flag were kept
    short = from_json(to_json(EVENT) | {"attendees": [["amy@example.com", "accepted"]]})
    assert short.attendees == (Attendee("amy@example.com", "", Response.ACCEPTED, True),)
