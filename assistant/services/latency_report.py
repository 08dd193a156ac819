"""Reply latency reports: both directions' figures, the weekly trend, every record; and the
latency of an exported mailbox (``assistant latency --maildir/--mbox``).

Light on purpose: no database, so measuring an archive starts fast (issue 16).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from assistant.domain.latency import (
    Direction,
    LatencyRecord,
    reply_latencies,
    summarize,
    weekly_trend,
)
from assistant.domain.model import MessageData


def latency_of_archive(
    *,
    maildir: Path | None,
    mbox: Path | None,
    managers: Sequence[str],
    assistants: Sequence[str],
    sla_minutes: float,
    since: datetime | None,
    now: datetime,
    zone: str | None = None,
    holidays: str = "",
    on_read: Callable[[int, int | None], None] | None = None,
) -> LatencyReport:
    """Latency of an exported mailbox. With ``zone``, in working time (Mon–Fri 09–18 there,
    with ``holidays`` of that country); otherwise in wall time. ``on_read`` hears how many
    messages were read, of how many when known (a terminal shows progress)."""
    from connectors.archive.mailbox import MaildirSource
    from connectors.archive.mbox import MboxSource

    messages: list[MessageData] = []
    skipped: list[str] = []
    for source in (
        [MaildirSource(maildir)] if maildir else []
    ) + ([MboxSource(mbox)] if mbox else []):  # fmt: skip
        delta = source.changes(None, on_read=on_read)
        messages.extend(delta.messages)
        skipped.extend(delta.skipped)
    working = None
    if zone:
        from assistant.services.hours import hours_for
        from assistant.store.tables import DEFAULT_WORKING_HOURS

        years = sorted({m.sent_at.year for m in messages} | {now.year})
        cfg = dict(DEFAULT_WORKING_HOURS) | ({"holidays": holidays} if holidays else {})
        working = hours_for(cfg, zone, range(years[0], years[-1] + 1)).working_minutes
    result = report(
        messages, {a.lower() for a in managers}, {a.lower() for a in assistants}, now,
        sla_minutes, since, working, zone or "UTC",
    )  # fmt: skip
    return replace(result, skipped=len(skipped), read=len(messages))


def report(
    messages: Iterable[MessageData],
    managers: set[str],
    assistants: set[str],
    now: datetime,
    sla_minutes: float,
    since: datetime | None,
    working_minutes: Any,
    zone: str = "UTC",
) -> LatencyReport:
    records = reply_latencies(messages, managers, assistants, now, working_minutes=working_minutes)
    basis: Literal["wall", "working"] = "working" if working_minutes is not None else "wall"
    return _report(records, sla_minutes, since, basis, zone)


@dataclass(frozen=True)
class Figures:
    """One direction's figures in the SLA's basis; with working hours known, the wall
    median and p90 beside them."""

    count: int
    answered: int
    open: int
    median_minutes: float | None
    p90_minutes: float | None
    mean_minutes: float | None
    max_minutes: float | None
    within_sla: int
    within_sla_share: float | None
    sla_minutes: float
    basis: str
    overdue: int
    wall_median_minutes: float | None = None  # with basis "working" only
    wall_p90_minutes: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.basis != "working":
            del out["wall_median_minutes"], out["wall_p90_minutes"]
        return out


@dataclass(frozen=True)
class MessageLatency:
    """One message waiting for an answer, as the report lists it (minutes to 0.1)."""

    id: str
    direction: str
    subject: str
    sent_at: datetime
    replied_at: datetime | None
    wall_minutes: float | None
    working_minutes: float | None
    within_sla: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "direction": self.direction,
            "subject": self.subject,
            "sent_at": self.sent_at.isoformat(),
            "replied_at": self.replied_at.isoformat() if self.replied_at else None,
            "wall_minutes": self.wall_minutes,
            "working_minutes": self.working_minutes,
            "within_sla": self.within_sla,
        }


@dataclass(frozen=True)
class LatencyReport:
    """``assistant latency``: both directions' figures, the weekly trend, every record."""

    basis: Literal["wall", "working"]
    summary: Figures  # assistant → manager: how fast the manager answers
    reverse_summary: Figures  # manager → assistant
    weekly: list[dict[str, Any]]
    sla_minutes: float
    messages: list[MessageLatency]
    skipped: int | None = None  # an archive's unreadable messages
    read: int | None = None  # an archive's messages read

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "basis": self.basis,
            "summary": self.summary.to_dict(),
            "reverse_summary": self.reverse_summary.to_dict(),
            "weekly": self.weekly,
            "sla_minutes": self.sla_minutes,
            "messages": [m.to_dict() for m in self.messages],
        }
        if self.skipped is not None:
            out["skipped"] = self.skipped
        if self.read is not None:
            out["read"] = self.read
        return out


def _report(
    records: list[LatencyRecord],
    sla_minutes: float,
    since: datetime | None,
    basis: Literal["wall", "working"],
    zone: str,
) -> LatencyReport:
    if since is not None:
        records = [r for r in records if r.sent_at >= since]
    to_manager = [r for r in records if r.direction is Direction.ASSISTANT_TO_MANAGER]
    to_assistant = [r for r in records if r.direction is Direction.MANAGER_TO_ASSISTANT]
    return LatencyReport(
        basis=basis,
        summary=_summary(to_manager, sla_minutes, basis),
        reverse_summary=_summary(to_assistant, sla_minutes, basis),
        weekly=weekly_trend(to_manager, zone, sla_minutes, basis),
        sla_minutes=sla_minutes,
        messages=[_record(r, sla_minutes) for r in records],
    )


def _summary(
    records: list[LatencyRecord], sla: float, basis: Literal["wall", "working"]
) -> Figures:
    s = summarize(records, sla, basis)
    wall = summarize(records, sla, "wall") if basis == "working" else None
    return Figures(
        count=s.count,
        answered=s.answered,
        open=s.open,
        median_minutes=s.median_minutes,
        p90_minutes=s.p90_minutes,
        mean_minutes=s.mean_minutes,
        max_minutes=s.max_minutes,
        within_sla=s.within_sla,
        within_sla_share=s.within_sla_share,
        sla_minutes=s.sla_minutes,
        basis=basis,
        overdue=s.overdue,
        wall_median_minutes=wall.median_minutes if wall else None,
        wall_p90_minutes=wall.p90_minutes if wall else None,
    )


def _record(r: LatencyRecord, sla: float) -> MessageLatency:
    basis = r.working_minutes if r.working_minutes is not None else r.wall_minutes
    return MessageLatency(
        id=r.message_id,
        direction=r.direction.value,
        subject=r.subject,
        sent_at=r.sent_at,
        replied_at=r.replied_at,
        wall_minutes=None if r.wall_minutes is None else round(r.wall_minutes, 1),
        working_minutes=None if r.working_minutes is None else round(r.working_minutes, 1),
        within_sla=None if basis is None else basis <= sla,
    )
