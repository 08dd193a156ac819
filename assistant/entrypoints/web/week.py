"""Where the week calendar puts each event: pure layout, no I/O.

The calendar is a time grid: one column per day (the week view) or per manager (the day
view), one grid row per ``SLOT`` minutes. ``place`` turns the timed events of one column
into ``Block``s: the first grid row and the number of rows it spans, and, for events that
overlap, a lane (side by side, ``lanes`` in the cluster of overlapping events, widened
to the right over lanes that are free for its whole time). ``hour_range`` picks the hours
shown (the working day, widened to every event of the range), ``now_row`` the row of
"now", ``all_day`` the day-long events of a date. Times are cut at midnight in the
column's zone: an event from 23:00 to 01:00 is two blocks, one on each day.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from assistant.domain import timefmt

SLOT = 5  # minutes per grid row
MIN_ROWS = 4  # a short event is still 20 minutes tall: its title fits
DEFAULT_HOURS = (8, 19)  # shown even when the day is empty
MAX_BLOCKS = 200  # per column; more than that in one day is a feed gone wrong

KINDS = ("event", "checkpoint", "busy", "cancelled", "ghost")


@dataclass(frozen=True, slots=True)
class Entry:
    """An event as the calendar shows it (already masked for its viewer)."""

    key: str
    title: str
    start: datetime | None = None  # aware; None for a day-long event
    end: datetime | None = None
    days: tuple[date, date] | None = None  # a day-long event: [first, end) dates
    kind: str = "event"  # one of KINDS; "busy" is a private event shown as busy time
    private: bool = False
    conflict: str = ""  # "overlap", "travel" or ""
    owner: int = 0  # which manager (the colour)
    location: str = ""
    change: str = ""  # what changed recently ("moved, retitled"), "" if nothing
    moved_from: tuple[datetime, datetime] | None = None


@dataclass(frozen=True, slots=True)
class Block:
    """One entry's box in one column: grid rows and its lane among overlapping entries."""

    entry: Entry
    start: datetime  # the part shown in this column (cut at midnight)
    end: datetime
    row: int  # first grid row, from 1
    span: int  # grid rows
    lane: int = 0  # from 0
    lanes: int = 1  # lanes in its cluster of overlapping blocks
    width: int = 1  # lanes it covers (free lanes to its right are used)
    cut_before: bool = False  # began on an earlier day
    cut_after: bool = False  # goes on into the next day

    @property
    def left(self) -> float:
        """Left edge in percent of the column."""
        return round(100 * self.lane / self.lanes, 3)

    @property
    def size(self) -> float:
        """Width in percent of the column."""
        return round(100 * self.width / self.lanes, 3)


def _window(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    return (
        datetime.combine(day, time(0), zone),
        datetime.combine(day + timedelta(days=1), time(0), zone),
    )


def _part(entry: Entry, day: date, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
    """The part of a timed entry inside ``day`` (in ``zone``), or None."""
    if entry.start is None or entry.end is None:
        return None
    lo, hi = _window(day, zone)
    start, end = entry.start.astimezone(zone), entry.end.astimezone(zone)
    end = max(end, start)
    if start == end:  # a moment (a deadline): shown where it is
        return (start, end) if lo <= start < hi else None
    if end <= lo or start >= hi:
        return None
    return max(start, lo), min(end, hi)


def _minutes(t: datetime, day: date, zone: ZoneInfo) -> int:
    """Minutes from the day's midnight to ``t`` (1440 for the next midnight)."""
    lo, _ = _window(day, zone)
    return int((t - lo).total_seconds() // 60)


def hour_range(
    entries: list[Entry],
    days: list[date],
    zone: ZoneInfo,
    default: tuple[int, int] = DEFAULT_HOURS,
    now: datetime | None = None,
) -> tuple[int, int]:
    """The hours to show: ``default`` widened to every timed entry on ``days`` and to
    ``now`` when it falls on one of them (so that "now" is always marked)."""
    first, last = default
    if now is not None and now.astimezone(zone).date() in days:
        hour = now.astimezone(zone).hour
        first, last = min(first, hour), max(last, hour + 1)
    for day in days:
        for entry in entries:
            part = _part(entry, day, zone)
            if part is None:
                continue
            start, end = (_minutes(t, day, zone) for t in part)
            first = min(first, start // 60)
            last = max(last, -(-max(end, start + SLOT * MIN_ROWS) // 60))
    return max(0, first), min(24, last)


def rows(hours: tuple[int, int]) -> int:
    return (hours[1] - hours[0]) * 60 // SLOT


def place(entries: list[Entry], day: date, zone: ZoneInfo, hours: tuple[int, int]) -> list[Block]:
    """The blocks of ``entries`` on ``day``, in reading order, with their lanes."""
    total = rows(hours)
    offset = hours[0] * 60
    blocks: list[Block] = []
    for entry in entries:
        part = _part(entry, day, zone)
        if part is None:
            continue
        start, end = part
        a = _minutes(start, day, zone) - offset
        b = _minutes(end, day, zone) - offset
        row = min(max(a, 0) // SLOT + 1, max(total - MIN_ROWS + 1, 1))
        last = max(-(-min(b, total * SLOT) // SLOT), row - 1 + MIN_ROWS)
        assert entry.start is not None
        assert entry.end is not None
        blocks.append(
            Block(
                entry=entry,
                start=start,
                end=end,
                row=row,
                span=min(last, total) - row + 1,
                cut_before=start > entry.start.astimezone(zone),
                cut_after=end < entry.end.astimezone(zone),
            )
        )
    blocks.sort(key=lambda k: (k.row, -k.span, k.entry.kind == "ghost", k.entry.key))
    return _lanes(blocks[:MAX_BLOCKS])


def _lanes(blocks: list[Block]) -> list[Block]:
    """Side by side where they overlap: clusters of overlapping blocks share lanes."""
    out: list[Block] = []
    cluster: list[Block] = []
    ends: list[int] = []  # per lane: the row after its last block
    reach = 0
    for b in blocks:
        if cluster and b.row >= reach:
            out.extend(_widen(cluster, len(ends)))
            cluster, ends = [], []
        lane = next((n for n, e in enumerate(ends) if e <= b.row), len(ends))
        if lane == len(ends):
            ends.append(0)
        ends[lane] = b.row + b.span
        cluster.append(replace(b, lane=lane))
        reach = max(reach if len(cluster) > 1 else 0, b.row + b.span)
    out.extend(_widen(cluster, len(ends)))
    return out


def _widen(cluster: list[Block], lanes: int) -> list[Block]:
    def clash(x: Block, y: Block) -> bool:
        return x.row < y.row + y.span and y.row < x.row + x.span

    out = []
    for b in cluster:
        width = 1
        while b.lane + width < lanes and not any(
            o.lane == b.lane + width and clash(o, b) for o in cluster
        ):
            width += 1
        out.append(replace(b, lanes=lanes, width=width))
    return out


def now_row(now: datetime, day: date, zone: ZoneInfo, hours: tuple[int, int]) -> int | None:
    """The grid row "now" falls in on ``day``, or None (another day, or outside the hours)."""
    lo, hi = _window(day, zone)
    if not lo <= now < hi:
        return None
    minutes = _minutes(now.astimezone(zone), day, zone) - hours[0] * 60
    if not 0 <= minutes < rows(hours) * SLOT:
        return None
    return minutes // SLOT + 1


def all_day(entries: list[Entry], day: date) -> list[Entry]:
    """The day-long entries that cover ``day``."""
    return [e for e in entries if e.days is not None and e.days[0] <= day < e.days[1]]


def hour_labels(hours: tuple[int, int]) -> list[tuple[int, str]]:
    """(grid row, "09:00") for each hour shown."""
    return [((h - hours[0]) * 60 // SLOT + 1, f"{h:02d}:00") for h in range(hours[0], hours[1])]


def weekday(day: date | str, locale: str) -> str:
    """A day heading with its weekday, "Tue 24 Nov" / "вт 24 ноября" (a template filter)."""
    when = date.fromisoformat(day) if isinstance(day, str) else day
    return timefmt.day(when, locale)
