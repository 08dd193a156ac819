"""Delegated tasks: where the Red Line and the Dead Line fall, and their calendar slots.

A task runs from ``term_start`` to ``deadline``. Its *Red Line* is at a fraction of the
working time in the term (default the middle: the last moment to change the approach; by the
clock when the term holds no working time); its *Dead Line* is the deadline
(acceptance). Each becomes an event in the manager's free working time, as near to its line as
the calendar allows.

Slot rules (``find_slot``): a slot lies inside one working interval, overlaps no busy
interval (all intervals half-open, so back-to-back is fine), and starts on the 5-minute grid of
the manager's local clock; of those, the one whose start is nearest to the target wins, the
earlier on a tie. Pure code: no clock, no database.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from zoneinfo import ZoneInfo

import jinja2

from assistant.domain import timefmt
from assistant.domain.text import one_line, shown
from assistant.domain.worktime import WorkingHours

GRID = timedelta(minutes=5)
GOOD_PERCENT = 80.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Interval = tuple[datetime, datetime]


class CheckpointKind(StrEnum):
    RED_LINE = "red_line"
    DEAD_LINE = "dead_line"


@dataclass(frozen=True)
class TaskBrief:
    """What a checkpoint event says about its task (the SMART parameters of the brief)."""

    title: str
    result: str
    measure: str
    resources: str
    why: str
    delegate: str
    term_start: datetime
    deadline: datetime
    zone: str = "UTC"


@dataclass(frozen=True)
class PlannedCheckpoint:
    """A line and the calendar slot chosen for it; ``start``/``end`` are None with a reason."""

    kind: CheckpointKind
    line_at: datetime
    start: datetime | None
    end: datetime | None
    reason: str = ""


def _aware(name: str, t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {t.isoformat()}")
    return t.astimezone(UTC)


def lines(
    term_start: datetime,
    deadline: datetime,
    red_line_fraction: float = 0.5,
    hours: WorkingHours | None = None,
) -> tuple[datetime, datetime]:
    """``(red_line, dead_line)`` in UTC: the Red Line at ``red_line_fraction`` of the term.

    With ``hours``, the fraction is of the working time in the term: a task given on
    Friday afternoon and due on Tuesday at noon has its Red Line on Monday afternoon, half
    of the time to work on it, not on Sunday. A term without working time in it is cut
    by the clock.
    """
    start, end = _aware("term_start", term_start), _aware("deadline", deadline)
    if end <= start:
        raise ValueError("the deadline must be after the start of the term")
    if not 0 < red_line_fraction < 1:
        raise ValueError(f"the Red Line fraction must be between 0 and 1, got {red_line_fraction}")
    working = hours.working_minutes(start, end) if hours is not None else 0.0
    if hours is not None and working > 0:
        return hours.instant_after(start, working * red_line_fraction), end
    return start + (end - start) * red_line_fraction, end


def term_read_late(
    term_start: datetime,
    deadline: datetime,
    now: datetime,
    red_line_fraction: float = 0.5,
    hours: WorkingHours | None = None,
) -> datetime:
    """The start of a term given by email: when the email was sent, unless it is read so
    late (the service was down, the mail was held) that its Red Line has passed; then from
    ``now``, so the Red Line falls in the middle of the time that is left instead of in
    the past."""
    at = _aware("now", now)
    red_line, _ = lines(term_start, deadline, red_line_fraction, hours)
    return at if red_line <= at else _aware("term_start", term_start)


class PastDeadline(ValueError):
    """The deadline has passed: no task can be delegated (or moved) to it."""


class PastStart(ValueError):
    """The term starts in the past: writing its checkpoints needs a confirmation."""


def check_term(
    term_start: datetime,
    deadline: datetime,
    now: datetime,
    zone: str = "UTC",
    *,
    past_start_confirmed: bool = False,
) -> None:
    """A term a task may be given: the deadline after the start and still ahead
    (``PastDeadline``); a start before the current minute only when confirmed
    (``PastStart``): its Red Line, even its Dead Line event, could land in the past."""
    start, end = _aware("term_start", term_start), _aware("deadline", deadline)
    at = _aware("now", now)
    tz = ZoneInfo(zone)
    if end <= at:
        raise PastDeadline(
            f"the deadline {end.astimezone(tz):%Y-%m-%d %H:%M} ({zone}) is in the past"
        )
    if end <= start:
        raise ValueError("the deadline must be after the start of the term")
    if start < at.replace(second=0, microsecond=0) and not past_start_confirmed:
        raise PastStart(
            f"the term starts in the past ({start.astimezone(tz):%Y-%m-%d %H:%M} {zone}): "
            "its checkpoint events could be written into the past; confirm to go ahead"
        )


# ----------------------------------------------------------------------------- slots


def _floor_grid(t: datetime, tz: ZoneInfo) -> datetime:
    """The latest instant ``<= t`` whose local wall-clock time is on the 5-minute grid."""
    offset = t.astimezone(tz).utcoffset() or timedelta(0)
    return t - (t - _EPOCH + offset) % GRID


def _ceil_grid(t: datetime, tz: ZoneInfo) -> datetime:
    floor = _floor_grid(t, tz)
    return floor if floor == t else floor + GRID


def _nearest_on_grid(target: datetime, lo: datetime, hi: datetime, tz: ZoneInfo) -> datetime | None:
    """The grid instant in ``[lo, hi]`` nearest to ``target`` (the earlier on a tie)."""
    if target <= lo:
        up = _ceil_grid(lo, tz)
        return up if up <= hi else None
    if target >= hi:
        down = _floor_grid(hi, tz)
        return down if down >= lo else None
    down, up = _floor_grid(target, tz), _ceil_grid(target, tz)
    options = [t for t in (down, up) if lo <= t <= hi]
    return min(options, key=lambda t: (abs(t - target), t)) if options else None


def merge_busy(busy: Iterable[Interval], start: datetime, end: datetime) -> list[Interval]:
    """Busy intervals meeting ``[start, end)``, in UTC, sorted, overlapping ones joined.

    Empty intervals (``end <= start``: a reminder, a zero-length marker) block nothing.
    """
    spans = sorted(
        (s, e)
        for s, e in ((_aware("busy start", a), _aware("busy end", b)) for a, b in busy)
        if s < e and e > start and s < end
    )
    merged: list[Interval] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            if e > merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def _free(working: Iterable[Interval], blocked: Sequence[Interval]) -> Iterator[Interval]:
    """Working intervals minus sorted, merged ``blocked`` (one pass over both)."""
    i = 0
    for ws, we in working:
        while i < len(blocked) and blocked[i][1] <= ws:
            i += 1
        cursor, j = ws, i
        while j < len(blocked) and blocked[j][0] < we:
            if blocked[j][0] > cursor:
                yield cursor, blocked[j][0]
            cursor = max(cursor, blocked[j][1])
            j += 1
        if cursor < we:
            yield cursor, we


def find_slot(
    target: datetime,
    duration: timedelta,
    busy: Sequence[Interval],
    hours: WorkingHours,
    search: timedelta = timedelta(days=3),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Interval | None:
    """The free working slot of ``duration`` whose start is nearest to ``target``.

    The start lies within ``target ± search`` and on the manager's 5-minute grid; the slot
    starts at or after ``not_before`` and ends at or before ``not_after`` when they are given.
    Busy intervals may be unsorted and overlapping. Returns aware UTC ``(start, end)``, or None
    when no such slot exists.
    """
    target = _aware("target", target)
    if duration <= timedelta(0):
        raise ValueError("a slot needs a positive duration")
    if search < timedelta(0):
        raise ValueError("the search window cannot be negative")
    lo, hi = target - search, target + search  # bounds on the start
    if not_before is not None:
        lo = max(lo, _aware("not_before", not_before))
    if not_after is not None:
        hi = min(hi, _aware("not_after", not_after) - duration)
    if hi < lo:
        return None
    tz = hours.tz
    blocked = merge_busy(busy, lo, hi + duration)
    best: datetime | None = None
    for free_start, free_end in _free(hours.intervals(lo, hi + duration), blocked):
        if best is not None and free_start - target > abs(best - target):
            break  # gaps come in order: nothing later can be nearer
        start = _nearest_on_grid(target, max(free_start, lo), min(free_end - duration, hi), tz)
        if start is not None and (
            best is None or (abs(start - target), start) < (abs(best - target), best)
        ):
            best = start
    return None if best is None else (best, best + duration)


def plan_checkpoints(
    term_start: datetime,
    deadline: datetime,
    *,
    hours: WorkingHours,
    busy: Sequence[Interval] = (),
    red_line_fraction: float = 0.5,
    red_line_duration: timedelta = timedelta(minutes=30),
    dead_line_duration: timedelta = timedelta(minutes=45),
    search: timedelta = timedelta(days=3),
) -> tuple[PlannedCheckpoint, PlannedCheckpoint]:
    """Both lines of a task and the slots for their events.

    The Red Line slot lies within the term (starts at or after ``term_start``, ends by the
    deadline). The Dead Line slot is the one nearest to the deadline, before or after it (the
    earlier on a tie), starting after the Red Line slot ends (after ``term_start`` when the
    Red Line found no slot) and never overlapping it.
    """
    red_at, dead_at = lines(term_start, deadline, red_line_fraction, hours)
    start = _aware("term_start", term_start)
    red = find_slot(red_at, red_line_duration, busy, hours, search, start, dead_at)
    dead_busy: Sequence[Interval] = [*busy, red] if red else busy
    dead = find_slot(
        dead_at, dead_line_duration, dead_busy, hours, search, red[1] if red else start
    )
    return (
        _planned(CheckpointKind.RED_LINE, red_at, red, red_line_duration, search, hours),
        _planned(CheckpointKind.DEAD_LINE, dead_at, dead, dead_line_duration, search, hours),
    )


def _planned(
    kind: CheckpointKind,
    line_at: datetime,
    slot: Interval | None,
    duration: timedelta,
    search: timedelta,
    hours: WorkingHours,
) -> PlannedCheckpoint:
    if slot is not None:
        return PlannedCheckpoint(kind, line_at, slot[0], slot[1])
    local = line_at.astimezone(hours.tz)
    minutes = math.ceil(duration.total_seconds() / 60)
    reason = (
        f"no free {minutes}-minute slot in working hours within {_span_text(search)} of the "
        f"line ({local:%Y-%m-%d %H:%M} {hours.zone})"
    )
    return PlannedCheckpoint(kind, line_at, None, None, reason)


def _span_text(span: timedelta) -> str:
    if span % timedelta(days=1) == timedelta(0):
        days = span.days
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{span.total_seconds() / 3600:g} hours"


# ------------------------------------------------------------------------------ text


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("assistant.domain", "templates"),
        autoescape=False,  # noqa: S701 - plain text for calendar events, never HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def checkpoint_text(
    kind: CheckpointKind, task: TaskBrief, link: str, locale: str = "en"
) -> tuple[str, str]:
    """``(summary, description)`` of a checkpoint event: the method's prompts and the link.

    Templates: ``templates/checkpoint/{red_line,dead_line}.{en,ru}.txt.j2``; each sets
    ``summary`` and renders the description. An empty ``link`` leaves the link line out.
    """
    lg = timefmt.lang(locale)
    zone = task.zone or "UTC"
    context = {
        "task": task,
        "link": link,
        "term": timefmt.span(task.term_start, task.deadline, zone, lg),
        "deadline": _moment(task.deadline, zone, lg),
        "zone": timefmt.zone_label(zone),
        "zone_name": zone,
    }
    module = _env().get_template(f"checkpoint/{kind.value}.{lg}.txt.j2").make_module(context)
    summary = one_line(str(getattr(module, "summary", "")))  # a Subject, an event's title
    return summary, shown(str(module)).strip() + "\n"


def _moment(t: datetime, zone: str, locale: str) -> str:
    local = t.astimezone(ZoneInfo(zone))
    return f"{timefmt.day(local.date(), locale)} {local:%H:%M}"


# ----------------------------------------------------------------------------- score


def is_good_delegation(percent_done: float, on_time: bool) -> bool:
    """Accepted on time at 80% or more."""
    if math.isnan(percent_done) or not 0 <= percent_done <= 100:
        raise ValueError(f"percent done must be between 0 and 100, got {percent_done}")
    return on_time and percent_done >= GOOD_PERCENT


def delegation_score(outcomes: Iterable[tuple[float, bool]]) -> float | None:
    """The share (0..1) of good delegations among ``(percent_done, on_time)``; None if none."""
    flags = [is_good_delegation(p, t) for p, t in outcomes]
    return sum(flags) / len(flags) if flags else None
