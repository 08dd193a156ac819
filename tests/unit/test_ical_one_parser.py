"""One parser, one answer (issue 14, point 7).

A calendar's text gives the same events however the service reads it: as an ICS feed
(``parse_feed``, series by series), as a CalDAV object by the full path
(``parse_resource(fast=False)``) and with the single-event fast path first
(``parse_resource``, as the CalDAV connector calls it). Made-up UIDs for events without
one are the same on every path, for every occurrence, and across syncs.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.domain.model import EventData
from connectors.base import InvalidData, Window
from connectors.ics.ical import parse_feed, parse_resource

EVALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "evaldata" / "ics"
WIDE = Window(datetime(1990, 1, 1, tzinfo=UTC), datetime(2035, 1, 1, tzinfo=UTC), "Europe/Berlin")
HREF = "/cal/object.ics"


def _order(event: EventData) -> tuple[datetime, datetime, str, str, str]:
    return (event.start, event.end, event.uid, event.recurrence_id, event.summary)


def _events(found: list[EventData]) -> list[EventData]:
    return sorted((replace(e, href="") for e in found), key=_order)


def three_ways(text: bytes, window: Window) -> list[EventData] | None:
    """The events every path gives (asserted equal), or None when the text is refused."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            resources, _ = parse_feed(text, window, "feed")
        except InvalidData:
            resources = None
        answers: list[list[EventData] | None] = []
        for fast in (True, False):
            try:
                res = parse_resource(HREF, "etag", text, window, fast=fast)
            except InvalidData:
                answers.append(None)
            else:
                assert all(e.href == HREF for e in res.events)
                answers.append(_events(list(res.events)))
    if resources is None:
        assert answers == [None, None]
        return None
    feed = _events([e for r in resources for e in r.events])
    for answer in answers:
        # a CalDAV object none of whose series can be read is refused; a feed lists it
        assert answer == feed or (answer is None and feed == [])
    return feed


# ------------------------------------------------------------------------- evaldata


def evaldata_files() -> list[str]:
    if not EVALDATA.is_dir():
        return []
    return sorted(str(p.relative_to(EVALDATA)) for p in EVALDATA.rglob("*.ics"))


@pytest.mark.evaldata
@pytest.mark.skipif(not EVALDATA.is_dir(), reason=f"evaldata not present at {EVALDATA}")
@pytest.mark.parametrize("name", evaldata_files())
def test_every_evaldata_file_gives_the_same_events_on_every_path(name: str) -> None:
    events = three_ways((EVALDATA / name).read_bytes(), WIDE)
    for e in events or []:
        assert e.uid  # every event has its UID, made up where the file has none


@pytest.mark.evaldata
@pytest.mark.skipif(not EVALDATA.is_dir(), reason=f"evaldata not present at {EVALDATA}")
def test_a_uid_less_series_in_real_files_keeps_one_uid_for_all_occurrences() -> None:
    events = three_ways((EVALDATA / "recurring-ical-events/rdate.ics").read_bytes(), WIDE)
    assert events
    by_summary: dict[str, set[str]] = {}
    for e in events:
        by_summary.setdefault(e.summary, set()).add(e.uid)
    assert all(len(uids) == 1 for uids in by_summary.values())
    assert any(e.recurrence_id for e in events)  # occurrences told apart by recurrence id


# ------------------------------------------------------------------- made-up UIDs

UIDLESS = (
    "BEGIN:VEVENT\r\nDTSTART;TZID=Europe/Berlin:20300107T100000\r\nDURATION:PT1H\r\n"
    "RRULE:FREQ=WEEKLY;COUNT=4\r\nSUMMARY:Jour fixe\r\nEND:VEVENT\r\n"
)
OTHER = "BEGIN:VEVENT\r\nUID:other\r\nDTSTART:20300108T100000Z\r\nSUMMARY:Other\r\nEND:VEVENT\r\n"
NARROW = Window(datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 3, 1, tzinfo=UTC), "Europe/Berlin")


def cal(*events: str) -> bytes:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n" + "".join(events)).encode() + (
        b"END:VCALENDAR\r\n"
    )


def test_made_up_uids_are_the_same_on_every_path_and_stable_across_syncs() -> None:
    first = three_ways(cal(UIDLESS), NARROW)
    assert first is not None and len(first) == 4
    (uid,) = {e.uid for e in first}  # one UID for the whole series
    assert uid.startswith("no-uid-")
    assert len({e.recurrence_id for e in first}) == 4
    # The next sync: the same text, and then the feed with another event before it.
    assert three_ways(cal(UIDLESS), NARROW) == first
    later = three_ways(cal(OTHER, UIDLESS), NARROW)
    assert later is not None
    assert [e for e in later if e.uid != "other"] == first


# ------------------------------------------------------------------------ generated


@st.composite
def vevents(draw: st.DrawFn) -> str:
    lines = []
    uid = draw(st.sampled_from(["a", "b", None]))
    if uid:
        lines.append(f"UID:{uid}")
    day = datetime(2030, 1, 1) + timedelta(days=draw(st.integers(0, 60)))
    kind = draw(st.sampled_from(["date", "utc", "berlin", "floating"]))
    if kind == "date":
        value = f";VALUE=DATE:{day:%Y%m%d}"
        length = draw(st.integers(0, 2))  # 0: DTEND on the DTSTART date
        end = f";VALUE=DATE:{day + timedelta(days=length):%Y%m%d}"
    else:
        at = day + timedelta(hours=draw(st.integers(0, 23)))
        zone = {"utc": "", "berlin": ";TZID=Europe/Berlin", "floating": ""}[kind]
        z = "Z" if kind == "utc" else ""
        value = f"{zone}:{at:%Y%m%dT%H%M%S}{z}"
        end = (
            f"{zone}:{at + timedelta(minutes=draw(st.sampled_from([0, 30, 90]))):%Y%m%dT%H%M%S}{z}"
        )
    lines.append(f"DTSTART{value}")
    if draw(st.booleans()):
        lines.append(f"DTEND{end}")
    rule = draw(st.sampled_from(["", "FREQ=DAILY;COUNT=3", "FREQ=WEEKLY;INTERVAL=2;COUNT=3"]))
    if rule:
        lines.append(f"RRULE:{rule}")
    rdate = draw(st.sampled_from(["", "good", "broken"]))
    if rdate and kind != "date":
        good = f"{day + timedelta(days=5):%Y%m%dT120000}{'Z' if kind == 'utc' else ''}"
        zone = ";TZID=Europe/Berlin" if kind == "berlin" else ""
        extra = ",2030XX01T000000" if rdate == "broken" else ""
        lines.append(f"RDATE{zone}:{good}{extra}")
    sequence = draw(st.sampled_from(["", "0", "1", "2", "garbage"]))
    if sequence:
        lines.append(f"SEQUENCE:{sequence}")
    lines.append(f"SUMMARY:{draw(st.sampled_from(['One', 'Two']))}")
    return "BEGIN:VEVENT\r\n" + "\r\n".join(lines) + "\r\nEND:VEVENT\r\n"


windows = st.builds(
    lambda start, days, zone: Window(start, start + timedelta(days=days), zone),
    st.datetimes(datetime(2029, 12, 20), datetime(2030, 3, 1), timezones=st.just(UTC)),
    st.integers(1, 40),
    st.sampled_from(["Europe/Berlin", "America/New_York", "UTC"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(vevents(), min_size=1, max_size=4), windows)
def test_generated_calendars_give_the_same_events_on_every_path(
    events: list[str], window: Window
) -> None:
    found = three_ways(cal(*events), window)
    for e in found or []:
        assert e.uid and e.end >= e.start
        if e.all_day:
            assert e.start_date is not None and e.end_date is not None
            assert e.end_date > e.start_date
    keys = [e.key for e in found or []]
    assert len(keys) == len(set(keys))  # no two events the store would take for one
