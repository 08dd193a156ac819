"""Working time: weekly local hours, holidays, DST change days, long spans, validation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.domain.worktime import WEEKDAYS, WorkingHours

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
OFFICE = {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
EVERY_DAY = {d: [["09:00", "18:00"]] for d in WEEKDAYS}
ROUND_CLOCK = {d: [["00:00", "24:00"]] for d in WEEKDAYS}
NIGHT = {d: [["00:00", "06:00"], ["22:00", "24:00"]] for d in WEEKDAYS}
GOOD_FRIDAY = date(2026, 4, 3)


def at(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cfg", "zone", "start", "end", "minutes"),
    [
        # 2026-03-27 is a Friday: 10 minutes on Friday, 10 on Monday.
        pytest.param(OFFICE, "Europe/Berlin", (2026, 3, 27, 17, 50), (2026, 3, 30, 9, 10), 20, id="fri-to-mon"),
        pytest.param(OFFICE, "Europe/Berlin", (2026, 3, 24, 17, 50), (2026, 3, 25, 9, 10), 20, id="overnight"),
        pytest.param(OFFICE, "Europe/Berlin", (2026, 3, 24, 10, 0), (2026, 3, 24, 12, 30), 150, id="same-day"),
        pytest.param(OFFICE, "Europe/Berlin", (2026, 3, 24, 7, 0), (2026, 3, 24, 20, 0), 540, id="whole-day"),
        pytest.param(OFFICE, "Europe/Berlin", (2026, 3, 24, 19, 0), (2026, 3, 25, 8, 59), 0, id="night-off"),
        pytest.param(OFFICE, "Europe/Berlin", (2026, 3, 28, 8, 0), (2026, 3, 29, 20, 0), 0, id="weekend"),
        pytest.param(OFFICE, "Europe/Berlin", (2026, 3, 24, 12, 0), (2026, 3, 24, 11, 0), 0, id="backwards"),
        # DST change days (all Sundays) with hours every day: 9 local hours each.
        pytest.param(EVERY_DAY, "Europe/Berlin", (2026, 3, 29, 0, 0), (2026, 3, 30, 0, 0), 540, id="berlin-spring"),
        pytest.param(EVERY_DAY, "Europe/Berlin", (2026, 10, 25, 0, 0), (2026, 10, 26, 0, 0), 540, id="berlin-autumn"),
        pytest.param(EVERY_DAY, "America/New_York", (2026, 3, 8, 0, 0), (2026, 3, 9, 0, 0), 540, id="ny-spring"),
        pytest.param(EVERY_DAY, "America/New_York", (2026, 11, 1, 0, 0), (2026, 11, 2, 0, 0), 540, id="ny-autumn"),
        pytest.param(EVERY_DAY, "Europe/Berlin", (2026, 3, 28, 17, 50), (2026, 3, 29, 9, 10), 20, id="across-spring"),
        # Round the clock: the day itself is 23 or 25 hours long.
        pytest.param(ROUND_CLOCK, "Europe/Berlin", (2026, 3, 29, 0, 0), (2026, 3, 30, 0, 0), 23 * 60, id="23h-day"),
        pytest.param(ROUND_CLOCK, "Europe/Berlin", (2026, 10, 25, 0, 0), (2026, 10, 26, 0, 0), 25 * 60, id="25h-day"),
        pytest.param(ROUND_CLOCK, "America/New_York", (2026, 11, 1, 0, 0), (2026, 11, 2, 0, 0), 25 * 60, id="ny-25h"),
        # Night shift: 22:00-06:00 runs across midnight.
        pytest.param(NIGHT, "Europe/Berlin", (2026, 3, 24, 23, 0), (2026, 3, 25, 1, 0), 120, id="night-shift"),
        pytest.param(NIGHT, "Europe/Berlin", (2026, 3, 24, 12, 0), (2026, 3, 25, 12, 0), 480, id="night-day"),
        # Four whole weeks (across the spring change) and twelve weeks.
        pytest.param(OFFICE, "Europe/Berlin", (2026, 3, 2, 9, 0), (2026, 3, 30, 9, 0), 4 * 45 * 60, id="4-weeks"),
        pytest.param(OFFICE, "America/New_York", (2026, 1, 5, 0, 0), (2026, 3, 30, 0, 0), 12 * 45 * 60, id="12-weeks"),
    ],
)
def test_working_minutes(
    cfg: dict[str, list[list[str]]],
    zone: str,
    start: tuple[int, ...],
    end: tuple[int, ...],
    minutes: int,
) -> None:
    hours = WorkingHours.from_config(cfg, zone)
    tz = ZoneInfo(zone)
    assert hours.working_minutes(at(tz, *start), at(tz, *end)) == minutes


def test_holiday_counts_zero() -> None:
    hours = WorkingHours.from_config(OFFICE, "Europe/Berlin", holidays=[GOOD_FRIDAY])
    thu, mon = at(BERLIN, 2026, 4, 2, 17, 50), at(BERLIN, 2026, 4, 6, 9, 10)
    assert hours.working_minutes(thu, mon) == 20
    plain = WorkingHours.from_config(OFFICE, "Europe/Berlin")
    assert plain.working_minutes(thu, mon) == 20 + 540
    four_weeks = (at(BERLIN, 2026, 3, 16, 0, 0), at(BERLIN, 2026, 4, 13, 0, 0))
    assert hours.working_minutes(*four_weeks) == plain.working_minutes(*four_weeks) - 540


def test_instants_in_other_zones_mean_the_same_moment() -> None:
    hours = WorkingHours.from_config(OFFICE, "Europe/Berlin")
    start = at(BERLIN, 2026, 3, 27, 17, 50).astimezone(NEW_YORK)
    end = at(BERLIN, 2026, 3, 30, 9, 10).astimezone(ZoneInfo("Asia/Tokyo"))
    assert hours.working_minutes(start, end) == 20


def test_intervals_are_utc_clipped_and_local() -> None:
    hours = WorkingHours.from_config(OFFICE, "Europe/Berlin")
    got = list(hours.intervals(at(BERLIN, 2026, 3, 27, 12, 0), at(BERLIN, 2026, 3, 30, 10, 0)))
    assert got == [
        (datetime(2026, 3, 27, 11, 0, tzinfo=UTC), datetime(2026, 3, 27, 17, 0, tzinfo=UTC)),
        (datetime(2026, 3, 30, 7, 0, tzinfo=UTC), datetime(2026, 3, 30, 8, 0, tzinfo=UTC)),
    ]  # CET on Friday, CEST on Monday
    night = WorkingHours.from_config(NIGHT, "UTC")
    merged = list(night.intervals(at(UTC, 2026, 3, 24, 12), at(UTC, 2026, 3, 26, 12)))
    assert merged == [
        (at(UTC, 2026, 3, 24, 22), at(UTC, 2026, 3, 25, 6)),
        (at(UTC, 2026, 3, 25, 22), at(UTC, 2026, 3, 26, 6)),
    ]


def test_is_working_and_next_working_instant() -> None:
    hours = WorkingHours.from_config(OFFICE, "Europe/Berlin", holidays=[GOOD_FRIDAY])
    assert hours.is_working(at(BERLIN, 2026, 4, 2, 9, 0))
    assert not hours.is_working(at(BERLIN, 2026, 4, 2, 18, 0))  # the end is off
    assert not hours.is_working(at(BERLIN, 2026, 4, 3, 12, 0))  # holiday
    assert not hours.is_working(at(BERLIN, 2026, 4, 4, 12, 0))  # Saturday
    inside = at(BERLIN, 2026, 4, 2, 12, 34)
    assert hours.next_working_instant(inside) == inside
    assert hours.next_working_instant(at(BERLIN, 2026, 4, 2, 18, 0)) == at(BERLIN, 2026, 4, 6, 9, 0)
    assert hours.next_working_instant(at(BERLIN, 2026, 4, 6, 9, 0)).tzinfo == UTC
    with pytest.raises(ValueError, match="no working time"):
        WorkingHours.from_config({}, "UTC").next_working_instant(at(UTC, 2026, 1, 1))


def test_config_round_trip() -> None:
    cfg = {"mon": [["09:00", "13:00"], ["14:00", "24:00"]], "sat": [["10:00", "12:30"]]}
    hours = WorkingHours.from_config(cfg, "Asia/Tokyo")
    assert hours.to_config() == cfg
    assert hours.week[0] == ((timedelta(hours=9), timedelta(hours=13)), (timedelta(hours=14), timedelta(hours=24)))
    assert WorkingHours.from_config({"MON": (("9:00", "18:00"),), "sun": []}, "UTC").to_config() == {
        "mon": [["09:00", "18:00"]]
    }


@pytest.mark.parametrize(
    ("cfg", "zone", "message"),
    [
        ({"mon": [["9am", "18:00"]]}, "UTC", "'9am' is not a time like 09:00"),
        ({"mon": [["09:00", "25:00"]]}, "UTC", "'25:00' is not a time of day"),
        ({"mon": [["09:00", "24:30"]]}, "UTC", "'24:30' is not a time of day"),
        ({"mon": [["09:60", "10:00"]]}, "UTC", "'09:60' is not a time of day"),
        ({"mon": [["18:00", "09:00"]]}, "UTC", "mon 18:00-09:00: the start must be before the end"),
        ({"mon": [["09:00", "09:00"]]}, "UTC", "the start must be before the end"),
        ({"tue": [["09:00", "13:00"], ["12:00", "18:00"]]}, "UTC", "tue: 09:00-13:00 and 12:00-18:00 overlap"),
        ({"monday": [["09:00", "18:00"]]}, "UTC", "unknown weekday 'monday'"),
        ({"mon": "09:00-18:00"}, "UTC", "expected a list of [start, end] pairs"),
        ({"mon": [["09:00"]]}, "UTC", "is not a [start, end] pair"),
        ({"mon": [[9, 18]]}, "UTC", "9 is not a time like 09:00"),
        (OFFICE, "Europe/Atlantis", "unknown time zone 'Europe/Atlantis'"),
        (OFFICE, "", "unknown time zone ''"),
    ],
)
def test_validation(cfg: dict[str, object], zone: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid working hours") as err:
        WorkingHours.from_config(cfg, zone)
    assert message in str(err.value)


def test_every_problem_reported_at_once() -> None:
    with pytest.raises(ValueError, match="invalid working hours") as err:
        WorkingHours.from_config({"xyz": [], "mon": [["10:00", "09:00"]]}, "Nowhere/City")
    text = str(err.value)
    assert "'xyz'" in text and "10:00-09:00" in text and "Nowhere/City" in text


def test_direct_construction_is_checked_and_naive_refused() -> None:
    with pytest.raises(ValueError, match="overlaps"):
        WorkingHours("UTC", (((timedelta(hours=9), timedelta(hours=12)), (timedelta(hours=11), timedelta(hours=13))),) + ((),) * 6)
    with pytest.raises(ValueError, match="7 days"):
        WorkingHours("UTC", ((),))
    hours = WorkingHours.from_config(OFFICE, "UTC")
    with pytest.raises(ValueError, match="aware"):
        hours.working_minutes(datetime(2026, 1, 1), datetime(2026, 1, 2, tzinfo=UTC))
    with pytest.raises(ValueError, match="aware"):
        hours.is_working(datetime(2026, 1, 1))


def test_long_span_is_cheap() -> None:
    hours = WorkingHours.from_config(OFFICE, "Europe/Berlin")
    ten_years = hours.working_minutes(at(BERLIN, 2020, 1, 1), at(BERLIN, 2030, 1, 1))
    weekdays = sum(
        1 for n in range((date(2030, 1, 1) - date(2020, 1, 1)).days) if (date(2020, 1, 1) + timedelta(n)).weekday() < 5
    )
    assert ten_years == weekdays * 540


# -- an independent oracle: step minute by minute in UTC, look at the local wall clock --------

ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe", "UTC"]
# Boundaries stay clear of 01:00-04:00, where a wall-clock time may occur twice or not at all.
BOUNDS = [0, *range(4 * 60, 24 * 60 + 1, 5)]


@st.composite
def week_config(draw: st.DrawFn) -> dict[str, list[list[str]]]:
    cfg: dict[str, list[list[str]]] = {}
    for name in WEEKDAYS:
        points = sorted(set(draw(st.lists(st.sampled_from(BOUNDS), max_size=4))))
        pairs = [points[i : i + 2] for i in range(0, len(points) - 1, 2)]
        if pairs:
            cfg[name] = [[f"{m // 60:02d}:{m % 60:02d}" for m in p] for p in pairs]
    return cfg


def oracle(cfg: dict[str, list[list[str]]], zone: str, holidays: set[date], start: datetime, end: datetime) -> int:
    tz, total, t = ZoneInfo(zone), 0, start
    while t < end:
        local = t.astimezone(tz)
        minute = local.hour * 60 + local.minute
        for s, e in cfg.get(WEEKDAYS[local.weekday()], []):
            lo, hi = (int(x[:2]) * 60 + int(x[3:]) for x in (s, e))
            if local.date() not in holidays and lo <= minute < hi:
                total += 1
        t += timedelta(minutes=1)
    return total


@settings(max_examples=150, deadline=None)
@given(
    cfg=week_config(),
    zone=st.sampled_from(ZONES),
    start=st.datetimes(datetime(2026, 3, 5), datetime(2026, 4, 10)).map(lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC)),
    minutes=st.integers(0, 3 * 24 * 60),
    holiday=st.booleans(),
)
def test_matches_minute_by_minute_oracle(
    cfg: dict[str, list[list[str]]], zone: str, start: datetime, minutes: int, holiday: bool
) -> None:
    end = start + timedelta(minutes=minutes)
    holidays = {start.astimezone(ZoneInfo(zone)).date() + timedelta(days=1)} if holiday else set()
    hours = WorkingHours.from_config(cfg, zone, holidays)
    assert hours.working_minutes(start, end) == oracle(cfg, zone, holidays, start, end)
    spans = list(hours.intervals(start, end))
    assert all(s < e and s.tzinfo == UTC for s, e in spans)
    assert all(a[1] < b[0] for a, b in pairwise(spans))  # sorted, apart
    for s, e in spans:
        assert hours.is_working(s)
        assert not hours.is_working(e) or e == end


def test_24_00_is_the_end_of_the_day() -> None:
    hours = WorkingHours.from_config({"sun": [["00:00", "24:00"]]}, "UTC")
    assert hours.week[6] == ((timedelta(0), timedelta(hours=24)),)
    assert hours.working_minutes(at(UTC, 2026, 3, 29), at(UTC, 2026, 3, 31)) == 24 * 60


@pytest.mark.parametrize(
    ("start", "minutes", "expected"),
    [
        ((2026, 3, 24, 17, 50), 20, (2026, 3, 25, 9, 10)),  # overnight
        ((2026, 3, 27, 17, 50), 20, (2026, 3, 30, 9, 10)),  # over the weekend
        ((2026, 4, 2, 17, 50), 20, (2026, 4, 6, 9, 10)),  # Good Friday off, then the weekend
        ((2026, 3, 24, 10, 0), 0, (2026, 3, 24, 10, 0)),
        ((2026, 3, 24, 20, 0), 0, (2026, 3, 25, 9, 0)),  # the clock starts at the next hour
        ((2026, 3, 24, 9, 0), 540 * 3, (2026, 3, 26, 18, 0)),
    ],
)
def test_instant_after_is_the_inverse_of_working_minutes(
    start: tuple[int, ...], minutes: float, expected: tuple[int, ...]
) -> None:
    hours = WorkingHours.from_config(OFFICE, "Europe/Berlin", [GOOD_FRIDAY])
    t0 = at(BERLIN, *start)
    got = hours.instant_after(t0, minutes)
    assert got == at(BERLIN, *expected)
    assert hours.working_minutes(t0, got) == pytest.approx(minutes)


def test_instant_after_without_working_time_says_so() -> None:
    with pytest.raises(ValueError, match="no working time"):
        WorkingHours.from_config({}, "UTC").instant_after(datetime(2026, 1, 1, tzinfo=UTC), 5)
