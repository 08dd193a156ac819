"""The manager's working time: weekly hours in their own zone, minus holidays.

Hours are local wall-clock intervals (``09:00–18:00`` is nine hours on a DST change day too);
every instant going in must be aware and every instant coming out is aware UTC. A local time
that does not exist (the spring gap) is read as zoneinfo reads it with ``fold=0``: shifted
forward by the gap. Touching intervals (``fri 22:00–24:00`` and ``sat 00:00–02:00``) come out
as one.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY = timedelta(days=1)
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")

Interval = tuple[datetime, datetime]
DayHours = tuple[tuple[timedelta, timedelta], ...]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_CHUNK_US = 32 * 86_400_000_000  # working time is tabulated in spans of 32 days
# One span's working intervals as POSIX microseconds: starts, ends, the working time
# before each interval in the span, and the span's total.
_Span = tuple[list[int], list[int], list[int], int]


def _check_aware(name: str, t: datetime) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {t.isoformat()}")


def _parse_time(text: Any, where: str) -> timedelta:
    """``"09:30"`` → 9 h 30 min after local midnight; ``"24:00"`` is the end of the day."""
    m = _TIME.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"{where}: {text!r} is not a time like 09:00")
    hours, minutes = int(m.group(1)), int(m.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"{where}: {text!r} is not a time of day (00:00 to 24:00)")
    return timedelta(hours=hours, minutes=minutes)


def _fmt(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class WorkingHours:
    """Weekly working hours in ``zone``; ``week[0]`` is Monday.

    Each day holds sorted, non-overlapping ``(start, end)`` offsets from local midnight,
    ``timedelta(0) <= start < end <= timedelta(hours=24)``. Holidays are local dates off.
    """

    zone: str
    week: tuple[DayHours, ...]
    holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        problems: list[str] = []
        try:
            ZoneInfo(self.zone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"unknown time zone {self.zone!r}")
        if len(self.week) != 7:
            problems.append(f"a week has 7 days, got {len(self.week)}")
        for name, day in zip(WEEKDAYS, self.week, strict=False):
            prev_end: timedelta | None = None
            for start, end in day:
                span = f"{name} {_fmt(start)}-{_fmt(end)}"
                if not timedelta(0) <= start < end <= DAY:
                    problems.append(f"{span}: the start must be before the end, within the day")
                elif prev_end is not None and start < prev_end:
                    problems.append(f"{span}: overlaps the interval before it")
                prev_end = end
        if problems:
            raise ValueError("invalid working hours: " + "; ".join(problems))

    @classmethod
    def from_config(
        cls, cfg: Mapping[str, Any], zone: str, holidays: Iterable[date] = ()
    ) -> WorkingHours:
        """Read ``{"mon": [["09:00", "18:00"]], ...}``; a day not named is a day off.

        Every problem is reported at once in one ``ValueError``.
        """
        problems: list[str] = []
        days: list[list[tuple[timedelta, timedelta]]] = [[] for _ in WEEKDAYS]
        for key, value in cfg.items():
            name = str(key).strip().lower()
            if name not in WEEKDAYS:
                problems.append(f"unknown weekday {key!r} (use {', '.join(WEEKDAYS)})")
                continue
            if value is not None and not isinstance(value, list | tuple):
                problems.append(f"{name}: expected a list of [start, end] pairs, got {value!r}")
                continue
            for pair in value or ():
                if isinstance(pair, str) or not isinstance(pair, list | tuple) or len(pair) != 2:
                    problems.append(f"{name}: {pair!r} is not a [start, end] pair")
                    continue
                try:
                    start = _parse_time(pair[0], name)
                    end = _parse_time(pair[1], name)
                except ValueError as exc:
                    problems.append(str(exc))
                    continue
                if start >= end:
                    problems.append(f"{name} {pair[0]}-{pair[1]}: the start must be before the end")
                    continue
                days[WEEKDAYS.index(name)].append((start, end))
        for name, day in zip(WEEKDAYS, days, strict=True):
            day.sort()
            for (s1, e1), (s2, e2) in pairwise(day):
                if s2 < e1:
                    problems.append(
                        f"{name}: {_fmt(s1)}-{_fmt(e1)} and {_fmt(s2)}-{_fmt(e2)} overlap"
                    )
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"unknown time zone {zone!r}")
        if problems:
            raise ValueError("invalid working hours: " + "; ".join(problems))
        week = tuple(tuple(d) for d in days)
        return cls(zone, week, frozenset(holidays))

    def to_config(self) -> dict[str, list[list[str]]]:
        """The inverse of :meth:`from_config` (days off left out)."""
        return {
            name: [[_fmt(s), _fmt(e)] for s, e in day]
            for name, day in zip(WEEKDAYS, self.week, strict=True)
            if day
        }

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    def _day(self, d: date) -> Iterator[Interval]:
        """Working intervals of local date ``d`` in UTC (empty on a holiday)."""
        if d in self.holidays:
            return
        midnight = datetime.combine(d, time(), tzinfo=self.tz)
        for start, end in self.week[d.weekday()]:
            # Wall-clock arithmetic: same tzinfo, so + timedelta moves the local clock.
            yield (midnight + start).astimezone(UTC), (midnight + end).astimezone(UTC)

    def intervals(self, start: datetime, end: datetime) -> Iterator[Interval]:
        """Working intervals overlapping ``[start, end)``, clipped, in order, as aware UTC."""
        _check_aware("start", start)
        _check_aware("end", end)
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        if end <= start:
            return
        tz = self.tz
        d, last = start.astimezone(tz).date() - DAY, end.astimezone(tz).date()
        pending: Interval | None = None
        while d <= last:
            for s, e in self._day(d):
                s = max(s, start, pending[1] if pending else s)  # monotone across a DST gap
                e = min(e, end)
                if e <= s:
                    continue
                if pending is not None and s == pending[1]:
                    pending = (pending[0], e)
                    continue
                if pending is not None:
                    yield pending
                pending = (s, e)
            d += DAY
        if pending is not None:
            yield pending

    def working_minutes(self, start: datetime, end: datetime) -> float:
        """Working time between two aware instants, in minutes (0 when ``end <= start``).

        Working intervals are tabulated once per span of 32 days (as :meth:`intervals` gives
        them), so a call costs two binary searches plus one addition per span between.
        """
        if start.tzinfo is None or start.utcoffset() is None:
            _check_aware("start", start)
        if end.tzinfo is None or end.utcoffset() is None:
            _check_aware("end", end)
        a, b = (start - _EPOCH) // _US, (end - _EPOCH) // _US
        if b <= a:
            return 0.0
        ka, kb = a // _CHUNK_US, b // _CHUNK_US
        first = self._span(ka)
        if ka == kb:
            micros = _before(first, b) - _before(first, a)
        else:
            micros = first[3] - _before(first, a) + _before(self._span(kb), b)
            if kb - ka > 1:
                between = self._between.get((ka, kb))
                if between is None:
                    between = sum(self._span(k)[3] for k in range(ka + 1, kb))
                    self._between[ka, kb] = between
                micros += between
        return micros / 60_000_000

    @cached_property
    def _spans(self) -> dict[int, _Span]:
        """Tabulated spans by number: a cache, not a field (equality and repr ignore it)."""
        return {}

    @cached_property
    def _between(self) -> dict[tuple[int, int], int]:
        """Working microseconds of the whole spans strictly between two span numbers."""
        return {}

    def _span(self, k: int) -> _Span:
        """The working intervals of ``[k, k + 1) * 32 days`` after the epoch, cached."""
        spans = self._spans
        found = spans.get(k)
        if found is None:
            lo = _EPOCH + k * _CHUNK_US * _US
            starts: list[int] = []
            ends: list[int] = []
            before: list[int] = []
            total = 0
            for s, e in self.intervals(lo, lo + _CHUNK_US * _US):
                s_us, e_us = (s - _EPOCH) // _US, (e - _EPOCH) // _US
                starts.append(s_us)
                ends.append(e_us)
                before.append(total)
                total += e_us - s_us
            found = spans[k] = (starts, ends, before, total)
        return found

    def instant_after(self, t: datetime, minutes: float) -> datetime:
        """The instant when ``minutes`` of working time have passed since ``t`` (UTC).

        Raises ``ValueError`` when the hours hold no working time for a year ahead.
        """
        _check_aware("t", t)
        left = timedelta(minutes=minutes)
        cursor = t.astimezone(UTC)
        horizon = cursor + timedelta(days=366 + len(self.holidays))
        step = timedelta(days=28)
        while cursor < horizon:
            chunk_end = min(cursor + step, horizon)
            for s, e in self.intervals(cursor, chunk_end):
                if e - s >= left:
                    return s + left
                left -= e - s
            cursor = chunk_end
        raise ValueError(f"no working time after {t.isoformat()} in the manager's hours")

    def is_working(self, t: datetime) -> bool:
        """Whether ``t`` falls in working time (intervals are half-open: the end is off)."""
        _check_aware("t", t)
        return next(self.intervals(t, t + timedelta(microseconds=1)), None) is not None

    def next_working_instant(self, t: datetime) -> datetime:
        """``t`` itself (in UTC) when it is working time, else the start of the next interval.

        Raises ``ValueError`` when no working time exists within a year after ``t`` plus one
        day per holiday (that is: the week is empty, or holidays cover everything).
        """
        _check_aware("t", t)
        t = t.astimezone(UTC)
        horizon = t + timedelta(days=366 + len(self.holidays))
        step = timedelta(days=28)
        cursor = t
        while cursor < horizon:
            found = next(self.intervals(cursor, min(cursor + step, horizon)), None)
            if found is not None:
                return found[0]
            cursor += step
        raise ValueError(f"no working time after {t.isoformat()} in the manager's hours")


def _before(span: _Span, t: int) -> int:
    """Working microseconds in ``span`` before the instant ``t`` (POSIX microseconds)."""
    starts, ends, before, _ = span
    i = bisect_right(starts, t) - 1
    if i < 0:
        return 0
    return before[i] + min(ends[i], t) - starts[i]
