"""Figures over latency records: median, p90, share within the SLA, weekly trend."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from assistant.domain.latency.measure import LatencyRecord
from assistant.domain.latency.threads import Direction


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default, Excel PERCENTILE.INC):
    rank ``p/100 * (n-1)`` in the sorted values. None for no values."""
    if not sorted_values:
        return None
    rank = p / 100 * (len(sorted_values) - 1)
    lo, hi = math.floor(rank), math.ceil(rank)
    low, high = sorted_values[lo], sorted_values[hi]
    return low + (high - low) * (rank - lo)


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Figures over a set of records; ``by_direction`` holds the same per direction."""

    count: int
    answered: int
    open: int
    median_minutes: float | None
    p90_minutes: float | None
    mean_minutes: float | None
    max_minutes: float | None
    within_sla: int
    within_sla_share: float | None  # within the SLA / (answered + open ones already overdue)
    sla_minutes: float
    basis: str  # "wall" or "working": which minutes the figures use
    overdue: int = 0  # open and already waiting longer than the SLA
    by_direction: dict[str, LatencySummary] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "by_direction"}
        data["by_direction"] = {k: v.to_dict() for k, v in self.by_direction.items()}
        return data


def _figures(
    records: Sequence[LatencyRecord], sla_minutes: float, basis: Literal["wall", "working"]
) -> LatencySummary:
    minutes: list[float] = []
    for r in records:
        if not r.answered:
            continue
        value = r.wall_minutes if basis == "wall" else r.working_minutes
        if value is None:
            raise ValueError(f"record {r.message_id} has no {basis} minutes")
        minutes.append(value)
    minutes.sort()
    within = sum(1 for v in minutes if v <= sla_minutes)
    # An open message that has waited past the SLA is a breach already, not "unknown".
    overdue = sum(
        1
        for r in records
        if not r.answered
        and (w := r.waiting_minutes if basis == "wall" else r.waiting_working_minutes) is not None
        and w > sla_minutes
    )
    decided = len(minutes) + overdue
    return LatencySummary(
        count=len(records),
        answered=len(minutes),
        open=len(records) - len(minutes),
        median_minutes=percentile(minutes, 50),
        p90_minutes=percentile(minutes, 90),
        mean_minutes=sum(minutes) / len(minutes) if minutes else None,
        max_minutes=minutes[-1] if minutes else None,
        within_sla=within,
        overdue=overdue,
        within_sla_share=within / decided if decided else None,
        sla_minutes=sla_minutes,
        basis=basis,
    )


def summarize(
    records: Iterable[LatencyRecord],
    sla_minutes: float = 30,
    basis: Literal["wall", "working"] = "wall",
) -> LatencySummary:
    """Count, answered, open, median and p90 (see ``percentile``), share within the SLA;
    over all records and per direction (assistant→manager is the main figure)."""
    records = list(records)
    overall = _figures(records, sla_minutes, basis)
    per = {
        d.value: _figures([r for r in records if r.direction is d], sla_minutes, basis)
        for d in (Direction.ASSISTANT_TO_MANAGER, Direction.MANAGER_TO_ASSISTANT)
    }
    return replace(overall, by_direction=per)


def weekly_trend(
    records: Iterable[LatencyRecord],
    zone: str,
    sla_minutes: float = 30,
    basis: Literal["wall", "working"] = "wall",
) -> list[dict[str, Any]]:
    """Per ISO week (Monday, in ``zone``) of sending: the week's figures, oldest first."""
    tz = ZoneInfo(zone)
    weeks: dict[date, list[LatencyRecord]] = {}
    for r in records:
        local = r.sent_at.astimezone(tz).date()
        weeks.setdefault(local - timedelta(days=local.weekday()), []).append(r)
    out = []
    for monday in sorted(weeks):
        f = _figures(weeks[monday], sla_minutes, basis)
        out.append({
            "week": monday.isoformat(),
            "count": f.count,
            "answered": f.answered,
            "median_minutes": f.median_minutes,
            "p90_minutes": f.p90_minutes,
            "within_sla_share": f.within_sla_share,
        })  # fmt: skip
    return out
