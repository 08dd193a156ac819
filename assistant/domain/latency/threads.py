"""Threads of messages and who writes to whom (pure, no I/O).

Threads come from the provider's thread id when there is one, else from In-Reply-To /
References, else (archives such as Enron carry neither) from the normalized subject and
the two people exchanging it: a message joins the previous one with the same normalized
subject between the same two people when it is at most ``window`` later. Copies of one
message count once: the same Message-ID, or the same sender, second, normalized subject
and recipients (one mail filed in several folders, each copy with its own Message-ID). The
body is not compared: Enron copies of one mail differ in line wrapping. A copy exactly 12 h
off also counts as the same message (some Enron copies lost AM/PM in a conversion).
Everything is O(n log n): one sort, dicts and a union-find.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from itertools import compress, count, islice
from operator import eq

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
