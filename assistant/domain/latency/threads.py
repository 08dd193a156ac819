"""Threads of messages and who writes to whom (pure, no I/O).

Threads come from the provider's thread id when there is one, else from In-Reply-To /
References, else (archives such as Enron carry neither) from quoting and from the subject.
A bare reply (no reply headers) that quotes a message's text joins it, whatever its
subject or provider thread (``quotes``). A message joins the previous one with the same
normalized subject between the same two people when it is at most ``window`` later; a
blank subject (or "(no subject)") never joins anything. People, not addresses: the aliases
of one person (``people``) count as that person. Copies of one message count once
(``_Distinct``): the same Message-ID, or the same sender, second, subject and body,
whatever the recipients (one mail filed in several folders with its own Message-ID each
time, a Bcc copy). A copy exactly 12 h off also counts as the same message (some Enron
copies lost AM/PM in a conversion). Everything is O(n log n): one sort, dicts and a
union-find.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from itertools import compress, count, islice
from operator import eq
from typing import TypeVar

from assistant.domain.latency.quotes import BODY_KEY, QUOTE_KEYS, TEXT_KEY
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


def people(*groups: Iterable[str]) -> dict[str, str]:
    """Each address of each group (one person's aliases) -> the person: the group's
    smallest lower-cased address. Threading compares people, not literal addresses."""
    canon: dict[str, str] = {}
    for group in groups:
        lowered = _lower(group)
        if lowered:
            person = min(lowered)
            canon.update(dict.fromkeys(lowered, person))
    return canon


_BLANK_SUBJECTS = frozenset(
    ["(no subject)", "no subject", "(без темы)", "без темы", "(kein betreff)", "(sans objet)"]
)


def subject_key(subject: str) -> str:
    """``normalize_subject``, and "" for a subject that says nothing (blank, only
    prefixes, "(no subject)"): such subjects never join messages into a thread."""
    key = normalize_subject(subject)
    return "" if key in _BLANK_SUBJECTS else key


def _direction(
    sender: str,
    to: frozenset[str],
    everyone: frozenset[str],
    managers: frozenset[str],
    assistants: frozenset[str],
    include_cc: bool,
) -> Direction:
    """Who writes to whom: ``sender`` (lower-cased) and the lower-cased To (``to``) or
    To and Cc (``everyone``) recipients against the two people's aliases."""
    if sender in assistants:
        wanted = managers
        found = Direction.ASSISTANT_TO_MANAGER
    elif sender in managers:
        wanted = assistants
        found = Direction.MANAGER_TO_ASSISTANT
    else:
        return Direction.OTHER
    if (everyone if include_cc else to).isdisjoint(wanted):
        return Direction.OTHER
    return found


def classify(
    message: MessageData, managers: set[str], assistants: set[str], include_cc: bool = False
) -> Direction:
    """Who writes to whom: sender and a To (or Cc) recipient, compared case-insensitively;
    ``managers`` and ``assistants`` hold every alias of each."""
    to = _lower(message.to)
    return _direction(
        message.from_addr.lower(), to, to | _lower(message.cc),
        _lower(managers), _lower(assistants), include_cc,
    )  # fmt: skip


def classifier(
    managers: set[str], assistants: set[str], include_cc: bool = False
) -> Callable[[MessageData], Direction]:
    """``classify`` for many messages of one pair: the aliases are lower-cased once."""
    mgr, asst = _lower(managers), _lower(assistants)

    def direction(message: MessageData) -> Direction:
        to = _lower(message.to)
        everyone = to | _lower(message.cc) if include_cc and message.cc else to
        return _direction(message.from_addr.lower(), to, everyone, mgr, asst, include_cc)

    return direction


# ------------------------------------------------------------------------- copies


_K = TypeVar("_K", bound=tuple[str, str, object])


class _Distinct:
    """Messages with copies counted once, as they come: the first copy seen stands for the
    others. A copy is a message with a Message-ID already seen, or one from the same
    person in the same second (or exactly 12 h off: Enron copies that lost AM/PM in a
    conversion) with the same subject and body (``quotes.BODY_KEY``, when the source read
    the body). The recipients are not part of the key: a Bcc copy or a copy with one more
    recipient is the same message, and its recipients join the first copy's. A copy exactly
    12 h off may have another body (that conversion rewrote forwarded header blocks): with
    the same subject (not blank) and the same recipients it is the same message too."""

    def __init__(self, canon: dict[str, str]) -> None:
        self.canon = canon
        self.messages: list[MessageData] = []
        self.stamps: list[float] = []  # POSIX seconds
        self.subjects: list[str] = []  # ``subject_key``
        self.senders: list[str] = []  # lower-cased address
        self.to: list[frozenset[str]] = []  # lower-cased, of every copy
        self.everyone: list[frozenset[str]] = []  # To and Cc, lower-cased, of every copy
        self.index_of: dict[str, int] = {}  # every message_id -> its distinct message
        # (sender's person, subject, body) -> the first message, or {second: index} once a
        # second one shares it
        self._by_copy: dict[tuple[str, str, str], int | dict[int, int]] = {}
        # (person, subject, To and Cc) -> the same, for copies exactly 12 h off: the
        # conversion that lost AM/PM also rewrote their bodies (a forwarded header block)
        self._by_half_day: dict[tuple[str, str, frozenset[str]], int | dict[int, int]] = {}
        self._subject_keys: dict[str, str] = {}
        self._lowered: dict[tuple[str, ...], frozenset[str]] = {}

    def _find(
        self, table: dict[_K, int | dict[int, int]], key: _K, seconds: tuple[int, ...]
    ) -> int | None:
        """The message filed under ``key`` at one of ``seconds`` (in that order)."""
        found = table.get(key)
        if found is None:
            return None
        if isinstance(found, int):
            return found if int(self.stamps[found]) in seconds else None
        for second in seconds:
            i = found.get(second)
            if i is not None:
                return i
        return None

    def _put(self, table: dict[_K, int | dict[int, int]], key: _K, second: int, i: int) -> None:
        """File ``i`` under ``key`` at ``second``; the first one filed there stays."""
        found = table.get(key)
        if found is None:
            table[key] = i
        elif isinstance(found, int):
            earlier = int(self.stamps[found])
            if earlier != second:
                table[key] = {earlier: found, second: i}
        else:
            found.setdefault(second, i)

    def lowered(self, addresses: tuple[str, ...]) -> frozenset[str]:
        found = self._lowered.get(addresses)
        if found is None:
            found = self._lowered[addresses] = frozenset([a.lower() for a in addresses])
        return found

    def add(self, m: MessageData) -> tuple[int, bool, frozenset[str], bool]:
        """``m``'s distinct index, whether it is new, and (for a copy) the To and Cc
        addresses it adds and whether its To or Cc grew; (-1, False, ∅, False) for a
        Message-ID already seen."""
        if m.message_id in self.index_of:
            return -1, False, frozenset(), False
        stamp = m.sent_at.timestamp()
        second = int(stamp)
        sender = m.from_addr.lower()
        subject = self._subject_keys.get(m.subject)
        if subject is None:
            subject = self._subject_keys[m.subject] = subject_key(m.subject)
        to = self.lowered(m.to)
        everyone = self.lowered(m.to + m.cc) if m.cc else to
        person = self.canon.get(sender, sender)
        key = (person, subject, m.extra.get(BODY_KEY, ""))
        i = self._find(self._by_copy, key, (second, second - _HALF_DAY, second + _HALF_DAY))
        half_day = (person, subject, everyone)
        if i is None and subject:
            i = self._find(self._by_half_day, half_day, (second - _HALF_DAY, second + _HALF_DAY))
        n = len(self.messages)
        if i is None:
            self.messages.append(m)
            self.stamps.append(stamp)
            self.subjects.append(subject)
            self.senders.append(sender)
            self.to.append(to)
            self.everyone.append(everyone)
            self.index_of[m.message_id] = n
            self._put(self._by_copy, key, second, n)
            if subject:
                self._put(self._by_half_day, half_day, second, n)
            return n, True, frozenset(), False
        self.index_of[m.message_id] = i
        added = everyone - self.everyone[i]
        grew = bool(added)
        if added:
            self.everyone[i] = self.everyone[i] | added
        if not to <= self.to[i]:
            self.to[i] = self.to[i] | to
            grew = True
        return i, False, added, grew

    def people(self, i: int, addresses: Iterable[str] | None = None) -> Iterator[str]:
        """The people ``i`` was sent to (or those of ``addresses``), its sender left out."""
        canon = self.canon
        sender = self.senders[i]
        me = canon.get(sender, sender)
        seen: set[str] = set()
        for a in self.everyone[i] if addresses is None else addresses:
            person = canon.get(a, a)
            if person != me and person not in seen:
                seen.add(person)
                yield person

    def quote_links(self, i: int, by_text: dict[str, list[int]]) -> Iterator[int]:
        """The messages ``i`` quotes (``i`` bare of reply headers), by text key.

        A provider's thread id does not stop it: a reply whose client dropped the subject
        and the reply headers lands in a conversation of its own at Gmail, Microsoft 365
        and Exchange, and only the text it quotes still says what it answers."""
        m = self.messages[i]
        if m.in_reply_to or m.references:
            return
        for key in m.extra.get(QUOTE_KEYS, "").split():
            for j in by_text.get(key, ()):
                if j != i:
                    yield j


# ------------------------------------------------------------------------- threading


@dataclass(slots=True)
class _Threads:
    distinct: _Distinct
    order: list[int]  # indices into messages, by (sent_at, message_id)
    root: list[int]  # the thread (its union-find root) per index


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


def _thread(
    messages: Iterable[MessageData], window: timedelta, canon: dict[str, str] | None = None
) -> _Threads:
    with _gc_paused():
        return _thread_unpaused(messages, window, canon or {})


def _text_index(distinct: _Distinct, i: int, by_text: dict[str, list[int]]) -> None:
    key = distinct.messages[i].extra.get(TEXT_KEY)
    if key:
        by_text.setdefault(key, []).append(i)


def _thread_unpaused(
    messages: Iterable[MessageData], window: timedelta, canon: dict[str, str]
) -> _Threads:
    d = _Distinct(canon)
    for m in messages:
        d.add(m)
    distinct, stamps, index_of = d.messages, d.stamps, d.index_of

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
    by_text: dict[str, list[int]] = {}
    for i, m in enumerate(distinct):
        _text_index(d, i, by_text)
        if m.thread_id:
            a, b = i, by_thread_id.setdefault(m.thread_id, i)
            if a != b:
                union(a, b)
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
    for i in range(len(distinct)):  # quoted replies
        for j in d.quote_links(i, by_text):
            union(i, j)
    del by_text

    order = _chronological(distinct, stamps)
    span = window.total_seconds()
    # (subject, one person, the other) -> the latest message so far between them
    last: dict[tuple[str, str, str], int] = {}
    for i in order:
        subject = d.subjects[i]
        if not subject:
            continue
        m = distinct[i]
        if m.thread_id:
            continue
        bare = not m.in_reply_to and not m.references
        stamp = stamps[i]
        sender = d.senders[i]
        me = canon.get(sender, sender)
        for other in d.people(i):
            pair = (subject, me, other) if me < other else (subject, other, me)
            j = last.get(pair)
            last[pair] = i
            if j is None or stamp - stamps[j] > span:
                continue
            if bare or (not distinct[j].in_reply_to and not distinct[j].references):
                union(i, j)
    del last

    # Every union points the larger root at the smaller, so parent[i] <= i: one pass in
    # index order leaves each message pointing at its root.
    for i, p in enumerate(parent):
        if p != i:
            parent[i] = parent[p]
    return _Threads(d, order, parent)


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
    messages: Iterable[MessageData],
    window: timedelta = DEFAULT_WINDOW,
    aliases: Iterable[Iterable[str]] = (),
) -> dict[str, str]:
    """Map every message_id (copies included) to its thread key: the Message-ID of the
    thread's earliest message. ``aliases``: groups of addresses that are one person each
    (e.g. the manager's, the assistant's)."""
    threads = _thread(messages, window, people(*aliases))
    msgs, root = threads.distinct.messages, threads.root
    first: dict[int, int] = {}
    for i in threads.order:  # a thread is named by its earliest message
        first.setdefault(root[i], i)
    return {mid: msgs[first[root[i]]].message_id for mid, i in threads.distinct.index_of.items()}
