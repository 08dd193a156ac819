"""Conflicts a schedule change creates: double bookings and missing travel time.

Pure functions over ``EventData``. Two busy events overlap → ``overlap``. Two events
back to back at different physical places with less than the travel buffer between them
→ ``travel``. Only the changed events are checked, each against the whole calendar, so
the assistant hears about the conflicts a change made, not every old one again.

What does not block: free (transparent) time, cancelled events, all-day events (calendar
clients do not treat a day-long marker as a double booking), events the manager declined,
and our own checkpoint events (they are re-planned around the manager's meetings).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from assistant.domain.model import EventData, EventStatus, Response

ConflictKind = Literal["overlap", "travel"]

# Places that are not places: an online meeting needs no travel.
_ONLINE = re.compile(
    r"https?://|\b(teams|zoom|webex|google meet|meet\.google|skype|video ?call|phone|"
    r"call|online|virtual|видеосвязь|онлайн|звонок|телефон)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Conflict:
    kind: ConflictKind
    event: EventData  # the changed event
    other: EventData  # the event it now collides with
    gap_minutes: float | None = None  # travel: the minutes left between them

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "event": {"uid": self.event.uid, "recurrence_id": self.event.recurrence_id},
            "other": {
                "uid": self.other.uid,
                "recurrence_id": self.other.recurrence_id,
                "summary": self.other.summary,
                "start": self.other.start.isoformat(),
                "end": self.other.end.isoformat(),
                "location": self.other.location,
                "private": self.other.private,
            },
            "gap_minutes": self.gap_minutes,
        }


def physical_place(event: EventData) -> str:
    """The normalised physical location, or "" for online, phone or unknown places."""
    place = " ".join(event.location.split()).casefold()
    if not place or _ONLINE.search(place):
        return ""
    return place


def blocks_time(event: EventData, manager_emails: frozenset[str] = frozenset()) -> bool:
    if not event.busy or event.all_day or event.is_ours:
        return False
    if event.status is EventStatus.CANCELLED:
        return False
    return not any(
        a.email in manager_emails and a.response is Response.DECLINED for a in event.attendees
    )


def find_conflicts(
    changed: Iterable[EventData],
    calendar: Iterable[EventData],
    *,
    travel_buffer: timedelta = timedelta(minutes=30),
    manager_emails: frozenset[str] = frozenset(),
) -> list[Conflict]:
    """Conflicts of each changed event with the rest of ``calendar`` (which may include it).

    Each pair of events is reported once, overlap taking precedence over travel.
    """
    others = sorted(
        (e for e in calendar if blocks_time(e, manager_emails)), key=lambda e: (e.start, e.end)
    )
    found: list[Conflict] = []
    seen: set[frozenset[tuple[str, str]]] = set()
    for event in changed:
        if not blocks_time(event, manager_emails):
            continue
        place = physical_place(event)
        for other in others:
            if other.key == event.key:
                continue
            if other.start >= event.end + travel_buffer:
                break
            pair = frozenset({event.key, other.key})
            if pair in seen:
                continue
            if other.start < event.end and event.start < other.end:
                seen.add(pair)
                found.append(Conflict("overlap", event, other))
                continue
            other_place = physical_place(other)
            if not place or not other_place or place == other_place:
                continue
            gap = event.start - other.end if other.end <= event.start else other.start - event.end
            if timedelta(0) <= gap < travel_buffer:
                seen.add(pair)
                found.append(Conflict("travel", event, other, gap.total_seconds() / 60))
    found.sort(key=lambda c: (c.event.start, c.other.start))
    return found
