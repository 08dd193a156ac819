"""Reply latency: a record per message that waits for an answer (pure, no I/O).

An assistant→manager message is answered by the first strictly later manager→assistant
message in the same thread; that reply answers every message still open before it. The
other direction is measured the same way. A reply that answers something is not itself
waiting for an answer: it has a record only once the other side answers it in turn (the
manager's "Re: Board pack" closes the thread; it does not open one). Auto-replies neither
open nor answer anything. ``managers`` and ``assistants`` are every alias of each: one
person whatever the address, for threading as for direction.
Answered records carry wall minutes (and working minutes when a working-time function is
given); open ones carry how long they have waited at ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from assistant.domain.latency.threads import (
    DEFAULT_WINDOW,
    Direction,
    _gc_paused,
    _lower,
    _thread_unpaused,
    _Threads,
    people,
)
from assistant.domain.model import MessageData


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
    ignored; so is a reply that answered something and has no answer itself.
    ``working_minutes(start, end)``, when given, fills the working time of answered
    records.
    """
    with _gc_paused():
        threads = _thread_unpaused(messages, window, people(managers, assistants))
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
    dist = threads.distinct
    msgs, senders, root, stamps = dist.messages, dist.senders, threads.root, dist.stamps
    recipient_sets = dist.everyone if include_cc else dist.to
    # Float seconds keep the order of distinct microseconds; within a second of ``now`` the
    # dates decide (and a naive ``now`` fails as comparing dates does).
    aware = now.tzinfo is not None and now.utcoffset() is not None
    after, near = (now.timestamp() + 1, now.timestamp() - 1) if aware else (math.inf, -math.inf)
    measured: list[int] = []  # by (sent_at, message_id)
    direction: dict[int, Direction] = {}
    reply_of: dict[int, int] = {}
    closing: set[int] = set()  # replies that answered something
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
        if recipient_sets[i].isdisjoint(wanted):
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
                    closing.add(i)
                else:  # the same instant: order unknown, so not an answer
                    still_open.append(j)
            theirs[:] = still_open
        mine.append(i)
    del open_by_thread

    records: list[LatencyRecord] = []
    append = records.append
    for i in measured:
        m = msgs[i]
        key = msgs[first[root[i]]].message_id
        r = reply_of.get(i)
        if r is None:
            if i in closing:
                continue  # an answer, not a question
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
