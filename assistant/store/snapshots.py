"""EventData and its stored forms, one conversion each way (no session handling here).

Two stored forms: the snapshot row (``to_row``/``from_row``, what the last sync saw) and
the JSON record kept with each detected change (``to_json``/``from_json``; also what a
webhook carries, through ``assistant.domain.privacy``). Both encode attendees the same
way, ``[email, response, name, required]``, in the event's own order (``_attendees``);
reading accepts the rows written before that (``[email, name, response, required]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from assistant.domain.model import Attendee, EventData, EventStatus, Response
from assistant.store.tables import EventSnapshot

_RESPONSES = frozenset(r.value for r in Response)


def _attendees(event: EventData) -> list[list[Any]]:
    """The one encoding of an event's attendees, for rows and JSON alike."""
    return [[a.email, a.response.value, a.name, a.required] for a in event.attendees]


def _attendee(a: Sequence[Any]) -> Attendee:
    """One encoded attendee back: ``[email, response, name, required]`` (name and
    required optional), or a row written before the encodings were one
    (``[email, name, response, required]``: the response is then third)."""
    name, response = (a[2] if len(a) > 2 else ""), a[1]
    if len(a) > 2 and a[1] not in _RESPONSES and a[2] in _RESPONSES:
        name, response = a[1], a[2]
    required = bool(a[3]) if len(a) > 3 else True
    return Attendee(email=a[0], name=name, response=Response(response), required=required)


def _attendees_of(raw: Iterable[Sequence[Any]]) -> tuple[Attendee, ...]:
    return tuple(_attendee(a) for a in raw)


def to_row(account_id: int, event: EventData, seen_at: Any) -> EventSnapshot:
    return EventSnapshot(**to_values(account_id, event, seen_at))


def to_values(account_id: int, event: EventData, seen_at: Any) -> dict[str, Any]:
    """The snapshot row's columns, for a bulk insert (``insert(EventSnapshot)``)."""
    return {
        "account_id": account_id,
        "href": event.href,
        "uid": event.uid,
        "recurrence_id": event.recurrence_id,
        "summary": event.summary,
        "start_utc": event.start,
        "end_utc": event.end,
        "timezone": event.timezone,
        "all_day": event.all_day,
        "start_date": event.start_date,
        "end_date": event.end_date,
        "status": event.status.value,
        "location": event.location,
        "description": event.description,
        "organizer": event.organizer,
        "attendees": _attendees(event),
        "busy": event.busy,
        "private": event.private,
        "online_meeting_url": event.online_meeting_url,
        "categories": list(event.categories),
        "own_marker": event.own_marker,
        "modified_by": event.modified_by,
        "content_hash": event.fingerprint(),
        "seen_at": seen_at,
    }


def from_row(row: EventSnapshot) -> EventData:
    return EventData(
        uid=row.uid,
        recurrence_id=row.recurrence_id,
        start=row.start_utc,
        end=row.end_utc,
        summary=row.summary,
        timezone=row.timezone,
        all_day=row.all_day,
        start_date=row.start_date,
        end_date=row.end_date,
        status=EventStatus(row.status),
        location=row.location,
        description=row.description,
        organizer=row.organizer,
        attendees=_attendees_of(row.attendees),
        busy=row.busy,
        private=row.private,
        online_meeting_url=row.online_meeting_url,
        categories=tuple(row.categories),
        own_marker=row.own_marker,
        modified_by=row.modified_by,
        href=row.href,
    )


def to_json(event: EventData) -> dict[str, Any]:
    """A JSON-friendly record of an occurrence (kept with each detected change).

    ``from_json`` reads it back whole, so changes can be merged and re-rendered later.
    """
    return {
        "uid": event.uid,
        "recurrence_id": event.recurrence_id,
        "summary": event.summary,
        "start": event.start.isoformat(),
        "end": event.end.isoformat(),
        "timezone": event.timezone,
        "all_day": event.all_day,
        "start_date": event.start_date.isoformat() if event.start_date else None,
        "end_date": event.end_date.isoformat() if event.end_date else None,
        "status": event.status.value,
        "location": event.location,
        "description": event.description,
        "organizer": event.organizer,
        "online_meeting_url": event.online_meeting_url,
        "busy": event.busy,
        "private": event.private,
        "categories": list(event.categories),
        "modified_by": event.modified_by,
        "attendees": _attendees(event),
    }


def from_json(data: dict[str, Any]) -> EventData:
    def day(value: Any) -> date | None:
        return date.fromisoformat(value) if value else None

    return EventData(
        uid=data["uid"],
        recurrence_id=data.get("recurrence_id", ""),
        start=datetime.fromisoformat(data["start"]),
        end=datetime.fromisoformat(data["end"]),
        summary=data.get("summary", ""),
        timezone=data.get("timezone", ""),
        all_day=bool(data.get("all_day", False)),
        start_date=day(data.get("start_date")),
        end_date=day(data.get("end_date")),
        status=EventStatus(data.get("status", "confirmed")),
        location=data.get("location", ""),
        description=data.get("description", ""),
        organizer=data.get("organizer", ""),
        attendees=_attendees_of(data.get("attendees", [])),
        busy=bool(data.get("busy", True)),
        private=bool(data.get("private", False)),
        online_meeting_url=data.get("online_meeting_url", ""),
        categories=tuple(data.get("categories", [])),
        modified_by=data.get("modified_by", ""),
    )
