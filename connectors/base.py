"""The small interfaces every provider connector implements, and our error tree.

Connectors translate provider errors into the exceptions below at the boundary, so
the service never sees an exchangelib, googleapiclient, caldav or imaplib type.
Change tokens are explicit values passed in and returned, never state hidden in an
object.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol, runtime_checkable

from assistant.domain.model import Attendee, EventData, MessageData

# --------------------------------------------------------------------------- errors


class ConnectorError(Exception):
    """A provider could not do what we asked. The message is safe to show a user."""


class AuthExpired(ConnectorError):
    """Credentials were refused or a token expired: the user must reconnect."""


class RateLimited(ConnectorError):
    """The provider asked us to slow down."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TokenExpired(ConnectorError):
    """The stored change token is no longer valid: do a full resync."""


class PreconditionFailed(ConnectorError):
    """An If-Match / If-None-Match condition failed (someone else changed the item)."""


class NotFound(ConnectorError):
    """The calendar, mailbox or item does not exist (any more)."""


class Transient(ConnectorError):
    """A network error, timeout or 5xx: try again later."""


class InvalidData(ConnectorError):
    """The provider returned data we cannot parse (malformed ICS or MIME)."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# --------------------------------------------------------------------------- limits

# The category a series too frequent to expand carries: it is kept as one item.
TOO_FREQUENT = "too frequent to expand"
TRUNCATED = " … [truncated]"


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Bounds on what is read from a calendar or a mail, enforced while reading.

    Built from ``config.settings.LimitsSettings``; the defaults here are the same.
    """

    property_bytes: int = 64 * 1024  # a longer text property is cut, with TRUNCATED
    events_per_calendar: int = 10_000  # VEVENTs read from one calendar; the rest left out
    properties_per_event: int = 2_000  # lines in one VEVENT; beyond: the event is left out
    occurrences_per_series: int = 1_000  # in the sync window; beyond: one item, TOO_FREQUENT
    series_scan_steps: int = 50_000  # rule steps walked before the window ends
    component_depth: int = 8  # BEGIN inside BEGIN
    parse_seconds: float = 20.0  # one calendar; beyond: the sync fails with that reason
    mime_headers: int = 1_000  # header lines of one message (or part)
    mime_depth: int = 20  # multiparts of one message (bounds nesting)

    @classmethod
    def of(cls, settings: object) -> ParseLimits:
        """From ``config.settings.LimitsSettings`` (or anything with these attributes)."""
        return cls(**{f: getattr(settings, f) for f in cls.__dataclass_fields__})


DEFAULT_LIMITS = ParseLimits()


# ------------------------------------------------------------------------- calendar


@dataclass(frozen=True, slots=True)
class Window:
    """The span of time a sync expands recurring series into.

    ``zone`` is the calendar's default zone (the manager's): floating times and
    all-day dates are placed in it.
    """

    start: datetime
    end: datetime
    zone: str = "UTC"


@dataclass(frozen=True, slots=True)
class CalendarResource:
    """One calendar object resource (one .ics on a CalDAV server, one series in a feed).

    ``events`` are its occurrences within the window (a series is expanded, its
    overrides applied, its EXDATEs and cancelled occurrences removed). ``notes`` say
    what in it went beyond a limit (a series too frequent to expand, kept as one item
    flagged ``TOO_FREQUENT``); the sync reports them with the skipped items.
    """

    href: str
    etag: str
    events: tuple[EventData, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CalendarDelta:
    """What changed since the token the sync started from.

    When ``full`` is true, ``resources`` is the complete calendar: any resource the
    store holds that is not listed is gone. Otherwise ``resources`` are the changed or
    new ones and ``deleted`` the removed hrefs. ``token`` is the next change token to
    store (None where the provider has none).
    """

    full: bool
    resources: tuple[CalendarResource, ...] = ()
    deleted: tuple[str, ...] = ()
    token: str | None = None
    unchanged: bool = False
    skipped: tuple[str, ...] = ()  # resources that could not be read, with the reason


@runtime_checkable
class CalendarSource(Protocol):
    def changes(self, token: str | None, window: Window) -> CalendarDelta:
        """Changes since ``token`` (None: everything). Raises TokenExpired when the
        provider no longer knows the token; the caller then asks again with None."""
        ...


@dataclass(frozen=True, slots=True)
class OwnEvent:
    """An event the service writes into the manager's calendar (a checkpoint)."""

    uid: str
    summary: str
    description: str
    start: datetime
    end: datetime
    timezone: str
    marker: str
    attendees: tuple[Attendee, ...] = ()
    url: str = ""


@dataclass(frozen=True, slots=True)
class WrittenEvent:
    href: str
    etag: str


@runtime_checkable
class CalendarWriter(Protocol):
    def put_event(self, event: OwnEvent) -> WrittenEvent:
        """Create or replace the event with ``event.uid``. Idempotent: writing the same
        uid twice leaves one event."""
        ...

    def delete_event(self, uid: str) -> bool:
        """Delete the event with ``uid``; False when it was not there."""
        ...

    def get_event(self, uid: str) -> EventData | None:
        """The event with ``uid`` as the calendar holds it now, or None."""
        ...


# ----------------------------------------------------------------------------- mail


@dataclass(frozen=True, slots=True)
class MailDelta:
    full: bool
    messages: tuple[MessageData, ...] = ()
    token: str | None = None
    skipped: tuple[str, ...] = ()  # sources that could not be parsed, with the reason


@runtime_checkable
class MailSource(Protocol):
    def changes(self, token: str | None) -> MailDelta: ...
