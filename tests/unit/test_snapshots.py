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


def _fingerprint_as_stored(event: EventData) -> str:
    """The hash stored in every snapshot row so far (``dataclasses.asdict`` based): a new
    way of computing it must give the same value, or every stored event would look
    changed after an upgrade and the assistant would get a message for each."""
    import hashlib
    from dataclasses import asdict

    data = asdict(event)
    data.pop("href")
    data.pop("modified_by")
    raw = json.dumps(data, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def test_the_fingerprint_is_the_one_stored_rows_carry() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    attendee = st.builds(Attendee, st.text(max_size=8), st.text(max_size=8),
                         st.sampled_from(list(Response)), st.booleans())  # fmt: skip

    @settings(max_examples=200, deadline=None)
    @given(
        st.text(max_size=12), st.text(max_size=12), st.lists(attendee, max_size=3),
        st.lists(st.text(max_size=5), max_size=3), st.sampled_from(list(EventStatus)),
        st.booleans(), st.text(max_size=5),
    )  # fmt: skip
    def check(summary: str, where: str, people: list[Attendee], cats: list[str],
              status: EventStatus, flag: bool, who: str) -> None:  # fmt: skip
        event = replace(EVENT, summary=summary, location=where, attendees=tuple(people),
                        categories=tuple(cats), status=status, private=flag, busy=not flag,
                        all_day=flag, start_date=START.date() if flag else None,
                        modified_by=who, href=who)  # fmt: skip
        assert event.fingerprint() == _fingerprint_as_stored(event)

    check()
    assert EVENT.fingerprint() == _fingerprint_as_stored(EVENT)
    assert replace(EVENT, href="x", modified_by="y").fingerprint() == EVENT.fingerprint()
    assert replace(EVENT, summary="Other").fingerprint() != EVENT.fingerprint()
