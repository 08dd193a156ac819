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
Everything is O(n log n): one sort, dicts and a union-find. ``LatencyIndex`` keeps the same
state between batches of new mail, so that an update costs in proportion to the new
messages and the threads they touch, and gives what ``reply_latencies`` gives on it all.
"""

from __future__ import annotations

import gc
import math
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from itertools import compress, count, islice
from operator import eq
from typing import Any, Literal
from zoneinfo import ZoneInfo

from assistant.domain.model import MessageData

DEFAULT_WINDOW = timedelta(days=14)

_PREFIXES = re.compile(
    r"^(?:\s*(?:"
    r"(?:re|fwd?|aw|wg|sv|vs|tr|rv|antw|odp|ответ|отв|на|пересл|перес)"
    r"\.?\s*(?:\[\d+\]|\(\d+\))?\s*[:：]"
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
    root: list[int]  # the thread (its union-find root) per index
    index_of: dict[str, int]  # every input message_id -> its distinct message
    senders: list[str]  # lower-cased sender per index
    stamps: list[float]  # POSIX seconds per index


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
    # (subject, sender, recipients) -> its first distinct message, or {second: index} once a
    # second one shares it: copies are found by the second, or exactly 12 h off (Enron
    # copies that lost AM/PM in a conversion).
    by_copy: dict[tuple[str, str, frozenset[str]], int | dict[int, int]] = {}
    subjects: dict[str, str] = {}
    senders: dict[str, str] = {}
    recipient_sets: dict[tuple[str, ...], frozenset[str]] = {}
    for m in messages:
        mid = m.message_id
        if mid in index_of:
            continue
        stamp = m.sent_at.timestamp()
        second = int(stamp)
        sender = senders.get(m.from_addr)
        if sender is None:
            sender = senders[m.from_addr] = m.from_addr.lower()
        subject = subjects.get(m.subject)
        if subject is None:
            subject = subjects[m.subject] = normalize_subject(m.subject)
        addrs = m.to + m.cc if m.cc else m.to
        recipients = recipient_sets.get(addrs)
        if recipients is None:
            recipients = recipient_sets[addrs] = frozenset([a.lower() for a in addrs])
        fact = (subject, sender, recipients)
        n = len(distinct)
        found = by_copy.get(fact)
        i: int | None = None
        if found is None:
            by_copy[fact] = n
        elif isinstance(found, int):
            earlier = int(stamps[found])
            if earlier in (second, second - _HALF_DAY, second + _HALF_DAY):
                i = found
            else:
                by_copy[fact] = {earlier: found, second: n}
        else:
            i = found.get(second)
            if i is None:
                i = found.get(second - _HALF_DAY)
                if i is None:
                    i = found.get(second + _HALF_DAY)
                    if i is None:
                        found[second] = n
        if i is None:
            i = n
            distinct.append(m)
            stamps.append(stamp)
            facts.append(fact)
        index_of[mid] = i
    del by_copy, subjects, senders, recipient_sets

    parent = list(range(len(distinct)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_thread_id: dict[str, int] = {}
    unknown_refs: dict[str, int] = {}
    for i, m in enumerate(distinct):
        if m.thread_id:
            a, b = i, by_thread_id.setdefault(m.thread_id, i)
            if a != b:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
            continue
        in_reply_to, references = m.in_reply_to, m.references
        if in_reply_to and (not references or references[-1] != in_reply_to):
            references = (*references, in_reply_to)
        root = -1
        for ref in references:
            j = index_of.get(ref)
            if j is None:
                j = unknown_refs.setdefault(ref, i)
            if j != i:
                if root < 0:
                    root = find(i)
                rj = find(j)
                if rj != root:
                    if rj < root:
                        parent[root] = root = rj
                    else:
                        parent[rj] = root
    del by_thread_id, unknown_refs

    order = _chronological(distinct, stamps)
    span = window.total_seconds()
    # (subject, one address, the other) -> the latest message so far between them
    last: dict[tuple[str, str, str], int] = {}
    for i in order:
        subject, sender, recipients = facts[i]
        if not subject:
            continue
        m = distinct[i]
        if m.thread_id:
            continue
        bare = not m.in_reply_to and not m.references
        stamp = stamps[i]
        for other in recipients:
            if other == sender:
                continue
            pair = (subject, sender, other) if sender < other else (subject, other, sender)
            j = last.get(pair)
            last[pair] = i
            if j is None or stamp - stamps[j] > span:
                continue
            if bare or (not distinct[j].in_reply_to and not distinct[j].references):
                ra, rb = find(i), find(j)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    del last

    # Every union points the larger root at the smaller, so parent[i] <= i: one pass in
    # index order leaves each message pointing at its root.
    for i, p in enumerate(parent):
        if p != i:
            parent[i] = parent[p]
    return _Threads(distinct, order, parent, index_of, [f[1] for f in facts], stamps)


def _chronological(distinct: list[MessageData], stamps: list[float]) -> list[int]:
    """Indices by (sent_at, message_id): one sort by time, then equal times by id."""
    order = sorted(range(len(distinct)), key=stamps.__getitem__)
    times = [stamps[i] for i in order]
    # positions k where times[k] == times[k + 1], found without a Python-level loop
    ties = list(compress(count(), map(eq, times, islice(times, 1, None))))
    k = 0
    while k < len(ties):
        start = end = ties[k]
        while k + 1 < len(ties) and ties[k + 1] == end + 1:
            k += 1
            end += 1
        k += 1
        run = order[start : end + 2]
        order[start : end + 2] = sorted(run, key=lambda i: distinct[i].message_id)
    return order


def thread_messages(
    messages: Iterable[MessageData], window: timedelta = DEFAULT_WINDOW
) -> dict[str, str]:
    """Map every message_id (copies included) to its thread key: the Message-ID of the
    thread's earliest message."""
    threads = _thread(messages, window)
    msgs, root = threads.messages, threads.root
    first: dict[int, int] = {}
    for i in threads.order:  # a thread is named by its earliest message
        first.setdefault(root[i], i)
    return {mid: msgs[first[root[i]]].message_id for mid, i in threads.index_of.items()}


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


_new = object.__new__
(
    _set_message_id, _set_thread_key, _set_subject, _set_sent_at, _set_direction,
    _set_replied_at, _set_reply_message_id, _set_wall, _set_working, _set_waiting,
    _set_waiting_working,
) = (getattr(LatencyRecord, f.name).__set__ for f in fields(LatencyRecord))  # fmt: skip


def _new_record(
    message_id: str,
    thread_key: str,
    subject: str,
    sent_at: datetime,
    direction: Direction,
    replied_at: datetime | None,
    reply_message_id: str,
    wall_minutes: float | None,
    working_minutes: float | None,
    waiting_minutes: float | None,
    waiting_working_minutes: float | None,
) -> LatencyRecord:
    """``LatencyRecord(...)`` at half the cost, for the hundreds of thousands a large mailbox
    gives: the frozen dataclass's ``__init__`` goes through ``object.__setattr__`` by name."""
    r: LatencyRecord = _new(LatencyRecord)
    _set_message_id(r, message_id)
    _set_thread_key(r, thread_key)
    _set_subject(r, subject)
    _set_sent_at(r, sent_at)
    _set_direction(r, direction)
    _set_replied_at(r, replied_at)
    _set_reply_message_id(r, reply_message_id)
    _set_wall(r, wall_minutes)
    _set_working(r, working_minutes)
    _set_waiting(r, waiting_minutes)
    _set_waiting_working(r, waiting_working_minutes)
    return r


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
    a2m, m2a = Direction.ASSISTANT_TO_MANAGER, Direction.MANAGER_TO_ASSISTANT
    msgs, senders, root, stamps = threads.messages, threads.senders, threads.root, threads.stamps
    # Float seconds keep the order of distinct microseconds; within a second of ``now`` the
    # dates decide (and a naive ``now`` fails as comparing dates does).
    aware = now.tzinfo is not None and now.utcoffset() is not None
    after, near = (now.timestamp() + 1, now.timestamp() - 1) if aware else (math.inf, -math.inf)
    # To (or To and Cc), lower-cased, per distinct tuple of addresses
    lowered: dict[tuple[str, ...], frozenset[str]] = {}
    measured: list[int] = []  # by (sent_at, message_id)
    direction: dict[int, Direction] = {}
    reply_of: dict[int, int] = {}
    # thread -> (open assistant->manager messages, open manager->assistant messages)
    open_by_thread: dict[int, tuple[list[int], list[int]]] = {}
    first: dict[int, int] = {}  # thread -> its earliest message, which names it
    for i in threads.order:
        first.setdefault(root[i], i)
        sender = senders[i]
        if sender in asst:
            d, wanted = a2m, mgr
        elif sender in mgr:
            d, wanted = m2a, asst
        else:
            continue
        m = msgs[i]
        if m.auto_reply:
            continue
        if stamps[i] > after or (stamps[i] > near and m.sent_at > now):
            continue
        addrs = m.to + m.cc if include_cc and m.cc else m.to
        recipients = lowered.get(addrs)
        if recipients is None:
            recipients = lowered[addrs] = frozenset([a.lower() for a in addrs])
        if recipients.isdisjoint(wanted):
            continue
        direction[i] = d
        measured.append(i)
        thread = root[i]
        pending = open_by_thread.get(thread)
        if pending is None:
            pending = open_by_thread[thread] = ([], [])
        mine, theirs = pending if d is a2m else (pending[1], pending[0])
        if theirs:
            sent = m.sent_at
            still_open = []
            for j in theirs:
                if msgs[j].sent_at < sent:
                    reply_of[j] = i
                else:  # the same instant: order unknown, so not an answer
                    still_open.append(j)
            theirs[:] = still_open
        mine.append(i)
    del open_by_thread, lowered

    records: list[LatencyRecord] = []
    append = records.append
    for i in measured:
        m = msgs[i]
        key = msgs[first[root[i]]].message_id
        r = reply_of.get(i)
        if r is None:
            waiting = (now - m.sent_at).total_seconds() / 60
            waiting_working = (
                working_minutes(m.sent_at, now)
                if working_minutes is not None and now > m.sent_at
                else None
            )
            append(
                _new_record(
                    m.message_id, key, m.subject, m.sent_at, direction[i],
                    None, "", None, None, waiting, waiting_working,
                )
            )  # fmt: skip
            continue
        reply = msgs[r]
        append(
            _new_record(
                m.message_id, key, m.subject, m.sent_at, direction[i],
                reply.sent_at, reply.message_id,
                (reply.sent_at - m.sent_at).total_seconds() / 60,
                working_minutes(m.sent_at, reply.sent_at) if working_minutes else None,
                None, None,
            )
        )  # fmt: skip
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


# ------------------------------------------------------------------------ incremental


_Pair = tuple[str, str, str]  # (normalized subject, one address, the other), sorted


class LatencyIndex:
    """Threads and reply latency kept up to date as mail arrives.

    ``add(batch, now)`` after ``add(earlier, now)`` leaves the same records as
    ``reply_latencies(earlier + batch, ...)``, for any split into batches and any order of
    arrival (late ones included). A batch costs in proportion to its own messages and the
    threads they join: copies are found by dictionary, thread ids and references join through
    a union-find, and each (subject, two people) keeps its messages in time order, so a late
    message is put in its place and linked to its neighbours only. Subject links are not
    monotone: neighbours within the window are linked when one of them has no headers, so a
    late message with headers landing between two linked ones may cut that link; then only
    that thread is rebuilt. Per thread the replies are found again from its own messages and
    the answered records are kept; open ones are measured at ``now`` when asked for.
    """

    def __init__(
        self,
        managers: set[str],
        assistants: set[str],
        include_cc: bool = False,
        working_minutes: Callable[[datetime, datetime], float] | None = None,
        window: timedelta = DEFAULT_WINDOW,
    ) -> None:
        self._mgr, self._asst = _lower(managers), _lower(assistants)
        self._include_cc = include_cc
        self._working = working_minutes
        self._span = window.total_seconds()
        self._messages: list[MessageData] = []  # one per distinct message
        self._stamps: list[float] = []
        self._facts: list[tuple[str, str, frozenset[str]]] = []  # subject, sender, recipients
        self._index_of: dict[str, int] = {}
        # as in _thread: the first message of a (subject, sender, recipients), or by second
        self._by_copy: dict[tuple[str, str, frozenset[str]], int | dict[int, int]] = {}
        # raw -> normalized subject, lower-cased sender and recipients: one object shared by
        # every message that has it
        self._subjects: dict[str, str] = {}
        self._senders: dict[str, str] = {}
        self._recipient_sets: dict[tuple[str, ...], frozenset[str]] = {}
        self._parent: list[int] = []
        self._members: dict[int, list[int]] = {}  # root -> members, threads of two or more
        self._first: dict[int, int] = {}  # root -> earliest member, threads of two or more
        self._by_thread_id: dict[str, int] = {}
        self._unknown_refs: dict[str, int] = {}
        self._chains: dict[_Pair, int | list[int]] = {}  # one, or by (sent_at, message_id)
        self._direction: dict[int, Direction] = {}
        self._reply: dict[int, int] = {}  # measured message -> its reply, -1 while open
        self._answered: dict[int, LatencyRecord] = {}
        self._order: list[int] = []  # measured messages by (sent_at, message_id)
        self._unordered: list[int] = []

    def __len__(self) -> int:
        """Distinct messages seen (copies count once)."""
        return len(self._messages)

    # ---------------------------------------------------------------- public

    def add(self, messages: Iterable[MessageData], now: datetime) -> list[LatencyRecord]:
        """Take new messages (copies and messages already seen are fine); return, as of
        ``now`` and by sent_at, every record of every thread the batch touched: new, grown,
        merged or split."""
        with _gc_paused():
            touched: list[int] = []
            dirty: list[int] = []
            for m in messages:
                self._register(m, touched, dirty)
            for root in {self._find(x) for x in dirty}:
                touched.extend(self._rebuild(root))
            measured: list[int] = []
            for root in {self._find(x) for x in touched}:
                measured.extend(self._measure(root))
            measured.sort(key=self._order_key)
            return [r for i in measured if (r := self._record(i, now)) is not None]

    def records(self, now: datetime) -> list[LatencyRecord]:
        """What ``reply_latencies`` gives on every message added so far, as of ``now``."""
        with _gc_paused():
            if self._unordered:
                self._unordered.sort(key=self._order_key)
                self._order += self._unordered  # two sorted runs: one merge for timsort
                self._order.sort(key=self._order_key)
                self._unordered = []
            return [r for i in self._order if (r := self._record(i, now)) is not None]

    def summary(
        self,
        now: datetime,
        sla_minutes: float = 30,
        basis: Literal["wall", "working"] = "wall",
    ) -> LatencySummary:
        return summarize(self.records(now), sla_minutes, basis)

    def thread_key(self, message_id: str) -> str | None:
        """The thread key ``thread_messages`` would give ``message_id`` (None: unseen)."""
        i = self._index_of.get(message_id)
        if i is None:
            return None
        root = self._find(i)
        return self._messages[self._first.get(root, root)].message_id

    # ---------------------------------------------------------------- threading

    def _order_key(self, i: int) -> tuple[float, str]:
        return self._stamps[i], self._messages[i].message_id

    def _find(self, i: int) -> int:
        parent = self._parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra == rb:
            return
        ma, mb = self._members.get(ra), self._members.get(rb)
        if (len(ma) if ma else 1) < (len(mb) if mb else 1):
            ra, rb, ma, mb = rb, ra, mb, ma
        self._parent[rb] = ra
        if ma is None:
            ma = self._members[ra] = [ra]
        if mb is None:
            ma.append(rb)
        else:
            ma += mb
            del self._members[rb]
        fa, fb = self._first.pop(ra, ra), self._first.pop(rb, rb)
        self._first[ra] = fa if self._order_key(fa) < self._order_key(fb) else fb

    def _register(self, m: MessageData, touched: list[int], dirty: list[int]) -> None:
        """Same de-duplication as ``_thread``: the first copy seen stands for the others."""
        if m.message_id in self._index_of:
            return
        stamp = m.sent_at.timestamp()
        second = int(stamp)
        sender = self._senders.get(m.from_addr)
        if sender is None:
            sender = self._senders[m.from_addr] = m.from_addr.lower()
        subject = self._subjects.get(m.subject)
        if subject is None:
            subject = self._subjects[m.subject] = normalize_subject(m.subject)
        addrs = m.to + m.cc if m.cc else m.to
        recipients = self._recipient_sets.get(addrs)
        if recipients is None:
            recipients = self._recipient_sets[addrs] = frozenset([a.lower() for a in addrs])
        fact = (subject, sender, recipients)
        n = len(self._messages)
        found = self._by_copy.get(fact)
        i: int | None = None
        if found is None:
            self._by_copy[fact] = n
        elif isinstance(found, int):
            earlier = int(self._stamps[found])
            if earlier in (second, second - _HALF_DAY, second + _HALF_DAY):
                i = found
            else:
                self._by_copy[fact] = {earlier: found, second: n}
        else:
            i = found.get(second)
            if i is None:
                i = found.get(second - _HALF_DAY)
                if i is None:
                    i = found.get(second + _HALF_DAY)
                    if i is None:
                        found[second] = n
        fresh = i is None
        if i is None:
            i = n
            self._messages.append(m)
            self._stamps.append(stamp)
            self._facts.append(fact)
            self._parent.append(i)
        self._index_of[m.message_id] = i
        waiting = self._unknown_refs.pop(m.message_id, None)  # referred to before it came
        if waiting is not None:
            self._union(i, waiting)
            touched.append(i)
        if not fresh:
            return
        touched.append(i)
        self._link(i)
        self._chain(i, dirty)
        if not m.auto_reply:
            d = _direction(m, self._mgr, self._asst, self._include_cc)
            if d is not Direction.OTHER:
                self._direction[i] = d
                self._unordered.append(i)

    def _link(self, i: int) -> None:
        """Join ``i`` by provider thread id or by the messages it refers to."""
        m = self._messages[i]
        if m.thread_id:
            self._union(i, self._by_thread_id.setdefault(m.thread_id, i))
            return
        refs = (*m.references, m.in_reply_to) if m.in_reply_to else m.references
        for ref in refs:
            j = self._index_of.get(ref)
            self._union(i, j if j is not None else self._unknown_refs.setdefault(ref, i))

    def _pairs(self, i: int) -> Iterator[_Pair]:
        if self._messages[i].thread_id:
            return
        subject, sender, recipients = self._facts[i]
        if not subject:
            return
        for other in recipients:
            if other != sender:
                yield (subject, sender, other) if sender < other else (subject, other, sender)

    def _linked(self, earlier: int, later: int) -> bool:
        """The subject rule of ``_thread`` for two neighbours of one (subject, pair)."""
        if self._stamps[later] - self._stamps[earlier] > self._span:
            return False
        a, b = self._messages[earlier], self._messages[later]
        return not (a.in_reply_to or a.references) or not (b.in_reply_to or b.references)

    def _chain(self, i: int, dirty: list[int]) -> None:
        """Put ``i`` in time order among the messages of its (subject, pair)s."""
        key = self._order_key(i)
        for pair in self._pairs(i):
            chain = self._chains.get(pair)
            if chain is None:
                self._chains[pair] = i
                continue
            if isinstance(chain, int):
                chain = self._chains[pair] = [chain]
            pos = bisect_left(chain, key, key=self._order_key)
            prev = chain[pos - 1] if pos else None
            nxt = chain[pos] if pos < len(chain) else None
            chain.insert(pos, i)
            to_prev = prev is not None and self._linked(prev, i)
            to_next = nxt is not None and self._linked(i, nxt)
            if to_prev:
                assert prev is not None
                self._union(i, prev)
            if to_next:
                assert nxt is not None
                self._union(i, nxt)
            if (
                prev is not None
                and nxt is not None
                and not (to_prev and to_next)
                and self._linked(prev, nxt)
            ):
                dirty.append(prev)  # a link is gone: its thread may fall apart

    def _rebuild(self, root: int) -> list[int]:
        """Find the threads of ``root``'s members again from their links as they are now."""
        members = self._members.pop(root, None) or [root]
        self._first.pop(root, None)
        for i in members:
            self._parent[i] = i
        for i in members:
            m = self._messages[i]
            if m.thread_id:
                self._union(i, self._by_thread_id[m.thread_id])
            else:
                refs = (*m.references, m.in_reply_to) if m.in_reply_to else m.references
                for ref in refs:
                    j = self._index_of.get(ref)
                    self._union(i, j if j is not None else self._unknown_refs[ref])
            key = self._order_key(i)
            for pair in self._pairs(i):
                chain = self._chains[pair]
                if isinstance(chain, int):
                    continue  # ``i`` alone
                pos = bisect_left(chain, key, key=self._order_key)
                if pos and self._linked(chain[pos - 1], i):
                    self._union(i, chain[pos - 1])
        return members

    # ---------------------------------------------------------------- replies

    def _measure(self, root: int) -> list[int]:
        """Find the replies in one thread again; keep its answered records."""
        thread = [i for i in self._members.get(root) or (root,) if i in self._direction]
        thread.sort(key=self._order_key)
        key = self._messages[self._first.get(root, root)].message_id
        msgs, direction, reply = self._messages, self._direction, self._reply
        pending: dict[Direction, list[int]] = {
            Direction.ASSISTANT_TO_MANAGER: [],
            Direction.MANAGER_TO_ASSISTANT: [],
        }
        for i in thread:
            d = direction[i]
            other = (
                Direction.MANAGER_TO_ASSISTANT
                if d is Direction.ASSISTANT_TO_MANAGER
                else Direction.ASSISTANT_TO_MANAGER
            )
            sent = msgs[i].sent_at
            still_open = []
            for j in pending[other]:
                if msgs[j].sent_at < sent:
                    reply[j] = i
                else:  # the same instant: order unknown, so not an answer
                    still_open.append(j)
            pending[other] = still_open
            pending[d].append(i)
            reply[i] = -1
        for i in thread:
            r = reply[i]
            if r < 0:
                self._answered.pop(i, None)
                continue
            known = self._answered.get(i)
            reply_id = msgs[r].message_id
            if known is not None and known.reply_message_id == reply_id and known.thread_key == key:
                continue
            m, answer = msgs[i], msgs[r]
            self._answered[i] = LatencyRecord(
                m.message_id,
                key,
                m.subject,
                m.sent_at,
                direction[i],
                replied_at=answer.sent_at,
                reply_message_id=reply_id,
                wall_minutes=(answer.sent_at - m.sent_at).total_seconds() / 60,
                working_minutes=(
                    self._working(m.sent_at, answer.sent_at) if self._working else None
                ),
            )
        return thread

    def _record(self, i: int, now: datetime) -> LatencyRecord | None:
        """``i``'s record as ``reply_latencies`` gives it at ``now``: messages after ``now``
        are left out, so a reply after ``now`` leaves its message open."""
        m = self._messages[i]
        if m.sent_at > now:
            return None
        r = self._reply[i]
        if r >= 0 and self._messages[r].sent_at <= now:
            return self._answered[i]
        root = self._find(i)
        return LatencyRecord(
            m.message_id,
            self._messages[self._first.get(root, root)].message_id,
            m.subject,
            m.sent_at,
            self._direction[i],
            waiting_minutes=(now - m.sent_at).total_seconds() / 60,
            waiting_working_minutes=(
                self._working(m.sent_at, now)
                if self._working is not None and now > m.sent_at
                else None
            ),
        )
