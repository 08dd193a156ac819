"""``LatencyIndex``: threads and reply latency kept up to date as mail arrives.

It keeps the state of ``threads`` and ``measure`` between batches of new mail, so that an
update costs in proportion to the new messages and the threads they touch, and gives what
``reply_latencies`` gives on it all.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from assistant.domain.latency.measure import LatencyRecord
from assistant.domain.latency.quotes import QUOTE_KEYS, TEXT_KEY
from assistant.domain.latency.summary import LatencySummary, summarize
from assistant.domain.latency.threads import (
    DEFAULT_WINDOW,
    Direction,
    _direction,
    _Distinct,
    _gc_paused,
    _lower,
    people,
)
from assistant.domain.model import MessageData

_Pair = tuple[str, str, str]  # (normalized subject, one address, the other), sorted
_A2M, _M2A = Direction.ASSISTANT_TO_MANAGER, Direction.MANAGER_TO_ASSISTANT


@dataclass(frozen=True, slots=True)
class _Tail:
    """What measuring a thread left at its end, to go on from there when later mail comes:
    the messages still waiting for an answer each way, the last message measured (its
    order key) and the thread's first member (its key is the records' thread key)."""

    to_manager: tuple[int, ...]  # ASSISTANT_TO_MANAGER messages not answered
    to_assistant: tuple[int, ...]  # MANAGER_TO_ASSISTANT messages not answered
    last: tuple[float, str] | None  # None: no message with a direction yet
    first: int


_QUIET: Final = _Tail((), (), None, -1)  # a thread with no message to measure


class LatencyIndex:
    """Threads and reply latency kept up to date as mail arrives.

    ``add(batch, now)`` after ``add(earlier, now)`` leaves the same records as
    ``reply_latencies(earlier + batch, ...)``, for any split into batches and any order of
    arrival (late ones included). A batch costs in proportion to its own messages and the
    threads they join: copies are found by dictionary (``_Distinct``, as ``reply_latencies``
    finds them; a copy's new recipients join the message's), thread ids, references and
    quotes join through a union-find, and each (subject, two people) keeps its messages in
    time order, so a late message is put in its place and linked to its neighbours only.
    Subject links are not monotone: neighbours within the window are linked when one of them
    has no headers, so a late message with headers landing between two linked ones may cut
    that link; then only that thread is rebuilt. Per thread the replies are found again from
    its own messages and the answered records are kept; open ones are measured at ``now``
    when asked for. ``managers`` and ``assistants`` hold every alias of each.
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
        self.last_measured: tuple[str, ...] = ()  # the message ids the last add() measured
        self._span = window.total_seconds()
        self._d = _Distinct(people(managers, assistants))
        self._messages = self._d.messages  # one per distinct message
        self._stamps = self._d.stamps
        self._index_of = self._d.index_of
        self._by_text: dict[str, list[int]] = {}  # text key -> messages with it
        self._quoting: dict[str, list[int]] = {}  # quote key -> messages quoting it
        self._parent: list[int] = []
        self._members: dict[int, list[int]] = {}  # root -> members, threads of two or more
        self._first: dict[int, int] = {}  # root -> earliest member, threads of two or more
        self._by_thread_id: dict[str, int] = {}
        self._unknown_refs: dict[str, int] = {}
        self._chains: dict[_Pair, int | list[int]] = {}  # one, or by (sent_at, message_id)
        self._direction: dict[int, Direction] = {}
        self._reply: dict[int, int] = {}  # measured message -> its reply, -1 while open
        self._closing: set[int] = set()  # measured replies that answered something
        self._answered: dict[int, LatencyRecord] = {}
        self._order: list[int] = []  # measured messages by (sent_at, message_id)
        self._unordered: list[int] = []
        # root -> its thread's end as last measured, or None: threads that merged or were
        # rebuilt since, measured again in full. A root without one has no message measured
        # before (``_QUIET``): its messages with a direction are all new.
        self._tails: dict[int, _Tail | None] = {}
        self._new_directed: list[int] = []  # messages given a direction in this add()

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
            self._new_directed = []
            for m in messages:
                self._register(m, touched, dirty)
            for root in {self._find(x) for x in dirty}:
                touched.extend(self._rebuild(root))
            new_by_root: dict[int, list[int]] = {}
            for i in self._new_directed:
                new_by_root.setdefault(self._find(i), []).append(i)
            self._new_directed = []
            measured: list[int] = []
            for root in {self._find(x) for x in touched}:
                tail = self._tails.get(root, _QUIET)
                went_on = None
                if tail is not None:
                    went_on = self._go_on(root, tail, new_by_root.get(root, []))
                measured.extend(self._measure(root) if went_on is None else went_on)
            measured.sort(key=self._order_key)
            # every message measured again, with a record or not (a reply that now closes
            # its thread has none): a reader keeping state per message forgets these first
            self.last_measured = tuple(self._messages[i].message_id for i in measured)
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
        tails = self._tails
        ta, tb = tails.pop(ra, _QUIET), tails.pop(rb, _QUIET)
        if ta is None or tb is None or (ta is not _QUIET and tb is not _QUIET):
            tails[ra] = None  # two threads measured before are one now: measure it in full
        elif ta is not _QUIET or tb is not _QUIET:
            tails[ra] = tb if ta is _QUIET else ta
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
        """Copies as ``reply_latencies`` finds them: the first copy seen stands for the
        others, which add their recipients."""
        i, fresh, added, grew = self._d.add(m)
        if i < 0:
            return
        if fresh:
            self._parent.append(i)
        waiting = self._unknown_refs.pop(m.message_id, None)  # referred to before it came
        if waiting is not None:
            self._union(i, waiting)
            touched.append(i)
        if fresh:
            touched.append(i)
            self._link(i)
            self._quote(i)
            self._chain(i, dirty, self._pairs(i))
        elif added:
            touched.append(i)
            self._chain(i, dirty, self._pairs(i, added))
        if (fresh or grew) and i not in self._direction:
            first = self._messages[i]
            if first.auto_reply:
                return
            d = self._d
            direction = _direction(
                d.senders[i], d.to[i], d.everyone[i], self._mgr, self._asst, self._include_cc
            )
            if direction is not Direction.OTHER:
                self._direction[i] = direction
                self._new_directed.append(i)
                self._unordered.append(i)
                touched.append(i)

    def _quote(self, i: int) -> None:
        """Join ``i`` with the messages it quotes and those that quote it."""
        m = self._messages[i]
        for j in self._d.quote_links(i, self._by_text):
            self._union(i, j)
        if not m.in_reply_to and not m.references:
            for quoted in m.extra.get(QUOTE_KEYS, "").split():
                self._quoting.setdefault(quoted, []).append(i)
        text = m.extra.get(TEXT_KEY)
        if text:
            self._by_text.setdefault(text, []).append(i)
            for j in self._quoting.get(text, ()):
                if j != i:
                    self._union(i, j)

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

    def _pairs(self, i: int, addresses: Iterable[str] | None = None) -> list[_Pair]:
        """``i``'s (subject, two people)s: with all its recipients, or those of ``addresses``."""
        d = self._d
        subject = d.subjects[i]
        if not subject or self._messages[i].thread_id:
            return []
        sender = d.senders[i]
        me = d.canon.get(sender, sender)
        return [
            (subject, me, other) if me < other else (subject, other, me)
            for other in d.people(i, addresses)
        ]

    def _linked(self, earlier: int, later: int) -> bool:
        """The subject rule of ``_thread`` for two neighbours of one (subject, pair)."""
        if self._stamps[later] - self._stamps[earlier] > self._span:
            return False
        a, b = self._messages[earlier], self._messages[later]
        return not (a.in_reply_to or a.references) or not (b.in_reply_to or b.references)

    def _chain(self, i: int, dirty: list[int], pairs: list[_Pair]) -> None:
        """Put ``i`` in time order among the messages of its (subject, pair)s."""
        key = self._order_key(i)
        for pair in pairs:
            chain = self._chains.get(pair)
            if chain is None:
                self._chains[pair] = i
                continue
            if chain == i:
                continue  # a copy named the same person by another alias
            if isinstance(chain, int):
                chain = self._chains[pair] = [chain]
            pos = bisect_left(chain, key, key=self._order_key)
            if pos < len(chain) and chain[pos] == i:
                continue
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
        self._tails.pop(root, None)
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
            for j in self._d.quote_links(i, self._by_text):
                self._union(i, j)
            key = self._order_key(i)
            for pair in self._pairs(i):
                chain = self._chains[pair]
                if isinstance(chain, int):
                    continue  # ``i`` alone
                pos = bisect_left(chain, key, key=self._order_key)
                if pos and self._linked(chain[pos - 1], i):
                    self._union(i, chain[pos - 1])
        for i in members:
            self._tails[self._find(i)] = None  # measured again in full
        return members

    # ---------------------------------------------------------------- replies

    def _measure(self, root: int) -> list[int]:
        """Find the replies in one thread again; keep its answered records."""
        thread = [i for i in self._members.get(root) or (root,) if i in self._direction]
        thread.sort(key=self._order_key)
        self._closing.difference_update(thread)
        first = self._first.get(root, root)
        pending: dict[Direction, list[int]] = {_A2M: [], _M2A: []}
        self._replies(thread, pending)
        for i in thread:
            self._keep_answer(i, first)
        if thread:
            self._tails[root] = _Tail(
                tuple(pending[_A2M]), tuple(pending[_M2A]), self._order_key(thread[-1]), first
            )
        else:
            self._tails.pop(root, None)
        return thread

    def _go_on(self, root: int, tail: _Tail, new: list[int]) -> list[int] | None:
        """Measure a thread from where ``tail`` left it, when it only gained messages
        later than every message measured in it and kept its first member; return what
        was measured (its new messages and those they answer), None if it cannot go on."""
        first = self._first.get(root, root)
        new.sort(key=self._order_key)
        if tail.last is not None and (
            first != tail.first or (new and self._order_key(new[0]) <= tail.last)
        ):
            return None
        if not new:
            return []
        pending: dict[Direction, list[int]] = {
            _A2M: list(tail.to_manager),
            _M2A: list(tail.to_assistant),
        }
        waiting = {*tail.to_manager, *tail.to_assistant}
        answered = self._replies(new, pending)
        measured = [j for j in answered if j in waiting]
        for i in measured:
            self._keep_answer(i, first)
        for i in new:
            self._keep_answer(i, first)
        self._tails[root] = _Tail(
            tuple(pending[_A2M]), tuple(pending[_M2A]), self._order_key(new[-1]), first
        )
        return measured + new

    def _replies(self, thread: list[int], pending: dict[Direction, list[int]]) -> list[int]:
        """Go through ``thread`` (in order, after what left ``pending``): each message
        answers the other way's messages sent before it. Return those it answered."""
        msgs, direction, reply, closing = (
            self._messages,
            self._direction,
            self._reply,
            self._closing,
        )
        answered: list[int] = []
        for i in thread:
            d = direction[i]
            other = _M2A if d is _A2M else _A2M
            sent = msgs[i].sent_at
            still_open = []
            for j in pending[other]:
                if msgs[j].sent_at < sent:
                    reply[j] = i
                    closing.add(i)
                    answered.append(j)
                else:  # the same instant: order unknown, so not an answer
                    still_open.append(j)
            pending[other] = still_open
            pending[d].append(i)
            reply[i] = -1
        return answered

    def _keep_answer(self, i: int, key_index: int) -> None:
        """Keep ``i``'s answered record (thread key: ``key_index``'s), or drop it if open."""
        r = self._reply[i]
        if r < 0:
            self._answered.pop(i, None)
            return
        msgs = self._messages
        key = msgs[key_index].message_id
        known = self._answered.get(i)
        reply_id = msgs[r].message_id
        if known is not None and known.reply_message_id == reply_id and known.thread_key == key:
            return
        m, answer = msgs[i], msgs[r]
        self._answered[i] = LatencyRecord(
            m.message_id,
            key,
            m.subject,
            m.sent_at,
            self._direction[i],
            replied_at=answer.sent_at,
            reply_message_id=reply_id,
            wall_minutes=(answer.sent_at - m.sent_at).total_seconds() / 60,
            working_minutes=(self._working(m.sent_at, answer.sent_at) if self._working else None),
        )

    def _record(self, i: int, now: datetime) -> LatencyRecord | None:
        """``i``'s record as ``reply_latencies`` gives it at ``now``: messages after ``now``
        are left out, so a reply after ``now`` leaves its message open; a reply that
        answered something and is open has none."""
        m = self._messages[i]
        if m.sent_at > now:
            return None
        r = self._reply[i]
        if r >= 0 and self._messages[r].sent_at <= now:
            return self._answered[i]
        if i in self._closing:
            return None
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
