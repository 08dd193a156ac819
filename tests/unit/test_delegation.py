"""Red Line / Dead Line placement, free-slot search, checkpoint texts, the delegation score."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.domain.delegation import (
    CheckpointKind,
    TaskBrief,
    checkpoint_text,
    delegation_score,
    find_slot,
    is_good_delegation,
    lines,
    plan_checkpoints,
)
from assistant.domain.worktime import WEEKDAYS, WorkingHours

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
HOURS = WorkingHours.from_config(OFFICE, "Europe/Berlin")
M = timedelta(minutes=1)
Interval = tuple[datetime, datetime]


def b(*args: int) -> datetime:
    """A Berlin wall-clock time."""
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


# ------------------------------------------------------------------------------ lines


def test_lines_at_the_middle_and_at_a_third() -> None:
    start, deadline = b(2026, 3, 2, 9, 0), b(2026, 3, 14, 9, 0)  # 12 days, across no DST
    assert lines(start, deadline) == (b(2026, 3, 8, 9, 0), deadline)
    red, dead = lines(start, deadline, 1 / 3)
    assert red == b(2026, 3, 6, 9, 0) and dead == deadline and red.tzinfo == UTC


def test_lines_measure_real_time_across_dst() -> None:
    # 48 real hours from Saturday 12:00 CET; the clock jumps forward on Sunday.
    red, _ = lines(b(2026, 3, 28, 12, 0), b(2026, 3, 30, 13, 0))
    assert red == b(2026, 3, 29, 13, 0)  # not 12:30: the wall clock shows 49 hours


@pytest.mark.parametrize(
    ("start", "deadline", "fraction", "message"),
    [
        (b(2026, 3, 2, 9), b(2026, 3, 2, 9), 0.5, "deadline must be after"),
        (b(2026, 3, 3, 9), b(2026, 3, 2, 9), 0.5, "deadline must be after"),
        (datetime(2026, 3, 2, 9), b(2026, 3, 5, 9), 0.5, "term_start must be an aware"),
        (b(2026, 3, 2, 9), datetime(2026, 3, 5, 9), 0.5, "deadline must be an aware"),
        (b(2026, 3, 2, 9), b(2026, 3, 5, 9), 0.0, "between 0 and 1"),
        (b(2026, 3, 2, 9), b(2026, 3, 5, 9), 1.0, "between 0 and 1"),
    ],
)
def test_lines_validation(start: datetime, deadline: datetime, fraction: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lines(start, deadline, fraction)


# ------------------------------------------------------------------------- find_slot


def test_nearest_free_slot_around_a_meeting() -> None:
    busy = [(b(2026, 3, 4, 12, 0), b(2026, 3, 4, 14, 0))]
    # 13:00 is busy: 14:00 starts 60 min away, 11:30 (ending at 12:00) starts 90 min away.
    assert find_slot(b(2026, 3, 4, 13, 0), 30 * M, busy, HOURS) == (b(2026, 3, 4, 14, 0), b(2026, 3, 4, 14, 30))
    # A free target is taken as it is, rounded to the 5-minute grid (ties go earlier).
    assert find_slot(b(2026, 3, 4, 10, 7, 30), 30 * M, busy, HOURS) == (b(2026, 3, 4, 10, 5), b(2026, 3, 4, 10, 35))
    assert find_slot(b(2026, 3, 4, 10, 8), 30 * M, busy, HOURS) == (b(2026, 3, 4, 10, 10), b(2026, 3, 4, 10, 40))


def test_tie_goes_to_the_earlier_slot() -> None:
    busy = [(b(2026, 3, 4, 11, 0), b(2026, 3, 4, 13, 0))]
    # 12:00 target; 10:30-11:00 starts 90 min before, 13:00-13:30 starts 60 min after.
    assert find_slot(b(2026, 3, 4, 12, 0), 30 * M, busy, HOURS)[0] == b(2026, 3, 4, 13, 0)  # type: ignore[index]
    busy = [(b(2026, 3, 4, 11, 30), b(2026, 3, 4, 13, 0))]
    # Now 11:00 and 13:00 both start 60 min away: the earlier wins.
    assert find_slot(b(2026, 3, 4, 12, 0), 30 * M, busy, HOURS)[0] == b(2026, 3, 4, 11, 0)  # type: ignore[index]


def test_unsorted_overlapping_busy_and_all_day_events() -> None:
    busy = [
        (b(2026, 3, 5, 0, 0), b(2026, 3, 6, 0, 0)),  # all-day Thursday
        (b(2026, 3, 4, 16, 0), b(2026, 3, 4, 17, 0)),
        (b(2026, 3, 4, 15, 0), b(2026, 3, 4, 16, 30)),
        (b(2026, 3, 4, 17, 0), b(2026, 3, 4, 18, 0)),
        (b(2026, 3, 6, 9, 0), b(2026, 3, 6, 9, 30)),
    ]
    # Target Thursday noon: Friday 09:30 is 21.5 h away, Wednesday 14:15 is 21.75 h away.
    assert find_slot(b(2026, 3, 5, 12, 0), 45 * M, busy, HOURS) == (b(2026, 3, 6, 9, 30), b(2026, 3, 6, 10, 15))


def test_weekend_target_and_outside_hours() -> None:
    # Saturday 10:00: Friday 17:30 is 16.5 h before, Monday 09:00 is 47 h after.
    assert find_slot(b(2026, 3, 7, 10, 0), 30 * M, [], HOURS) == (b(2026, 3, 6, 17, 30), b(2026, 3, 6, 18, 0))
    # A slot never straddles the end of the day: 60 minutes do not fit after 17:30.
    busy = [(b(2026, 3, 6, 9, 0), b(2026, 3, 6, 17, 30))]
    got = find_slot(b(2026, 3, 6, 18, 0), 60 * M, busy, HOURS)
    assert got == (b(2026, 3, 5, 17, 0), b(2026, 3, 5, 18, 0))


def test_none_when_nothing_fits_and_bounds() -> None:
    busy = [(b(2026, 3, 1), b(2026, 3, 20))]
    assert find_slot(b(2026, 3, 10, 12, 0), 30 * M, busy, HOURS) is None
    assert find_slot(b(2026, 3, 10, 12, 0), 10 * 60 * M, [], HOURS) is None  # longer than a day
    assert find_slot(b(2026, 3, 7, 12, 0), 30 * M, [], HOURS, search=timedelta(hours=12)) is None
    target = b(2026, 3, 4, 12, 0)
    assert find_slot(target, 30 * M, [], HOURS, not_before=b(2026, 3, 4, 15, 2)) == (b(2026, 3, 4, 15, 5), b(2026, 3, 4, 15, 35))
    assert find_slot(target, 30 * M, [], HOURS, not_after=b(2026, 3, 4, 10, 0)) == (b(2026, 3, 4, 9, 30), b(2026, 3, 4, 10, 0))
    assert find_slot(target, 30 * M, [], HOURS, not_before=target, not_after=target) is None


def test_zone_far_from_utc() -> None:
    tokyo = WorkingHours.from_config(OFFICE, "Asia/Tokyo")
    tz = ZoneInfo("Asia/Tokyo")
    # Sunday 02:00 UTC is 11:00 in Tokyo: Monday 09:00 is 22 h away, Friday 17:30 is 41.5 h.
    got = find_slot(datetime(2026, 3, 8, 2, 0, tzinfo=UTC), 30 * M, [], tokyo)
    assert got == (datetime(2026, 3, 9, 9, 0, tzinfo=tz), datetime(2026, 3, 9, 9, 30, tzinfo=tz))
    la = WorkingHours.from_config(OFFICE, "America/Los_Angeles")
    tz = ZoneInfo("America/Los_Angeles")
    busy = [(datetime(2026, 3, 9, 16, 0, tzinfo=UTC), datetime(2026, 3, 9, 19, 0, tzinfo=UTC))]  # 09:00-12:00 PDT
    got = find_slot(datetime(2026, 3, 9, 16, 0, tzinfo=UTC), 30 * M, busy, la)
    assert got == (datetime(2026, 3, 9, 12, 0, tzinfo=tz), datetime(2026, 3, 9, 12, 30, tzinfo=tz))


def test_grid_is_the_local_clock() -> None:
    # In 1970 Monrovia ran at UTC-0:44:30, so its 5-minute grid is not UTC's.
    tz = ZoneInfo("Africa/Monrovia")
    hours = WorkingHours.from_config(OFFICE, "Africa/Monrovia")
    start, _ = find_slot(datetime(1970, 6, 3, 12, 2, tzinfo=tz), 30 * M, [], hours)  # type: ignore[misc]
    assert start == datetime(1970, 6, 3, 12, 0, tzinfo=tz) and start.second == 30  # in UTC


def test_find_slot_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="positive duration"):
        find_slot(b(2026, 3, 4, 12), timedelta(0), [], HOURS)
    with pytest.raises(ValueError, match="negative"):
        find_slot(b(2026, 3, 4, 12), 30 * M, [], HOURS, search=-M)
    with pytest.raises(ValueError, match="aware"):
        find_slot(datetime(2026, 3, 4, 12), 30 * M, [], HOURS)
    with pytest.raises(ValueError, match="aware"):
        find_slot(b(2026, 3, 4, 12), 30 * M, [(datetime(2026, 3, 4, 12), b(2026, 3, 4, 13))], HOURS)


# -- properties against brute force over the 5-minute grid ------------------------------------

ZONES = ["Asia/Tokyo", "America/Los_Angeles", "Europe/Berlin", "UTC", "Asia/Kathmandu"]


def on_grid(t: datetime, zone: str) -> bool:
    local = t.astimezone(ZoneInfo(zone))
    return local.minute % 5 == 0 and local.second == 0 and local.microsecond == 0


def brute_force(
    target: datetime,
    duration: timedelta,
    busy: Sequence[Interval],
    hours: WorkingHours,
    search: timedelta,
    not_before: datetime | None,
    not_after: datetime | None,
) -> Interval | None:
    """Every whole minute in target ± search, filtered by the definition; nearest, then earliest."""
    t = (target - search).replace(second=0, microsecond=0)
    best: datetime | None = None
    while t <= target + search:
        end = t + duration
        if (
            t >= target - search
            and on_grid(t, hours.zone)
            and (not_before is None or t >= not_before)
            and (not_after is None or end <= not_after)
            and not any(bs < end and t < be for bs, be in busy if bs < be)
            and hours.working_minutes(t, end) == duration / M
            and (best is None or abs(t - target) < abs(best - target))
        ):
            best = t
        t += M
    return None if best is None else (best, best + duration)


@st.composite
def scenario(draw: st.DrawFn) -> dict[str, object]:
    zone = draw(st.sampled_from(ZONES))
    tz = ZoneInfo(zone)
    cfg: dict[str, list[list[str]]] = dict(OFFICE) if draw(st.booleans()) else {}
    for name in WEEKDAYS if not cfg else ():
        n = draw(st.sampled_from([1, 1, 2, 0, 3]))
        points = sorted(draw(st.lists(st.integers(0, 24 * 60), min_size=2 * n, max_size=2 * n, unique=True)))
        if points:
            cfg[name] = [[f"{m // 60:02d}:{m % 60:02d}" for m in points[i : i + 2]] for i in range(0, 2 * n, 2)]
    hours = WorkingHours.from_config(cfg, zone)
    # Targets around the March DST changes (US on the 8th, EU on the 29th), any second.
    target = draw(st.datetimes(datetime(2026, 3, 5), datetime(2026, 4, 1))).replace(tzinfo=UTC)
    grid = target.replace(minute=target.minute - target.minute % 5, second=0, microsecond=0)
    if draw(st.booleans()):
        target = grid
    search = draw(st.sampled_from([6 * 60, 24 * 60, 36 * 60]) | st.integers(0, 36 * 60)) * M
    busy: list[Interval] = []
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.booleans()):  # on the grid, so that slots may touch them
            start = grid + draw(st.integers(-6 * 60, 6 * 60)) * 5 * M
            busy.append((start, start + draw(st.integers(0, 8 * 12)) * 5 * M))
        else:  # anywhere, and empty or backwards ones too
            start = target + draw(st.integers(-30 * 60, 30 * 60)) * M
            busy.append((start, start + draw(st.integers(-10, 8 * 60)) * M))
    for _ in range(draw(st.integers(0, 2))):  # all-day events: local midnights
        day = (target + draw(st.integers(-2, 2)) * timedelta(days=1)).astimezone(tz).date()
        start = datetime.combine(day, datetime.min.time(), tzinfo=tz)
        end = datetime.combine(day + timedelta(days=draw(st.integers(1, 2))), datetime.min.time(), tzinfo=tz)
        busy.append((start, end))
    def near(lo: int, hi: int) -> st.SearchStrategy[datetime]:
        return st.integers(lo * 60, hi * 60).map(lambda m: target + m * M)

    return {
        "target": target,
        "duration": draw(st.sampled_from([5, 30, 45, 60]) | st.integers(1, 4 * 60)) * M,
        "busy": busy,
        "hours": hours,
        "search": search,
        "not_before": draw(st.none() | near(-26, 6)),
        "not_after": draw(st.none() | near(-6, 26)),
    }


@settings(max_examples=200, deadline=None)
@given(scenario())
def test_find_slot_matches_brute_force(case: dict[str, object]) -> None:
    got = find_slot(**case)  # type: ignore[arg-type]
    assert got == brute_force(**case)  # type: ignore[arg-type]
    if got is None:
        return
    start, end = got
    target, duration, busy, hours = case["target"], case["duration"], case["busy"], case["hours"]
    assert isinstance(hours, WorkingHours) and isinstance(target, datetime)
    assert start.tzinfo == UTC and end - start == duration
    assert on_grid(start, hours.zone)
    assert not any(bs < end and start < be for bs, be in busy if bs < be)  # type: ignore[attr-defined]
    assert hours.working_minutes(start, end) == (end - start) / M  # inside working hours
    assert abs(start - target) <= case["search"]  # type: ignore[operator]


# ---------------------------------------------------------------------- plan_checkpoints


def test_plan_puts_both_lines_in_free_working_time() -> None:
    start, deadline = b(2026, 3, 2, 9, 0), b(2026, 3, 13, 18, 0)  # Mon .. Fri 18:00
    busy = [(b(2026, 3, 7, 0, 0), b(2026, 3, 10, 0, 0))]  # Sat-Mon away
    red, dead = plan_checkpoints(start, deadline, hours=HOURS, busy=busy)
    # Ten working days: the line is after five of them, at the end of the first Friday
    # (by the clock it would be Sunday 01:30); the slot ends there.
    assert red.kind is CheckpointKind.RED_LINE and red.line_at == b(2026, 3, 6, 18, 0)
    assert (red.start, red.end, red.reason) == (b(2026, 3, 6, 17, 30), b(2026, 3, 6, 18, 0), "")
    # The deadline is the end of Friday's hours: acceptance fits just before it.
    assert dead.kind is CheckpointKind.DEAD_LINE and dead.line_at == deadline
    assert (dead.start, dead.end) == (b(2026, 3, 13, 17, 15), b(2026, 3, 13, 18, 0))


def test_the_red_line_halves_the_working_time_not_the_clock() -> None:
    # Given Friday 16:00, due Tuesday 12:00: 2 h on Friday, 9 on Monday, 3 on Tuesday.
    start, deadline = b(2026, 3, 6, 16, 0), b(2026, 3, 10, 12, 0)
    red_at, dead_at = lines(start, deadline, 0.5, HOURS)
    assert (red_at, dead_at) == (b(2026, 3, 9, 14, 0), deadline)  # 7 h in: Monday 14:00
    assert lines(start, deadline, 0.5)[0] == b(2026, 3, 8, 14, 0)  # the clock's Sunday
    red, _ = plan_checkpoints(start, deadline, hours=HOURS)
    assert (red.start, red.end) == (b(2026, 3, 9, 14, 0), b(2026, 3, 9, 14, 30))
    # A fraction counts working time too: a quarter of 14 h is 3.5 h, Monday 10:30.
    assert lines(start, deadline, 0.25, HOURS)[0] == b(2026, 3, 9, 10, 30)


def test_a_term_without_working_time_is_cut_by_the_clock() -> None:
    start, deadline = b(2026, 3, 7, 10, 0), b(2026, 3, 8, 10, 0)  # Saturday to Sunday
    assert lines(start, deadline, 0.5, HOURS)[0] == b(2026, 3, 7, 22, 0)


def test_plan_short_term_keeps_order_and_no_overlap() -> None:
    start, deadline = b(2026, 3, 4, 10, 0), b(2026, 3, 4, 11, 0)
    red, dead = plan_checkpoints(start, deadline, hours=HOURS)
    assert (red.start, red.end) == (b(2026, 3, 4, 10, 30), b(2026, 3, 4, 11, 0))
    assert dead.start == b(2026, 3, 4, 11, 0) and dead.end == b(2026, 3, 4, 11, 45)


def test_plan_red_line_stays_inside_the_term() -> None:
    # Friday 14:00 .. 18:00 with the afternoon busy: no Red Line slot inside the term.
    busy = [(b(2026, 3, 6, 13, 0), b(2026, 3, 6, 18, 0))]
    red, dead = plan_checkpoints(b(2026, 3, 6, 14, 0), b(2026, 3, 6, 18, 0), hours=HOURS, busy=busy)
    assert red.start is None and red.end is None
    assert "no free 30-minute slot in working hours within 3 days" in red.reason
    assert "2026-03-06 16:00 Europe/Berlin" in red.reason
    # The Dead Line may not go before the term: Monday 09:00 after the deadline.
    assert (dead.start, dead.end) == (b(2026, 3, 9, 9, 0), b(2026, 3, 9, 9, 45))


def test_plan_reports_when_the_calendar_is_full() -> None:
    busy = [(b(2026, 2, 1), b(2026, 4, 1))]
    red, dead = plan_checkpoints(
        b(2026, 3, 2, 9), b(2026, 3, 13, 18), hours=HOURS, busy=busy,
        red_line_fraction=1 / 3, dead_line_duration=60 * M, search=timedelta(hours=36),
    )  # fmt: skip
    assert red.start is None and dead.start is None
    assert dead.reason.startswith("no free 60-minute slot in working hours within 36 hours")


# ------------------------------------------------------------------------------ texts

TASK = TaskBrief(
    title="Q3 sales report",
    result="A ten-page report with the regional breakdown",
    measure="Approved by the CFO without rework",
    resources="CRM export, two days of the analyst",
    why="The board meets on 16 March",
    delegate="ivan@example.com",
    term_start=b(2026, 3, 2, 9, 0),
    deadline=b(2026, 3, 13, 18, 0),
    zone="Europe/Berlin",
)
LINK = "https://assistant.example.com/f/abc123?sig=xyz"


@pytest.mark.parametrize(
    ("kind", "locale", "summary", "phrases"),
    [
        (CheckpointKind.RED_LINE, "en", "Red Line: Q3 sales report", [
            "Does the work match the agreed parameters", "on schedule", "What support is needed",
            "better way", "analyse the error first", "criticise only to improve", "punish last",
            "Term: Mon 2 Mar 09:00 – Fri 13 Mar 18:00 (Berlin time)",
        ]),
        (CheckpointKind.RED_LINE, "ru", "Красная линия: Q3 sales report", [
            "Соответствует ли работа согласованным параметрам", "по графику",
            "Какая поддержка нужна", "лучший способ", "сначала разберите ошибку",
            "критикуйте только ради улучшения", "наказывайте в последнюю очередь",
            "пн 2 марта 09:00 – пт 13 марта 18:00",
        ]),
        (CheckpointKind.DEAD_LINE, "en", "Dead Line, acceptance: Q3 sales report", [
            "What percent of the task is done", "on time", "Quality", "What deserves praise",
            "thank ivan@example.com", "Deadline: Fri 13 Mar 18:00",
        ]),
        (CheckpointKind.DEAD_LINE, "ru-RU", "Мёртвая линия, приёмка: Q3 sales report", [
            "На сколько процентов выполнена задача", "в срок", "Качество", "За что стоит похвалить",
            "поблагодарите исполнителя (ivan@example.com)", "Дедлайн: пт 13 марта 18:00",
        ]),
    ],
)  # fmt: skip
def test_checkpoint_text(kind: CheckpointKind, locale: str, summary: str, phrases: list[str]) -> None:
    got_summary, description = checkpoint_text(kind, TASK, LINK, locale)
    assert got_summary == summary
    for phrase in [*phrases, LINK, TASK.result, TASK.measure, TASK.resources, TASK.why]:
        assert phrase in description, phrase
    assert "{" not in description and "\n\n\n" not in description


def test_checkpoint_text_without_link_or_details() -> None:
    bare = TaskBrief("Call the bank", "", "", "", "", "", TASK.term_start, TASK.deadline)
    for kind in CheckpointKind:
        for locale in ("en", "ru"):
            summary, description = checkpoint_text(kind, bare, "", locale)
            assert summary.endswith("Call the bank")
            assert "http" not in description and "обратную связь" not in description
            assert "Give your feedback" not in description
            assert "UTC" in description  # the zone defaults to UTC


# ------------------------------------------------------------------------------ score


@pytest.mark.parametrize(
    ("percent", "on_time", "good"),
    [(100, True, True), (80, True, True), (79.9, True, False), (100, False, False), (0, True, False)],
)
def test_is_good_delegation(percent: float, on_time: bool, good: bool) -> None:
    assert is_good_delegation(percent, on_time) is good


def test_delegation_score() -> None:
    assert delegation_score([]) is None
    assert delegation_score([(90, True), (50, True), (100, False), (80, True)]) == 0.5
    with pytest.raises(ValueError, match="between 0 and 100"):
        delegation_score([(120, True)])
    with pytest.raises(ValueError, match="between 0 and 100"):
        is_good_delegation(float("nan"), True)
