"""Change detection: old snapshot + new snapshot + now → what the assistant must know.

Pure: no I/O, no clock. The caller passes the two snapshots (occurrences keyed by
``(uid, recurrence_id)``) and ``now``. Noise is not a change: etag churn, re-encoding,
our own checkpoint events, categories, and (unless asked for) description edits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from assistant.domain.model import EventData, EventStatus

Key = tuple[str, str]


class ChangeKind(StrEnum):
    CREATED = "created"
    CANCELLED = "cancelled"
    DELETED = "deleted"
    MOVED = "moved"
    RELOCATED = "relocated"
    LINK_CHANGED = "link_changed"
    RETITLED = "retitled"
    RESPONSE_CHANGED = "response_changed"
    ATTENDEES_CHANGED = "attendees_changed"
    BUSY_CHANGED = "busy_changed"
    DESCRIPTION_CHANGED = "description_changed"


# The order in which kinds name a change when it has several aspects.
_PRECEDENCE = list(ChangeKind)


@dataclass(frozen=True, slots=True)
class Change:
    """One event occurrence that changed, with every aspect that changed."""

    kinds: frozenset[ChangeKind]
    before: EventData | None
    after: EventData | None

    @property
    def kind(self) -> ChangeKind:
        """The main kind (created / cancelled / deleted / moved come first)."""
        return min(self.kinds, key=_PRECEDENCE.index)

    @property
    def event(self) -> EventData:
        event = self.after or self.before
        assert event is not None
        return event

    @property
    def starts_at(self) -> datetime:
        return self.event.start


@dataclass(frozen=True, slots=True)
class DetectionRules:
    horizon: timedelta = timedelta(days=14)
    manager_emails: frozenset[str] = frozenset()
    include_description: bool = False


def detect_changes(
    old: Mapping[Key, EventData],
    new: Mapping[Key, EventData],
    now: datetime,
    rules: DetectionRules = DetectionRules(),
    known_until: datetime | None = None,
) -> list[Change]:
    """The changes between two snapshots of the same calendar that matter at ``now``.

    Only occurrences overlapping ``[now, now + horizon)`` before or after count; past
    events never do. ``known_until`` is the end of the window the old snapshot was
    expanded over: occurrences starting at or after it are new to us only because the
    window moved on, so they are not reported as created.
    Returns changes sorted by the time of the event.
    """
    until = now + rules.horizon

    def relevant(e: EventData | None) -> bool:
        return e is not None and not e.is_ours and e.end > now and e.start < until

    added = [k for k in new.keys() - old.keys() if not new[k].is_ours]
    removed = [k for k in old.keys() - new.keys() if not old[k].is_ours]
    changes: list[Change] = []

    # A series whose start time moved gives its occurrences new recurrence ids: pair
    # the vanished and the new occurrences of the same series as moves.
    for before, after in _pair_moved_series(old, new, added, removed):
        if relevant(before) or relevant(after):
            changes.append(Change(frozenset({ChangeKind.MOVED}), before, after))
        added.remove(after.key)
        removed.remove(before.key)

    for k in added:
        after = new[k]
        if after.status is EventStatus.CANCELLED or not relevant(after):
            continue
        if known_until is not None and after.start >= known_until:
            continue
        changes.append(Change(frozenset({ChangeKind.CREATED}), None, after))
    for k in removed:
        before = old[k]
        if before.status is EventStatus.CANCELLED or not relevant(before):
            continue
        changes.append(Change(frozenset({ChangeKind.DELETED}), before, None))
    for k in old.keys() & new.keys():
        before, after = old[k], new[k]
        if before.is_ours or after.is_ours or not (relevant(before) or relevant(after)):
            continue
        kinds = compare(before, after, rules)
        if kinds:
            changes.append(Change(kinds, before, after))
    changes.sort(key=lambda c: (c.starts_at, c.event.uid, c.event.recurrence_id))
    return changes


def compare(before: EventData, after: EventData, rules: DetectionRules) -> frozenset[ChangeKind]:
    """The aspects in which one occurrence changed (empty: nothing that matters)."""
    if before.fingerprint() == after.fingerprint():
        return frozenset()
    was_cancelled = before.status is EventStatus.CANCELLED
    is_cancelled = after.status is EventStatus.CANCELLED
    if is_cancelled and not was_cancelled:
        return frozenset({ChangeKind.CANCELLED})
    if was_cancelled and is_cancelled:
        return frozenset()
    if was_cancelled:
        return frozenset({ChangeKind.CREATED})
    kinds: set[ChangeKind] = set()
    if (before.start, before.end, before.all_day, before.start_date, before.end_date) != (
        after.start,
        after.end,
        after.all_day,
        after.start_date,
        after.end_date,
    ):
        kinds.add(ChangeKind.MOVED)
    if _norm(before.location) != _norm(after.location):
        kinds.add(ChangeKind.RELOCATED)
    if before.online_meeting_url.strip() != after.online_meeting_url.strip():
        kinds.add(ChangeKind.LINK_CHANGED)
    if _norm(before.summary) != _norm(after.summary):
        kinds.add(ChangeKind.RETITLED)
    if rules.manager_emails and _response(before, rules) != _response(after, rules):
        kinds.add(ChangeKind.RESPONSE_CHANGED)
    if {a.email for a in before.attendees} != {a.email for a in after.attendees}:
        kinds.add(ChangeKind.ATTENDEES_CHANGED)
    if before.busy != after.busy:
        kinds.add(ChangeKind.BUSY_CHANGED)
    if rules.include_description and before.description.strip() != after.description.strip():
        kinds.add(ChangeKind.DESCRIPTION_CHANGED)
    return frozenset(kinds)


def _norm(text: str) -> str:
    return " ".join(text.split())


def _response(event: EventData, rules: DetectionRules) -> str:
    for a in event.attendees:
        if a.email in rules.manager_emails:
            return a.response.value
    return ""


def _pair_moved_series(
    old: Mapping[Key, EventData],
    new: Mapping[Key, EventData],
    added: Iterable[Key],
    removed: Iterable[Key],
) -> list[tuple[EventData, EventData]]:
    by_uid_added: dict[str, list[EventData]] = defaultdict(list)
    by_uid_removed: dict[str, list[EventData]] = defaultdict(list)
    for k in added:
        by_uid_added[k[0]].append(new[k])
    for k in removed:
        by_uid_removed[k[0]].append(old[k])
    pairs: list[tuple[EventData, EventData]] = []
    for uid, gone in by_uid_removed.items():
        came = by_uid_added.get(uid)
        if not came or len(came) != len(gone):
            continue
        gone.sort(key=lambda e: e.start)
        came.sort(key=lambda e: e.start)
        pairs.extend(zip(gone, came, strict=True))
    return pairs


def net_changes(
    changes: Iterable[Change], rules: DetectionRules = DetectionRules()
) -> list[Change]:
    """Changes detected one after another (oldest first) merged into their net effect.

    Several syncs within the coalescing window may see the same occurrence change more
    than once: the assistant gets one change from the first "before" to the last
    "after". A change undone within the window (moved and moved back; created and
    deleted) disappears. A series moved to new recurrence ids is followed by its keys.
    """
    current: dict[Key, Change] = {}  # by the key the occurrence has now
    order: list[Change] = []
    for change in changes:
        lookup = change.before.key if change.before is not None else change.event.key
        earlier = current.pop(lookup, None)
        merged = change if earlier is None else Change(change.kinds, earlier.before, change.after)
        if earlier is not None:
            order.remove(earlier)
        now_key = change.after.key if change.after is not None else lookup
        current[now_key] = merged
        order.append(merged)
    out: list[Change] = []
    for c in order:
        before, after = c.before, c.after
        if before is None and after is None:
            continue
        if before is None:
            assert after is not None
            if after.status is not EventStatus.CANCELLED:
                out.append(Change(frozenset({ChangeKind.CREATED}), None, after))
            continue
        if after is None:
            if before.status is not EventStatus.CANCELLED:
                out.append(Change(frozenset({ChangeKind.DELETED}), before, None))
            continue
        kinds = compare(before, after, rules)
        if kinds:
            out.append(Change(kinds, before, after))
    out.sort(key=lambda c: (c.starts_at, c.event.uid, c.event.recurrence_id))
    return out
