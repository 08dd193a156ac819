"""The pair's reply latency, kept up to date as mail is stored: one place for every reader.

A pair's latency lives in a ``LatencyIndex`` per process and database. Each reader (the
latency report, the web page, the nudges, the digest) asks ``fed_index`` for it inside its
own session: the index is fed only the rows stored since the last call, so its cost follows
the new mail, not the mailbox. Beside the index this module keeps what the nudges and the
digest ask about, updated from the records ``LatencyIndex.add`` returns for the threads a
batch touched: the assistant's messages still waiting for the manager, ordered by sending
time (so "open since" is a bisection), and which manager's messages each of the
assistant's messages answers.

The index is built again from every message when what its records depend on changes (the
two addresses, time zone, working hours, the years they cover), when the count of rows
fed recently differs from the store's (a row gone; a row committed late under a lower id;
rows fed more than ``SETTLE_SECONDS`` ago are not counted again), or when the clock goes
back. What it keeps is brought back from ``LatencyIndex.records`` when a message dated after
the last call's ``now`` (a reply from a fast clock) becomes due.
"""

from __future__ import annotations

import heapq
import json
import threading
import time
import weakref
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from assistant.domain.latency import Direction, LatencyIndex, LatencyRecord
from assistant.domain.latency.quotes import BODY_KEY, QUOTE_KEYS, TEXT_KEY
from assistant.domain.model import MessageData
from assistant.services.hours import pair_hours
from assistant.services.pairs import find_pair
from assistant.store.db import UnitOfWork
from assistant.store.tables import Message, Pair

if TYPE_CHECKING:
    from assistant.services.deps import Deps

WorkingMinutes = Callable[[datetime, datetime], float]
_A2M, _M2A = Direction.ASSISTANT_TO_MANAGER, Direction.MANAGER_TO_ASSISTANT


def addresses(pair: Pair) -> tuple[set[str], set[str]]:
    """Every address of the manager and of the assistant (aliases included), lower-cased."""
    return (
        {a.lower() for a in (pair.manager_email, *(pair.manager_aliases or ()))},
        {a.lower() for a in (pair.assistant_email, *(pair.assistant_aliases or ()))},
    )


# The keys of ``MessageData.extra`` a stored message keeps (``Message.text_keys``): what
# its text says for copies and quoted replies (``assistant.domain.latency.quotes``).
STORED_KEYS = (BODY_KEY, TEXT_KEY, QUOTE_KEYS, "body_hash")


def stored_keys(extra: dict[str, str]) -> dict[str, str]:
    """The text keys of ``extra`` a stored message keeps."""
    return {k: str(extra[k]) for k in STORED_KEYS if extra.get(k)}


def _extra(keys: Any) -> dict[str, str]:
    """``Message.text_keys`` as ``MessageData.extra`` (only strings: a row is data)."""
    if not isinstance(keys, dict):
        return {}
    return {k: v for k, v in keys.items() if k in STORED_KEYS and isinstance(v, str)}


def _as_stored(text: str) -> str:
    """A string column as the store gives it back (``assistant.store.db``: NUL becomes a
    space; JSON columns keep it, escaped)."""
    return text.replace("\x00", " ") if "\x00" in text else text


def from_row(row: dict[str, Any]) -> MessageData:
    """The message ``to_message`` gives for a row just inserted with these values."""
    keys = row["text_keys"]
    return MessageData(
        _as_stored(row["message_id"]),
        row["sent_at"].astimezone(UTC),
        _as_stored(row["from_addr"]),
        tuple(row["to_addrs"]),
        tuple(row["cc_addrs"]),
        _as_stored(row["subject"]),
        _as_stored(row["in_reply_to"]),
        tuple(row["references"]),
        _as_stored(row["thread_key"]),
        _as_stored(row["folder"]),
        bool(row["auto_reply"]),
        extra=_extra(keys) if keys else _NO_EXTRA,
    )


_NO_EXTRA: dict[str, str] = {}  # one shared empty dict instead of one per message


def to_message(row: Message) -> MessageData:
    return MessageData(
        message_id=row.message_id,
        sent_at=row.sent_at,
        from_addr=row.from_addr,
        to=tuple(row.to_addrs),
        cc=tuple(row.cc_addrs),
        subject=row.subject,
        in_reply_to=row.in_reply_to,
        references=tuple(row.references),
        thread_id=row.thread_key,
        folder=row.folder,
        auto_reply=row.auto_reply,
        extra=_extra(row.text_keys),
    )


@dataclass
class PairIndex:
    """A pair's ``LatencyIndex`` and what the nudges and the digest read from it."""

    depends_on: tuple[Any, ...]  # what the records depend on besides the messages
    index: LatencyIndex
    last_id: int = 0  # the highest Message.id fed
    fed: int = 0  # rows fed, all with an id up to last_id
    # Rows up to ``settled_id`` (``settled_fed`` of them) are no longer counted on each call:
    # see ``SETTLE_SECONDS``. ``checks``: (monotonic time, last_id, fed) after each feed.
    settled_id: int = 0
    settled_fed: int = 0
    checks: deque[tuple[float, int, int]] = field(default_factory=deque)
    as_of: datetime | None = None  # the ``now`` of the last call
    due: list[datetime] = field(default_factory=list)  # heap: rows dated after their call
    # the assistant's messages the manager has not answered, by (sent_at, message_id)
    _open: dict[str, LatencyRecord] = field(default_factory=dict)
    _open_order: list[tuple[float, str]] = field(default_factory=list)
    _reply_of: dict[str, str] = field(default_factory=dict)  # manager's message -> its answer
    # the assistant's message -> the manager's messages it answers, with their sending time
    _answers: dict[str, dict[str, datetime]] = field(default_factory=dict)

    def waiting_for_manager(
        self, since: datetime, now: datetime, working_minutes: WorkingMinutes
    ) -> list[LatencyRecord]:
        """The assistant's messages sent at or after ``since`` and still open at ``now``, as
        ``reply_latencies`` gives them (waiting measured at ``now``), by sent_at."""
        start = bisect_left(self._open_order, (since.timestamp() - 1.0, ""))
        out = []
        for _, mid in self._open_order[start:]:
            r = self._open[mid]
            if r.sent_at < since:
                continue
            out.append(
                replace(
                    r,
                    waiting_minutes=(now - r.sent_at).total_seconds() / 60,
                    waiting_working_minutes=(
                        working_minutes(r.sent_at, now) if now > r.sent_at else None
                    ),
                )
            )
        return out

    def answers_manager(self, message_id: str, since: datetime) -> bool:
        """Whether the assistant's ``message_id`` answers a manager's message sent at or
        after ``since``."""
        return any(sent >= since for sent in self._answers.get(message_id, {}).values())

    def _take(self, records: Iterable[LatencyRecord], measured: Iterable[str] = ()) -> None:
        """Take the records of what was measured again; ``measured`` (every message id
        measured, with a record or not) is forgotten first, so a message that no longer has
        a record (an answer that closes its thread) does not stay open."""
        for mid in measured:
            was_open = self._open.pop(mid, None)
            if was_open is not None:
                key = (was_open.sent_at.timestamp(), mid)
                del self._open_order[bisect_left(self._open_order, key)]
            before = self._reply_of.pop(mid, None)
            if before is not None:
                answered = self._answers[before]
                answered.pop(mid, None)
                if not answered:
                    del self._answers[before]
        for r in records:
            mid = r.message_id
            if r.direction is _A2M:
                if self._open.pop(mid, None) is not None:
                    key = (r.sent_at.timestamp(), mid)
                    del self._open_order[bisect_left(self._open_order, key)]
                if not r.answered:
                    self._open[mid] = r
                    insort(self._open_order, (r.sent_at.timestamp(), mid))
            elif r.direction is _M2A:
                before = self._reply_of.pop(mid, None)
                if before is not None:
                    answered = self._answers[before]
                    del answered[mid]
                    if not answered:
                        del self._answers[before]
                if r.answered:
                    self._reply_of[mid] = r.reply_message_id
                    self._answers.setdefault(r.reply_message_id, {})[mid] = r.sent_at

    def _refresh(self, now: datetime) -> None:
        self._open, self._open_order, self._reply_of, self._answers = {}, [], {}, {}
        self._take(self.index.records(now))


# A row with an id at or below what was fed this long ago is settled: a transaction that
# allocated it and commits later than that (a late row under a lower id) is not expected, and
# the store deletes a pair's messages only with the pair. Each call counts only the rows
# above the settled id, so its cost does not grow with the mailbox.
SETTLE_SECONDS = 600.0
_MAX_PAIRS = 32  # indexes kept per database; the least recently used goes first
_indexes: weakref.WeakKeyDictionary[UnitOfWork, dict[int, PairIndex]] = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()


def cached_index(uow: UnitOfWork, pair_id: int) -> LatencyIndex | None:
    """The pair's index as this process keeps it (None: not built yet)."""
    kept = _indexes.get(uow, {}).get(pair_id)
    return kept.index if kept else None


# Rows this process has just stored for a pair whose index it keeps, by Message.id, as the
# index would read them back (``from_row``): the next feed takes them from here when they
# are exactly the rows stored since it last fed (else it reads the store, as without them).
_PENDING_MAX = 50_000  # rows kept per pair; past it the next feed reads the store
_pending: weakref.WeakKeyDictionary[UnitOfWork, dict[int, dict[int, MessageData]]] = (
    weakref.WeakKeyDictionary()
)
_pending_lock = threading.Lock()


def stored(uow: UnitOfWork, pair_id: int, rows: dict[int, dict[str, Any]]) -> None:
    """The pair's ``rows`` (Message.id -> the values inserted) were just committed."""
    if not rows or pair_id not in _indexes.get(uow, {}):
        return  # no index here to feed: a first build reads every row anyway
    with _pending_lock:
        per_pair = _pending.setdefault(uow, {})
        pending = per_pair.setdefault(pair_id, {})
        if len(pending) + len(rows) > _PENDING_MAX:
            del per_pair[pair_id]
            return
        for row_id, row in rows.items():
            pending[row_id] = from_row(row)


def _take_pending(
    session: Session, uow: UnitOfWork, pair_id: int, last_id: int, building: bool
) -> tuple[list[int], list[MessageData]] | None:
    """The pair's rows with an id after ``last_id`` as ``_stored_after`` gives them, from
    what this process stored, when it stored every one of them; else None (and always
    when ``building``: a first build reads every row). What was kept is dropped either way."""
    with _pending_lock:
        pending = _pending.get(uow, {}).pop(pair_id, None)
    if not pending or building:
        return None
    ids = session.scalars(
        select(Message.id).where(Message.pair_id == pair_id, Message.id > last_id)
    ).all()
    if not ids or any(i not in pending for i in ids):
        return None
    rows = sorted((pending[i].sent_at, i) for i in ids)
    return [i for _, i in rows], [pending[i] for _, i in rows]


@contextmanager
def fed_index(session: Session, uow: UnitOfWork, pair: Pair, now: datetime) -> Iterator[PairIndex]:
    """The pair's index, fed the rows stored since the last call (or built from all), as of
    ``now``; held for this process while the block runs."""
    earliest = session.scalars(
        select(Message.sent_at).where(Message.pair_id == pair.id).order_by(Message.sent_at).limit(1)
    ).first()
    first = earliest.year if earliest is not None else now.year
    managers, assistants = addresses(pair)
    depends_on = (  # a new alias, zone or week builds the index again
        tuple(sorted(managers)),
        tuple(sorted(assistants)),
        pair.timezone,
        json.dumps(pair.working_hours, sort_keys=True, default=str),
        first,
        now.year + 1,
    )
    with _indexes_lock:
        yield _feed(
            session,
            uow,
            pair,
            depends_on,
            now,
            lambda: pair_hours(pair, first, now.year + 1).working_minutes,
        )


_COLUMNS = (
    Message.id, Message.message_id, Message.sent_at, Message.from_addr, Message.to_addrs,
    Message.cc_addrs, Message.subject, Message.in_reply_to, Message.references,
    Message.thread_key, Message.folder, Message.auto_reply, Message.text_keys,
)  # fmt: skip
_PART = 20_000  # rows per round trip when a whole mailbox is read


def _stored_after(
    session: Session, pair_id: int, last_id: int
) -> Iterator[tuple[list[int], list[MessageData]]]:
    """The pair's rows with an id after ``last_id`` as messages, by (sent_at, id), in parts:
    columns, not ORM objects (a first build reads the whole mailbox)."""
    stmt = (
        select(*_COLUMNS)
        .where(Message.pair_id == pair_id, Message.id > last_id)
        .order_by(Message.sent_at, Message.id)
        .execution_options(yield_per=_PART)
    )
    no_extra = _NO_EXTRA
    for part in session.execute(stmt).partitions():
        ids = []
        messages = []
        for row_id, mid, sent, sender, to, cc, subject, irt, refs, tid, folder, auto, keys in part:
            ids.append(row_id)
            messages.append(
                MessageData(mid, sent, sender, tuple(to), tuple(cc), subject, irt, tuple(refs),
                            tid, folder, auto, extra=_extra(keys) if keys else no_extra)
            )  # fmt: skip
        yield ids, messages


def _feed(
    session: Session,
    uow: UnitOfWork,
    pair: Pair,
    depends_on: tuple[Any, ...],
    now: datetime,
    working: Callable[[], WorkingMinutes],
) -> PairIndex:
    per_pair = _indexes.setdefault(uow, {})
    kept = per_pair.pop(pair.id, None)
    clock = time.monotonic()
    if kept is not None:
        while kept.checks and kept.checks[0][0] <= clock - SETTLE_SECONDS:
            _, kept.settled_id, kept.settled_fed = kept.checks.popleft()
    if kept is not None and (
        kept.depends_on != depends_on
        or (kept.as_of is not None and now < kept.as_of)
        or session.scalar(
            select(func.count())
            .select_from(Message)
            .where(
                Message.pair_id == pair.id,
                Message.id > kept.settled_id,
                Message.id <= kept.last_id,
            )
        )
        != kept.fed - kept.settled_fed
    ):
        kept = None
    if kept is None:
        managers, assistants = addresses(pair)
        kept = PairIndex(depends_on, LatencyIndex(managers, assistants, False, working()))
    per_pair[pair.id] = kept
    while len(per_pair) > _MAX_PAIRS:
        del per_pair[next(iter(per_pair))]
    building = kept.fed == 0
    changed: list[LatencyRecord] = []
    measured: list[str] = []
    taken = _take_pending(session, uow, pair.id, kept.last_id, building)
    parts = [taken] if taken is not None else _stored_after(session, pair.id, kept.last_id)
    for ids, messages in parts:
        added = kept.index.add(messages, now)
        if not building:  # a first build takes every record once, below
            changed += added
            measured += kept.index.last_measured
        kept.last_id = max(kept.last_id, *ids)
        kept.fed += len(ids)
        for m in messages:
            if m.sent_at > now:
                heapq.heappush(kept.due, m.sent_at)
    if not kept.checks or kept.checks[-1][1] != kept.last_id:
        kept.checks.append((clock, kept.last_id, kept.fed))
    stale = building
    while kept.due and kept.due[0] <= now:  # dated ahead of an earlier call, due now
        heapq.heappop(kept.due)
        stale = True
    if stale:
        kept._refresh(now)
    else:
        kept._take(changed, measured)
    kept.as_of = now
    return kept


@dataclass(frozen=True)
class PairLatency:
    records: list[LatencyRecord]  # as ``reply_latencies`` gives them, in working time
    sla_minutes: float
    zone: str


def pair_latency(deps: Deps, pair_ref: str | int | None) -> PairLatency:
    """Every latency record of the pair at ``deps.now()``, from its index brought up to date."""
    now = deps.now()
    with deps.uow.read() as session:
        pair = find_pair(session, pair_ref)
        with fed_index(session, deps.uow, pair, now) as kept:
            records = kept.index.records(now)
        return PairLatency(records, pair.sla_minutes, pair.timezone)
