"""Real ICS files from other projects' test suites (../shared/evaldata/ics)."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.base import InvalidData, Window
from connectors.ics.ical import parse_feed

EVALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "evaldata" / "ics"
pytestmark = [
    pytest.mark.evaldata,
    pytest.mark.skipif(not EVALDATA.is_dir(), reason=f"evaldata not present at {EVALDATA}"),
]
WIDE = Window(datetime(1990, 1, 1, tzinfo=UTC), datetime(2035, 1, 1, tzinfo=UTC), "Europe/Berlin")
# Files that are broken on purpose in their upstream suites.
BROKEN = {
    "icalendar/issue_104_broken_calendar.ics",
    "icalevents/empty.ics",
    "icalevents/icloud.ics",  # TZOFFSET +5328
    "khal/invalid_tzoffset.ics",
    "khal/non_dst_error.ics",  # negative duration
}


def files() -> list[str]:
    if not EVALDATA.is_dir():
        return []
    return sorted(str(p.relative_to(EVALDATA)) for p in EVALDATA.rglob("*.ics"))


def load(name: str) -> tuple[list, list[str]]:  # type: ignore[type-arg]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parse_feed((EVALDATA / name).read_bytes(), WIDE, name)


@pytest.mark.parametrize("name", files())
def test_every_file_parses_or_fails_clearly(name: str) -> None:
    if name in BROKEN:
        with pytest.raises(InvalidData) as info:
            load(name)
        assert name in str(info.value)  # the message says which source is bad
        return
    resources, problems = load(name)
    for res in resources:
        for e in res.events:
            assert e.start.tzinfo is UTC and e.end.tzinfo is UTC
            assert e.end >= e.start
            assert e.uid
            if e.all_day:
                assert e.start_date is not None and e.end_date is not None
                assert e.end_date > e.start_date
    for p in problems:
        assert p.startswith("uid:")


def occurrences(name: str) -> dict[str, list]:  # type: ignore[type-arg]
    resources, _ = load(name)
    out: dict[str, list] = {}  # type: ignore[type-arg]
    for r in resources:
        for e in r.events:
            out.setdefault(e.uid, []).append(e)
    return out


def test_windows_zone_name_maps_to_iana() -> None:
    (event,) = [e for es in occurrences("khal/tz_windows_format.ics").values() for e in es]
    assert event.timezone == "Pacific/Auckland"
    # 13:00 NZDT (UTC+13) on 20 Nov 2019
    assert event.start == datetime(2019, 11, 20, 0, 0, tzinfo=UTC)


def test_exdates_remove_occurrences() -> None:
    (events,) = occurrences("icalevents/cest_with_deleted.ics").values()
    days = sorted(e.start.date().isoformat() for e in events)
    assert "2021-11-12" not in days and "2021-11-14" not in days
    assert "2021-11-11" in days and "2021-11-13" in days
    assert all(e.timezone == "Europe/Berlin" for e in events)
    assert all(e.recurrence_id.endswith("Z") for e in events)


def test_override_without_master_is_kept() -> None:
    (events,) = occurrences("khal/event_dt_recuid_no_master.ics").values()
    assert len(events) == 1 and events[0].recurrence_id


def test_x_wr_timezone_calendar() -> None:
    found = occurrences("recurring-ical-events/daylight_saving_time.ics")
    assert found
    zones = {e.timezone for es in found.values() for e in es if not e.all_day}
    assert "Europe/Berlin" in zones


def test_moved_occurrence_keeps_its_recurrence_id() -> None:
    found = occurrences("icalevents/recurrenceid_ms.ics")
    series = [es for es in found.values() if len(es) > 1]
    assert series
    rids = [e.recurrence_id for e in series[0]]
    assert len(set(rids)) == len(rids)  # one occurrence per recurrence id
