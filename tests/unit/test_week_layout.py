"""The week calendar's layout (assistant/entrypoints/web/week.py): rows, lanes, cuts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from assistant.entrypoints.web import week
from assistant.entrypoints.web.week import Entry, all_day, hour_labels, hour_range, now_row, place
from assistant.entrypoints.web.week_page import entries_of

BERLIN = ZoneInfo("Europe/Berlin")
DAY = date(2026, 11, 24)
HOURS = (8, 19)


def at(hhmm: str, day: date = DAY) -> datetime:
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime(day.year, day.month, day.day, h, m, tzinfo=BERLIN)


def ev(key: str, start: str, end: str, day: date = DAY, **kw: object) -> Entry:
    return Entry(key=key, title=key, start=at(start, day), end=at(end, day), **kw)  # type: ignore[arg-type]


def by_key(blocks: list[week.Block]) -> dict[str, week.Block]:
    return {b.entry.key: b for b in blocks}


def test_an_hour_spans_twelve_five_minute_rows_from_its_start() -> None:
    (b,) = place([ev("a", "09:00", "10:00")], DAY, BERLIN, HOURS)
    assert (b.row, b.span, b.lane, b.lanes, b.width) == (13, 12, 0, 1, 1)
    assert (b.left, b.size) == (0, 100)
    (c,) = place([ev("c", "08:00", "08:45")], DAY, BERLIN, HOURS)
    assert (c.row, c.span) == (1, 9)


def test_a_short_event_is_tall_enough_to_read() -> None:
    (b,) = place([ev("a", "09:00", "09:05")], DAY, BERLIN, HOURS)
    assert (b.row, b.span) == (13, week.MIN_ROWS)
    (m,) = place([ev("deadline", "17:00", "17:00")], DAY, BERLIN, HOURS)
    assert (m.row, m.span) == (109, week.MIN_ROWS)


def test_overlapping_events_sit_side_by_side_and_the_next_cluster_is_full_width() -> None:
    blocks = by_key(
        place(
            [ev("a", "09:00", "10:00"), ev("b", "09:30", "10:30"), ev("c", "10:30", "11:00")],
            DAY,
            BERLIN,
            HOURS,
        )
    )
    assert (blocks["a"].lane, blocks["a"].lanes) == (0, 2)
    assert (blocks["b"].lane, blocks["b"].lanes) == (1, 2)
    assert (blocks["b"].left, blocks["b"].size) == (50, 50)
    assert (blocks["c"].lane, blocks["c"].lanes, blocks["c"].size) == (0, 1, 100)


def test_a_block_widens_over_lanes_that_are_free_for_its_whole_time() -> None:
    blocks = by_key(
        place(
            [
                ev("a", "09:00", "10:00"),
                ev("b", "09:00", "10:00"),
                ev("c", "09:30", "11:00"),
                ev("d", "10:00", "10:30"),
            ],
            DAY,
            BERLIN,
            HOURS,
        )
    )
    assert [blocks[k].lane for k in "abcd"] == [0, 1, 2, 0]
    assert {blocks[k].lanes for k in "abcd"} == {3}
    assert blocks["d"].width == 2  # lanes 0 and 1 are free from 10:00; lane 2 is not
    assert blocks["a"].width == 1 and blocks["c"].width == 1
    assert blocks["d"].size == round(200 / 3, 3)


def test_the_longer_of_two_events_starting_together_takes_the_first_lane() -> None:
    blocks = by_key(place([ev("short", "09:00", "09:30"), ev("long", "09:00", "12:00")],
                          DAY, BERLIN, HOURS))  # fmt: skip
    assert blocks["long"].lane == 0 and blocks["short"].lane == 1


def test_an_event_over_midnight_is_cut_into_one_block_per_day() -> None:
    late = Entry(key="late", title="late", start=at("23:00"), end=at("01:30", DAY + timedelta(1)))
    hours = hour_range([late], [DAY, DAY + timedelta(days=1)], BERLIN)
    assert hours == (0, 24)
    (first,) = place([late], DAY, BERLIN, hours)
    (second,) = place([late], DAY + timedelta(days=1), BERLIN, hours)
    assert (first.row, first.span, first.cut_before, first.cut_after) == (277, 12, False, True)
    assert (second.row, second.span, second.cut_before, second.cut_after) == (1, 18, True, False)
    assert place([late], DAY + timedelta(days=2), BERLIN, hours) == []


def test_the_hours_shown_widen_to_the_events_of_the_range_only() -> None:
    early, evening = ev("early", "06:30", "07:00"), ev("evening", "21:00", "22:15")
    assert hour_range([], [DAY], BERLIN) == HOURS
    assert hour_range([early, evening], [DAY], BERLIN) == (6, 23)
    assert hour_range([early, evening], [DAY + timedelta(days=1)], BERLIN) == HOURS
    assert hour_labels((8, 10)) == [(1, "08:00"), (13, "09:00")]


def test_events_are_placed_by_local_wall_time_on_a_daylight_saving_day() -> None:
    spring = date(2026, 3, 29)  # Berlin skips 02:00–03:00
    (b,) = place([ev("a", "09:00", "10:00", spring)], spring, BERLIN, HOURS)
    assert (b.row, b.span) == (13, 12)
    utc = Entry(key="u", title="u", start=datetime(2026, 3, 29, 7, 0, tzinfo=UTC),
                end=datetime(2026, 3, 29, 8, 0, tzinfo=UTC))  # fmt: skip
    (u,) = place([utc], spring, BERLIN, HOURS)
    assert u.row == 13  # 07:00 UTC is 09:00 in Berlin (summer time)


def test_now_is_marked_on_its_day_within_the_hours_shown() -> None:
    now = datetime(2026, 11, 24, 9, 7, tzinfo=UTC)  # 10:07 in Berlin
    assert now_row(now, DAY, BERLIN, HOURS) == 26
    assert now_row(now, DAY + timedelta(days=1), BERLIN, HOURS) is None
    assert now_row(now, DAY, BERLIN, (11, 19)) is None
    late = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)  # 22:30 in Berlin
    hours = hour_range([], [DAY], BERLIN, now=late)
    assert hours == (8, 23) and now_row(late, DAY, BERLIN, hours) == 175
    assert hour_range([], [DAY + timedelta(days=1)], BERLIN, now=late) == HOURS


def test_all_day_events_cover_their_dates() -> None:
    trip = Entry(key="trip", title="trip", days=(DAY, DAY + timedelta(days=2)))
    assert all_day([trip], DAY) == [trip]
    assert all_day([trip], DAY + timedelta(days=1)) == [trip]
    assert all_day([trip], DAY + timedelta(days=2)) == []
    assert place([trip], DAY, BERLIN, HOURS) == []


def test_too_many_events_in_one_day_stay_bounded() -> None:
    many = [ev(f"e{n:04d}", "09:00", "10:00") for n in range(week.MAX_BLOCKS + 50)]
    assert len(place(many, DAY, BERLIN, HOURS)) == week.MAX_BLOCKS


# ------------------------------------------------------ agenda items → calendar entries


def item(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "uid": "x", "recurrence_id": "", "summary": "Board", "start": "2026-11-24T10:00+01:00",
        "end": "2026-11-24T11:00+01:00", "all_day": False, "date": "2026-11-24",
        "location": "Room 4", "status": "confirmed", "private": False, "checkpoint": False,
        "conflict": None, "change": None,
    }  # fmt: skip
    return base | kw


def test_a_private_event_is_busy_time_in_the_readers_language() -> None:
    (e,) = entries_of(item(private=True, summary="Busy (private)", location=""), 0, False, "ru")
    assert (e.kind, e.title, e.location, e.private) == ("busy", "Занят (личное)", "", True)
    (shared,) = entries_of(item(private=True, summary="Doctor"), 0, True, "ru")
    assert (shared.kind, shared.title, shared.location) == ("event", "Doctor", "Room 4")


def test_a_moved_event_brings_a_ghost_where_it_was() -> None:
    change = {
        "kinds": ["moved"],
        "before": {"start": "2026-11-24T14:00+01:00", "end": "2026-11-24T15:00+01:00"},
    }
    moved, ghost = entries_of(item(change=change), 2, True, "en")
    assert moved.moved_from is not None and ghost.kind == "ghost"
    assert ghost.start is not None and ghost.start.hour == 14 and moved.change == "moved"
    assert ghost.owner == moved.owner == 2
    retitled = {"kinds": ["retitled"], "before": {"start": item()["start"], "end": item()["end"]}}
    (only,) = entries_of(item(change=retitled), 0, True, "en")
    assert only.moved_from is None and only.change == "retitled"
    (gone,) = entries_of(item(change=change, status="cancelled"), 0, True, "en")
    assert gone.kind == "cancelled" and gone.moved_from is None  # no ghost either


def test_checkpoints_cancellations_and_all_day_events_are_told_apart() -> None:
    assert entries_of(item(checkpoint=True), 0, True, "en")[0].kind == "checkpoint"
    assert entries_of(item(status="cancelled"), 0, True, "en")[0].kind == "cancelled"
    (day,) = entries_of(item(all_day=True, start="2026-11-24T00:00+01:00",
                             end="2026-11-26T00:00+01:00"), 0, True, "en")  # fmt: skip
    assert day.days == (DAY, DAY + timedelta(days=2)) and day.start is None


def test_day_headings_name_the_weekday_in_english_and_russian() -> None:
    assert week.weekday("2026-11-24", "en") == "Tue 24 Nov"
    assert week.weekday(date(2026, 11, 29), "ru") == "вс 29 ноября"
