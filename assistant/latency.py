"""Threading and reply latency between a manager and an assistant (pure, no I/O).

Threads come from the provider's thread id when there is one, else from In-Reply-To /
References, else (archives such as Enron carry neither) from the normalized subject and
the two people exchanging it: a message joins the previous one with the same normalized
subject between the same two people when it is at most ``window`` later. Copies of one
message count once: the same Message-ID, or the same sender, second, normalized subject
and recipients (one mail filed in several folders, each copy with its own Message-ID). The
body is not compared: Enron copies of one mail differ in line wrapping. A copy exactly 12 h
off also counts as the same message (some Enron copies lost AM/PM in a conversion).

An assistant→manager message is answered by the first strictly later manager→assistant
message in the same thread; that reply answers every message still open before it. The
other direction is measured the same way. Auto-replies neither open nor answer anything.
Everything is O(n log n): one sort, dicts and a union-find.
"""

from __future__ import annotations

import gc
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo

from assistant.model import MessageData

DEFAULT_WINDOW = timedelta(days=14)

_PREFIXES = re.compile(
    r"^(?:\s*(?:"
    r"(?:re|fwd?|aw|wg|sv|vs|tr|rv|antw|odp|ответ|отв|на|пересл|перес)"
    r"\s*(?:\[\d+\]|\(\d+\))?\s*[:：]"
    r"|\[[^\[\]]{0,40}\]"
    r"))+",
    re.IGNORECASE,
)
_HALF_DAY = 12 * 3600


def normalize_subject(subject: str) -> str:
    """The subject without reply/forward prefixes or leading [tags], casefolded.

    Strips any nesting of ``Re:``, ``FW:``, ``Fwd:``, ``AW:``, ``WG:``, ``SV:``, ``TR:``,
    ``Ответ:``, ``НА:``, ``Пересл:``, counted forms (``RE[2]:``, ``Re(2):``) and
    bracketed tags such as ``[EXT]``; collapses whitespace.
    """
    if ":" in subject or "[" in subject or "：" in subject:
        subject = _PREFIXES.sub("", subject, count=1)
    return " ".join(subject.split()).casefold()


class Direction(StrEnum):
    ASSISTANT_TO_MANAGER = "assistant_to_manager"
    MANAGER_TO_ASSISTANT = "manager_to_assistant"
    OTHER = "other"


def _lower(addresses: Iterable[str]) -> frozenset[str]:
    return frozenset(a.strip().lower() for a in addresses)


def _direction(
    message: MessageData, managers: frozenset[str], assistants: frozenset[str], include_cc: bool
) -> Direction:
    sender = message.from_addr.lower()
    if sender in assistants:
        wanted = managers
        found = Direction.ASSISTANT_TO_MANAGER
    elif sender in managers:
        wanted = assistants
        found = Direction.MANAGER_TO_ASSISTANT
    else:
        return Direction.OTHER
    recipients = message.to + message.cc if include_cc else message.to
    if any(r.lower() in wanted for r in recipients):
        return found
    return Direction.OTHER


def classify(
    message: MessageData, managers: set[str], assistants: set[str], include_cc: bool = False
) -> Direction:
    """Who writes to whom: sender and a To (or Cc) recipient, compared case-insensitively."""
    return _direction(message, _lower(managers), _lower(assistants), include_cc)


# ------------------------------------------------------------------------- threading


@dataclass(slots=True)
class _Threads:
    messages: list[MessageData]  # one per distinct message
    order: list[int]  # indices into messages, by (sent_at, message_id)
    key: list[str]  # thread key per index
    index_of: dict[str, int]  # every input message_id -> its distinct message


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC: threading allocates millions of acyclic tuples, and the
    collector's repeated passes over them would double the run time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _thread(messages: Iterable[MessageData], window: timedelta) -> _Threads:
    with _gc_paused():
        return _thread_unpaused(messages, window)


def _thread_unpaused(messages: Iterable[MessageData], window: timedelta) -> _Threads:
    distinct: list[MessageData] = []
    stamps: list[float] = []  # POSIX seconds of each distinct message
    facts: list[tuple[str, str, frozenset[str]]] = []  # (subject, sender, recipients)
    index_of: dict[str, int] = {}
    # (sender, subject, recipients) -> {second: index}: copies are found by the second, or
    # exactly 12 h off (Enron copies that lost AM/PM in a conversion).
    by_copy: dict[tuple[str, str, frozenset[str]], dict[int, int]] = {}
    subjects: dict[str, str] = {}
    for m in messages:
        if m.message_id in index_of:
            continue
        stamp = m.sent_at.timestamp()
        second = int(stamp)
        sender = m.from_addr.lower()
        subject = subjects.get(m.subject)
        if subject is None:
            subject = subjects[m.subject] = normalize_subject(m.subject)
        recipients = frozenset([a.lower() for a in m.to + m.cc])
        seconds = by_copy.setdefault((sender, subject, recipients), {})
        i = seconds.get(second)
        if i is None:
            i = seconds.get(second - _HALF_DAY)
            if i is None:
                i = seconds.get(second + _HALF_DAY)
        if i is None:
            i = seconds[second] = len(distinct)
            distinct.append(m)
            stamps.append(stamp)
            facts.append((subject, sender, recipients))
        index_of[m.message_id] = i
    del by_copy, subjects

    parent = list(range(len(distinct)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_thread_id: dict[str, int] = {}
    unknown_refs: dict[str, int] = {}
    for i, m in enumerate(distinct):
        if m.thread_id:
            union(i, by_thread_id.setdefault(m.thread_id, i))
            continue
        refs = (*m.references, m.in_reply_to) if m.in_reply_to else m.references
        for ref in refs:
            j = index_of.get(ref)
            union(i, j if j is not None else unknown_refs.setdefault(ref, i))

    order = _chronological(distinct, stamps)
    span = window.total_seconds()
    last: dict[tuple[str, str, str], tuple[float, int, bool]] = {}
    for i in order:
        m = distinct[i]
        subject, sender, recipients = facts[i]
        if m.thread_id or not subject:
            continue
        bare = not m.in_reply_to and not m.references
        stamp = stamps[i]
        for other in recipients:
            if other == sender:
                continue
            pair = (subject, sender, other) if sender < other else (subject, other, sender)
            prev = last.get(pair)
            if prev is not None and stamp - prev[0] <= span and (bare or prev[2]):
                union(i, prev[1])
            last[pair] = (stamp, i, bare)

    root_key: dict[int, str] = {}
    keys = [""] * len(distinct)
    for i in order:  # a thread is named by its earliest message
        keys[i] = root_key.setdefault(find(i), distinct[i].message_id)
    return _Threads(distinct, order, keys, index_of)


def _chronological(distinct: list[MessageData], stamps: list[float]) -> list[int]:
    """Indices by (sent_at, message_id): one sort by time, then equal times by id."""
    order = sorted(range(len(distinct)), key=stamps.__getitem__)
    start = 0
    for end in range(1, len(order) + 1):
        if end == len(order) or stamps[order[end]] != stamps[order[start]]:
            if end - start > 1:
                order[start:end] = sorted(order[start:end], key=lambda i: distinct[i].message_id)
            start = end
    return order


def thread_messages(
    messages: Iterable[MessageData], window: timedelta = DEFAULT_WINDOW
) -> dict[str, str]:
    """Map every message_id (copies included) to its thread key: the Message-ID of the
    thread's earliest message."""
    threads = _thread(messages, window)
    return {mid: threads.key[i] for mid, i in threads.index_of.items()}


# --------------------------------------------------------------------------- latency


@dataclass(frozen=True, slots=True)
class LatencyRecord:
    """One message that waits for an answer, and when (if ever) it got one."""

    message_id: str
    thread_key: str
    subject: str
    sent_at: datetime
    direction: Direction
    replied_at: datetime | None = None
    reply_message_id: str = ""
    wall_minutes: float | None = None
    working_minutes: float | None = None
    waiting_minutes: float | None = None  # open ones: wall minutes from sent_at to now
    waiting_working_minutes: float | None = None  # open ones, in working time (when known)

    @property
    def answered(self) -> bool:
        return self.replied_at is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "thread_key": self.thread_key,
            "subject": self.subject,
            "sent_at": self.sent_at.isoformat(),
            "direction": self.direction.value,
            "replied_at": self.replied_at.isoformat() if self.replied_at else None,
            "reply_message_id": self.reply_message_id,
            "wall_minutes": self.wall_minutes,
            "working_minutes": self.working_minutes,
            "waiting_minutes": self.waiting_minutes,
            "waiting_working_minutes": self.waiting_working_minutes,
        }


def reply_latencies(
    messages: Iterable[MessageData],
    managers: set[str],
    assistants: set[str],
    now: datetime,
    include_cc: bool = False,
    working_minutes: Callable[[datetime, datetime], float] | None = None,
    window: timedelta = DEFAULT_WINDOW,
) -> list[LatencyRecord]:
    """A record per assistant→manager and manager→assistant message, by sent_at.

    Messages dated after ``now`` (bad clocks, archive outliers) and auto-replies are
    ignored. ``working_minutes(start, end)``, when given, fills the working time of
    answered records.
    """
    with _gc_paused():
        threads = _thread_unpaused(messages, window)
        return _records(
            threads, _lower(managers), _lower(assistants), now, include_cc, working_minutes
        )


def _records(
    threads: _Threads,
    mgr: frozenset[str],
    asst: frozenset[str],
    now: datetime,
    include_cc: bool,
    working_minutes: Callable[[datetime, datetime], float] | None,
) -> list[LatencyRecord]:
    direction: dict[int, Direction] = {}
    reply_of: dict[int, int] = {}
    open_by_thread: dict[str, dict[Direction, list[int]]] = {}
    for i in threads.order:
        m = threads.messages[i]
        if m.auto_reply or m.sent_at > now:
            continue
        d = _direction(m, mgr, asst, include_cc)
        if d is Direction.OTHER:
            continue
        direction[i] = d
        pending = open_by_thread.setdefault(
            threads.key[i],
            {Direction.ASSISTANT_TO_MANAGER: [], Direction.MANAGER_TO_ASSISTANT: []},
        )
        other = (
            Direction.MANAGER_TO_ASSISTANT
            if d is Direction.ASSISTANT_TO_MANAGER
            else Direction.ASSISTANT_TO_MANAGER
        )
        still_open = []
        for j in pending[other]:
            if threads.messages[j].sent_at < m.sent_at:
                reply_of[j] = i
            else:  # the same instant: order unknown, so not an answer
                still_open.append(j)
        pending[other] = still_open
        pending[d].append(i)

    records: list[LatencyRecord] = []
    for i in threads.order:
        d_i = direction.get(i)
        if d_i is None:
            continue
        m = threads.messages[i]
        r = reply_of.get(i)
        if r is None:
            waiting = (now - m.sent_at).total_seconds() / 60
            waiting_working = (
                working_minutes(m.sent_at, now)
                if working_minutes is not None and now > m.sent_at
                else None
            )
            records.append(
                LatencyRecord(
                    m.message_id, threads.key[i], m.subject, m.sent_at, d_i,
                    waiting_minutes=waiting, waiting_working_minutes=waiting_working,
                )
            )
            continue
        reply = threads.messages[r]
        records.append(
            LatencyRecord(
                m.message_id,
                threads.key[i],
                m.subject,
                m.sent_at,
                d_i,
                replied_at=reply.sent_at,
                reply_message_id=reply.message_id,
                wall_minutes=(reply.sent_at - m.sent_at).total_seconds() / 60,
                working_minutes=(
                    working_minutes(m.sent_at, reply.sent_at) if working_minutes else None
                ),
            )
        )
    return records


# --------------------------------------------------------------------------- summary


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
