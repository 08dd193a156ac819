"""What of a calendar event may leave the service: a private event is busy time only.

The manager marks an event private (iCalendar ``CLASS:PRIVATE``, Google/Graph
visibility or sensitivity); unless the manager lets the assistant see private details
(``Pair.share_private_details``, a viewer's ``PairAccess.sees_private``), such an event
shows as "Busy (private)" and its time, nothing else: no title, place, description,
organiser, attendees, meeting link or categories. Every output asks here, never decides
on its own: the assistant's mail (text and HTML, its conflict and travel lines), the
digest, pages and the JSON API, webhooks, chat, and the CLI's ``--json``.

``visible`` works on ``EventData``, ``visible_json`` on the snapshot JSON the store keeps
(``assistant.store.snapshots.to_json``); both keep only what is listed in ``SHOWN_FIELDS``
(an allow-list: a field added to ``EventData`` later stays hidden until it is added here).
Pure code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from assistant.domain.model import EventData
from assistant.domain.text import one_line

BUSY_LABEL = {"en": "Busy (private)", "ru": "Занят (личное)"}

# What of a private event is shown: when it is, and what identifies the occurrence.
SHOWN_FIELDS = (
    "uid", "recurrence_id", "start", "end", "timezone", "all_day", "start_date", "end_date",
    "status", "busy", "private", "own_marker",
)  # fmt: skip
# Snapshot JSON carries the change kinds beside the event: which fields changed, not how.
SHOWN_KEYS = frozenset(SHOWN_FIELDS) | {"kinds"}


def busy_label(locale: str = "en") -> str:
    return BUSY_LABEL.get(locale[:2].lower(), BUSY_LABEL["en"])


def hides(private: bool, sees_private: bool) -> bool:
    """Whether the details of an event with this ``private`` flag are withheld."""
    return bool(private) and not sees_private


def visible(event: EventData, sees_private: bool, locale: str = "en") -> EventData:
    """``event`` as this audience may see it: a private one (unless ``sees_private``)
    keeps only ``SHOWN_FIELDS``; its title is the busy label of ``locale``."""
    if not hides(event.private, sees_private):
        return event
    kept: dict[str, Any] = {name: getattr(event, name) for name in SHOWN_FIELDS}
    return EventData(**kept, summary=busy_label(locale))


def visible_json(
    data: Mapping[str, Any] | None, sees_private: bool, label: str | None = None
) -> dict[str, Any] | None:
    """Snapshot JSON as this audience may see it: a private event (unless
    ``sees_private``) keeps only ``SHOWN_KEYS``, with ``summary`` set to ``label`` when
    one is given (pages) or left out (machine-readable payloads)."""
    if data is None:
        return None
    if not hides(bool(data.get("private")), sees_private):
        return dict(data)
    out = {k: v for k, v in data.items() if k in SHOWN_KEYS}
    if label is not None:
        out["summary"] = label
    return out


def title(
    summary: str, private: bool, sees_private: bool, locale: str = "en", none: str = ""
) -> str:
    """The one-line title to show for an event (``none`` when it has none)."""
    if hides(private, sees_private):
        return busy_label(locale)
    return one_line(summary) or none


def place(event: EventData, sees_private: bool) -> str:
    """The one-line location to show ("" for a private event or none)."""
    return one_line(visible(event, sees_private).location)
