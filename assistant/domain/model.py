"""Plain domain values shared by connectors and the service.

Connectors return these; the store persists them; the pure domain functions
(change detection, latency, delegation) compute on them. Nothing here knows
about SQLAlchemy, HTTP or any provider library.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from enum import StrEnum
from typing import Any


class Response(StrEnum):
    """An attendee's answer to an invitation (iCalendar PARTSTAT, lower-cased)."""

    NEEDS_ACTION = "needs-action"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    TENTATIVE = "tentative"
    DELEGATED = "delegated"


class EventStatus(StrEnum):
    CONFIRMED = "confirmed"
    TENTATIVE = "tentative"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Attendee:
    email: str
    name: str = ""
    response: Response = Response.NEEDS_ACTION
    required: bool = True


# The iCalendar property that marks an event the service itself wrote (a Red Line or
# Dead Line checkpoint). Its value is "<task id>:<kind>". Sync never reports such events.
OWN_EVENT_PROPERTY = "X-EXEC-ASSISTANT-CHECKPOINT"


@dataclass(frozen=True, slots=True)
class EventData:
    """One occurrence of a calendar event, as a provider holds it.

    A recurring series is expanded into one EventData per occurrence within the sync
    window; ``recurrence_id`` names the occurrence (the RECURRENCE-ID in UTC,
    ``YYYYMMDDTHHMMSSZ``, or ``YYYYMMDD`` for all-day series) and is ``""`` for a
    single event. ``start``/``end`` are aware datetimes in UTC; ``timezone`` keeps the
    zone the event was written in (IANA name; ``""`` when floating or unknown). An
    all-day event also carries ``start_date``/``end_date`` (end exclusive): the dates are
    the truth, ``start``/``end`` are that day's midnights in the calendar's default zone
    so that all-day events sort and overlap with timed ones.
    """

    uid: str
    start: datetime
    end: datetime
    recurrence_id: str = ""
    summary: str = ""
    timezone: str = ""
    all_day: bool = False
    start_date: date | None = None
    end_date: date | None = None
    status: EventStatus = EventStatus.CONFIRMED
    location: str = ""
    description: str = ""
    organizer: str = ""
    attendees: tuple[Attendee, ...] = ()
    busy: bool = True
    private: bool = False
    online_meeting_url: str = ""
    categories: tuple[str, ...] = ()
    own_marker: str = ""
    modified_by: str = ""
    href: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """Identity of an occurrence across syncs: (iCal UID, recurrence id)."""
        return (self.uid, self.recurrence_id)

    @property
    def is_ours(self) -> bool:
        return bool(self.own_marker)

    def fingerprint(self) -> str:
        """A hash of everything that matters to the assistant.

        Etag churn, re-serialisation and provider-side bookkeeping do not change it;
        the href is left out because the same event may move between resources.
        """
        data: dict[str, Any] = {name: getattr(self, name) for name in _HASHED}
        data["attendees"] = [  # what dataclasses.asdict gave (a tenth of its cost)
            {"email": a.email, "name": a.name, "response": a.response, "required": a.required}
            for a in self.attendees
        ]
        raw = json.dumps(data, sort_keys=True, default=str, ensure_ascii=False)
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


# What ``EventData.fingerprint`` hashes: every field but the href and who changed it.
_HASHED = tuple(f.name for f in fields(EventData) if f.name not in ("href", "modified_by"))


@dataclass(frozen=True, slots=True)
class MessageData:
    """One mail message, reduced to what threading and reply latency need."""

    message_id: str
    sent_at: datetime
    from_addr: str
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    subject: str = ""
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    thread_id: str = ""
    folder: str = ""
    auto_reply: bool = False
    source_id: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
