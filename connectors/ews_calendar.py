"""The manager's calendar on Exchange on-premises, through EWS (exchangelib).

We sign in as the assistant (basic, NTLM or OAuth2) and open the manager's mailbox with
delegate access. Requests, per sync:

* ``token`` given, nothing changed: one ``SyncFolderItems`` (the sync state is our token).
* ``token`` given, items changed: one ``SyncFolderItems`` (ids, UIDs, item types, start
  and end of the changed items, and the ids of deleted ones), then one ``GetItem`` per
  100 changed items (singles and series masters together; a master comes with its
  ``Recurrence``, ``FirstOccurrence``, ``LastOccurrence``, ``ModifiedOccurrences`` and
  ``DeletedOccurrences``), then one ``GetItem`` per 100 moved occurrences (exceptions)
  that fall in the window, by the item ids ``ModifiedOccurrences`` names. One changed
  series with an exception: three requests, however many occurrences it has.
* ``token=None``: ``SyncFolderItems`` from an empty state (every item id, UID, type,
  start and end, 512 a page, ending with the state to store), then the same two kinds
  of ``GetItem`` for the singles that overlap the window (the others have no event to
  read), every series master and the exceptions in the window; ``full=True``. No
  ``CalendarView``: nothing is listed that is then thrown away.

Series are expanded here, from the master: the pattern (daily, weekly, absolute and
relative monthly and yearly; "day 31" falls on the last day of shorter months, as in
Exchange) and its boundary (no end, end date, number of occurrences, deleted ones
counted) become a dateutil ``rrule`` over the wall-clock time of the master's
``StartTimeZone`` (a Windows zone, mapped to its IANA zone by exchangelib), and each
occurrence is converted to UTC on its own date, so a 9:00 meeting stays at 9:00 across
DST. Deleted occurrences are left out, modified ones are the exceptions read by id, the
others are the master's event at their own start (timed: the master's duration; all-day:
the master's number of days, midnight to midnight in the zone). This is cheaper than
the alternatives: a ``CalendarView`` lists every occurrence of every series (capped at
1,000 a view, and UIDs need a ``GetItem`` per 100 occurrences), and ``OccurrenceItemId``
(master id + instance index) costs a ``GetItem`` entry per occurrence and still needs
the expansion to know which indexes fall in the window.

The expansion is checked against what the server says of the series before it is
trusted: the original start of ``FirstOccurrence`` (everything expanded before it
deleted), of ``LastOccurrence`` (for a bounded series, everything after it deleted),
of every modified occurrence and every deleted one must be occurrences we expanded. A
series that fails a check, has a pattern we do not know, or a zone exchangelib cannot
map (a custom time zone definition) is expanded by the server instead: a
``CalendarView`` over the window, probed with ``FindItem`` alone (ids and item types,
no ``GetItem``) and split in halves while a part is capped (``MaxEntriesReturned``),
then ``GetItem`` of the UIDs of the occurrences only and of the properties of those
that belong to such a series. ``expand_locally=False`` takes that path for every
series (the behaviour before local expansion, kept to compare against).

A resource is one calendar item as the folder holds it (a single appointment or a series
master): ``href`` is its EWS item id, ``etag`` its change key, ``events`` its occurrences
within the window. An invalid sync state (ErrorInvalidSyncStateData) raises
``TokenExpired``.

exchangelib keeps its sync state on the folder object and retries on its own
(``FaultTolerance``); here the state is passed in and returned explicitly, and the retry
policy fails fast so that the service decides when to try again: ErrorServerBusy (with
its BackOffMilliseconds) and HTTP 429/503 (with Retry-After) raise ``RateLimited``; 401
``AuthExpired``; other 5xx, timeouts and connection errors ``Transient``; ErrorItemNotFound
``NotFound``.

Our checkpoint events carry two named properties in the PublicStrings property set: the
marker (``X-EXEC-ASSISTANT-CHECKPOINT``, read back as ``EventData.own_marker``) and our
uid (``X-EXEC-ASSISTANT-UID``). ``put_event`` finds an earlier copy by that uid with a
restricted ``FindItem`` before it creates one, so a retried write never duplicates.

Streaming notifications (Subscribe + GetStreamingEvents) are in ``connectors/ews_push.py``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import requests
from dateutil import rrule
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    Account,
    CalendarItem,
    Configuration,
    Credentials,
    EWSDateTime,
    EWSTimeZone,
    ExtendedProperty,
    HTMLBody,
    OAuth2AuthorizationCodeCredentials,
    OAuth2Credentials,
    Version,
)
from exchangelib import errors as ews_errors
from exchangelib.fields import InvalidField
from exchangelib.items import SEND_TO_ALL_AND_SAVE_COPY, SEND_TO_NONE
from exchangelib.properties import Attendee as EwsAttendee
from exchangelib.properties import Mailbox
from exchangelib.protocol import FailFast
from exchangelib.util import is_xml

from assistant.model import OWN_EVENT_PROPERTY, Attendee, EventData, EventStatus, Response
from connectors.base import (
    AuthExpired,
    CalendarDelta,
    CalendarResource,
    ConnectorError,
    InvalidData,
    NotFound,
    OwnEvent,
    PreconditionFailed,
    RateLimited,
    TokenExpired,
    Transient,
    Window,
    WrittenEvent,
    parse_retry_after,
)

OWN_UID_PROPERTY = "X-EXEC-ASSISTANT-UID"
SYNC_PAGE = 512  # the most SyncFolderItems returns at once
VIEW_CAP = 1000  # Exchange's default EWSFindCountLimit
FETCH_CHUNK = 100
AUTH_TYPES = {"basic": BASIC, "ntlm": NTLM, "oauth2": OAUTH2}

_MARKER = "exec_assistant_marker"
_OWN_UID = "exec_assistant_uid"
_SYNC_FIELDS = ("uid", "type", "start", "end")
_VIEW_FIELDS = ("type",)  # what FindItem returns by itself (no GetItem)
_UID_FIELDS = ("uid", "type")
_EVENT_FIELDS = (
    "uid", "type", "start", "end", "recurrence_id", "original_start", "subject", "location",
    "body", "is_all_day", "is_cancelled", "legacy_free_busy_status", "sensitivity",
    "categories", "organizer", "required_attendees", "optional_attendees",
    "last_modified_name", "_start_timezone", "_end_timezone", _MARKER,
)  # fmt: skip
_SERIES_FIELDS = (
    "recurrence", "first_occurrence", "last_occurrence", "modified_occurrences",
    "deleted_occurrences",
)  # fmt: skip
_ITEM_FIELDS = _EVENT_FIELDS + _SERIES_FIELDS  # singles and masters in one GetItem
_NEAR = timedelta(days=1)  # slack around the window when judging by SyncFolderItems' start/end
_EXPANSION_LIMIT = 20_000  # occurrences expanded for one series before giving up on it
_WRITTEN_FIELDS = (
    "subject", "body", "start", "end", "is_all_day", "legacy_free_busy_status",
    "required_attendees", _MARKER, _OWN_UID,
)  # fmt: skip
_RESPONSES = {
    "Accept": Response.ACCEPTED,
    "Decline": Response.DECLINED,
    "Tentative": Response.TENTATIVE,
    "Organizer": Response.ACCEPTED,
}
_MEETING_URL = re.compile(
    r"https://(?:[\w.-]+\.)?(?:teams\.microsoft\.com|zoom\.us|webex\.com|meet\.google\.com)"
    r"/[^\s<>\"')]*",
    re.IGNORECASE,
)
_EWS_UTC = EWSTimeZone("UTC")


# ------------------------------------------------------------ extended properties


class OwnMarker(ExtendedProperty):  # type: ignore[misc]
    """Our checkpoint marker, a named property in the PublicStrings property set."""

    distinguished_property_set_id = "PublicStrings"
    property_name = OWN_EVENT_PROPERTY
    property_type = "String"


class OwnUid(ExtendedProperty):  # type: ignore[misc]
    """The uid of one of our checkpoint events (EWS cannot search calendar:UID)."""

    distinguished_property_set_id = "PublicStrings"
    property_name = OWN_UID_PROPERTY
    property_type = "String"


_registered = threading.Lock()


def register_properties() -> None:
    """Teach exchangelib's CalendarItem our two properties (once per process)."""
    with _registered:
        for name, cls in ((_MARKER, OwnMarker), (_OWN_UID, OwnUid)):
            try:
                CalendarItem.get_field_by_fieldname(name)
            except InvalidField:
                CalendarItem.register(name, cls)


# -------------------------------------------------------------------- retry policy


class HttpRefused(ews_errors.EWSError):  # type: ignore[misc]
    """An HTTP status that no SOAP body explains (our policy raises it, exchangelib won't)."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class FailFastWithStatus(FailFast):  # type: ignore[misc]
    """exchangelib's fail-fast policy, keeping the status and Retry-After of a refusal.

    FailFast turns a 429 or a bare 500 into an opaque MalformedResponseError and a 503
    into a transient error retried after a fixed wait; we need the status to choose
    between RateLimited and Transient, and the server's Retry-After.
    """

    def raise_response_errors(self, response: Any) -> None:
        status = int(response.status_code)
        if status in (429, 503):
            raise HttpRefused(status, parse_retry_after(response.headers.get("Retry-After")))
        if status >= 500 and not (response.content and is_xml(response.content)):
            raise HttpRefused(status, None)
        super().raise_response_errors(response)


# ------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class EwsSettings:
    """How to reach the manager's calendar.

    ``service_endpoint`` (``https://mail.example.com/EWS/Exchange.asmx``) or
    ``autodiscover=True``; ``auth`` is ``basic``, ``ntlm`` (username ``DOMAIN\\user``) or
    ``oauth2`` (``client_id``/``client_secret``/``tenant_id`` for the client-credentials
    grant, or an ``access_token`` obtained elsewhere). ``access`` is ``delegate`` (the
    assistant's own credentials, with delegate rights on the manager's calendar) or
    ``impersonation`` (a service account). ``version`` (e.g. ``Exchange2016``) skips
    exchangelib's version probe.
    """

    mailbox: str
    service_endpoint: str = ""
    autodiscover: bool = False
    auth: str = "basic"
    username: str = ""
    password: str = field(default="", repr=False)
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    tenant_id: str = ""
    access_token: str = field(default="", repr=False)
    access: str = "delegate"
    version: str = ""


def _credentials(s: EwsSettings) -> Any:
    if s.auth == "oauth2":
        token = {"access_token": s.access_token, "token_type": "Bearer"} if s.access_token else None
        if s.client_secret and s.tenant_id:
            return OAuth2Credentials(
                client_id=s.client_id, client_secret=s.client_secret, tenant_id=s.tenant_id,
                access_token=token,
            )  # fmt: skip
        return OAuth2AuthorizationCodeCredentials(
            client_id=s.client_id or None, client_secret=s.client_secret or None,
            access_token=token,
        )  # fmt: skip
    if s.auth not in AUTH_TYPES:
        raise ConnectorError(f"EWS: unknown authentication {s.auth!r} (basic, ntlm or oauth2)")
    return Credentials(s.username, s.password)


def _version(name: str) -> Any:
    if not name:
        return None
    for version in Version.all_versions():
        if version.api_version == name:
            return version
    raise ConnectorError(f"EWS: unknown server version {name!r} (e.g. Exchange2016)")


def open_account(s: EwsSettings) -> Any:
    """An exchangelib Account for ``s.mailbox`` that fails fast (no retries of its own).

    Shared by the EWS connectors (calendar, mailbox).
    """
    credentials = _credentials(s)
    if not s.autodiscover and not s.service_endpoint:
        raise ConnectorError("EWS: give a service_endpoint or turn autodiscover on")
    config = Configuration(
        credentials=credentials,
        service_endpoint=None if s.autodiscover else s.service_endpoint,
        auth_type=AUTH_TYPES.get(s.auth),
        version=_version(s.version),
        retry_policy=FailFastWithStatus(),
        max_connections=1,
    )
    return Account(
        primary_smtp_address=s.mailbox,
        config=config,
        autodiscover=s.autodiscover,
        credentials=credentials if s.autodiscover else None,
        access_type=IMPERSONATION if s.access == "impersonation" else DELEGATE,
        default_timezone=_EWS_UTC,
    )


# ---------------------------------------------------------------------- connector


@dataclass(frozen=True, slots=True)
class _Master:
    """A calendar item as SyncFolderItems lists it."""

    item_id: str
    changekey: str
    uid: str
    kind: str  # Single, RecurringMaster
    start: datetime | None = None  # UTC; a master's is its first occurrence's
    end: datetime | None = None

    def near(self, window: Window) -> bool:
        """Whether a single may have its event in the window (unknown times: yes)."""
        if self.start is None or self.end is None:
            return True
        return self.start < window.end + _NEAR and self.end > window.start - _NEAR


class EwsCalendar:
    """The default calendar of ``settings.mailbox`` (the manager's) over EWS.

    ``zone`` is the manager's zone, for all-day events read by ``get_event``.
    ``send_invitations`` sends our checkpoint events to their attendees (the delegate);
    by default they are only saved in the manager's calendar.
    """

    def __init__(
        self,
        settings: EwsSettings,
        *,
        timeout: float = 30,
        zone: str = "UTC",
        send_invitations: bool = False,
        view_cap: int = VIEW_CAP,
        sync_page: int = SYNC_PAGE,
        expand_locally: bool = True,
    ) -> None:
        register_properties()
        self.settings = settings
        self.timeout = timeout
        self.zone = zone
        self.send_invitations = send_invitations
        self.view_cap = view_cap
        self.sync_page = sync_page
        self.expand_locally = expand_locally
        self._account: Any = None
        self._folder: Any = None

    # ------------------------------------------------------------- CalendarSource

    def changes(self, token: str | None, window: Window) -> CalendarDelta:
        with self._errors("SyncFolderItems"):
            changed, deleted, new_token = self._sync(token)
        if token and not changed and not deleted:
            return CalendarDelta(full=False, unchanged=True, token=new_token)
        with self._errors("reading calendar items"):
            resources, skipped = self._resources(list(changed.values()), window, full=not token)
        return CalendarDelta(
            full=not token,
            resources=tuple(resources),
            deleted=() if not token else tuple(deleted),
            token=new_token,
            skipped=tuple(skipped),
        )

    # ------------------------------------------------------------- CalendarWriter

    def put_event(self, event: OwnEvent) -> WrittenEvent:
        with self._errors(f"writing {event.uid}"):
            found = self._find_own(event.uid)
            for extra in found[1:]:  # two copies from an earlier race: keep one
                extra.delete(send_meeting_cancellations=SEND_TO_NONE)
            item = (
                found[0]
                if found
                else CalendarItem(account=self._mailbox(), folder=self._calendar())
            )
            zone = _ews_zone(event.timezone)
            item.subject = event.summary
            item.body = event.description + (f"\n\n{event.url}" if event.url else "")
            item.start = _ews_time(event.start, zone)
            item.end = _ews_time(event.end, zone)
            item._start_timezone = zone
            item._end_timezone = zone
            item.is_all_day = False
            item.legacy_free_busy_status = "Busy"
            item.required_attendees = [
                EwsAttendee(mailbox=Mailbox(email_address=a.email, name=a.name or None),
                            response_type="Unknown")
                for a in event.attendees
            ] or None  # fmt: skip
            setattr(item, _MARKER, event.marker)
            setattr(item, _OWN_UID, event.uid)
            invite = (
                SEND_TO_ALL_AND_SAVE_COPY
                if self.send_invitations and event.attendees
                else SEND_TO_NONE
            )
            if found:
                item.save(update_fields=list(_WRITTEN_FIELDS), send_meeting_invitations=invite)
            else:
                item.uid = event.uid
                item.save(send_meeting_invitations=invite)
            return WrittenEvent(href=str(item.id), etag=str(item.changekey or ""))

    def delete_event(self, uid: str) -> bool:
        with self._errors(f"deleting {uid}"):
            found = self._find_own(uid)
            for item in found:
                with suppress(ews_errors.ErrorItemNotFound):
                    item.delete(send_meeting_cancellations=SEND_TO_NONE)
            return bool(found)

    def get_event(self, uid: str) -> EventData | None:
        with self._errors(f"reading {uid}"):
            found = self._find_own(uid, _EVENT_FIELDS)
        if not found:
            return None
        return event_from_item(found[0], str(found[0].id), self.zone)

    # ----------------------------------------------------------------------- sync

    def _sync(self, token: str | None) -> tuple[dict[str, _Master], list[str], str]:
        """Every page of SyncFolderItems: (changed items by id, deleted ids, new state)."""
        folder = self._calendar()
        folder.item_sync_state = token or None  # exchangelib would otherwise reuse its own
        changed: dict[str, _Master] = {}
        deleted: list[str] = []
        for kind, item in folder.sync_items(
            sync_state=token or None,
            only_fields=list(_SYNC_FIELDS),
            max_changes_returned=self.sync_page,
        ):
            if kind in ("create", "update") and isinstance(item, CalendarItem):
                changed[item.id] = _Master(
                    item.id, item.changekey or "", item.uid or "", item.type or "Single",
                    _maybe_utc(item.start), _maybe_utc(item.end),
                )  # fmt: skip
            elif kind == "delete":
                changed.pop(item.id, None)
                deleted.append(str(item.id))
        state = folder.item_sync_state
        if not state:
            raise InvalidData("EWS SyncFolderItems: the server sent no sync state")
        return changed, deleted, str(state)

    def _resources(
        self, masters: list[_Master], window: Window, full: bool
    ) -> tuple[list[CalendarResource], list[str]]:
        by_id = {m.item_id: m for m in masters}
        # a full sync reads no single outside the window: its resource has no event
        wanted = [m for m in masters if m.kind == "RecurringMaster" or not full or m.near(window)]
        events: dict[str, list[EventData]] = {m.item_id: [] for m in masters}
        skipped: list[str] = []
        exceptions: list[tuple[str, str]] = []
        by_server: dict[str, _Master] = {}  # series the server expands, by UID
        fields = _ITEM_FIELDS if self.expand_locally else _EVENT_FIELDS
        for item in self._fetch([(m.item_id, m.changekey) for m in wanted], fields):
            master = by_id.get(item.id)
            if master is None:
                continue  # created after SyncFolderItems answered: the next sync has it
            try:
                event = event_from_item(item, master.item_id, window.zone)
                if item.type != "RecurringMaster":
                    events[master.item_id].append(event)
                    continue
                expansion = _expand(item, window) if self.expand_locally else None
            except (ValueError, TypeError, AttributeError) as exc:
                skipped.append(f"{master.item_id}: {exc}")
                continue
            if expansion is None:
                by_server[master.uid or master.item_id] = master
                continue
            events[master.item_id] += [
                _occurrence(event, original, start, end, window.zone)
                for original, start, end in expansion.occurrences
            ]
            exceptions += expansion.exceptions
        series = {m.uid: m for m in masters if m.kind == "RecurringMaster" and m.uid}
        found = list(self._fetch(exceptions, _EVENT_FIELDS))
        if by_server:  # which occurrences in the window belong to those series
            refs = [(o.id, o.changekey) for o in self._occurrences(window) if o.uid in by_server]
            found += self._fetch(refs, _EVENT_FIELDS)
        for item in found:
            master = series.get(item.uid)
            if master is None:
                continue
            try:
                events[master.item_id].append(event_from_item(item, master.item_id, window.zone))
            except (ValueError, TypeError, AttributeError) as exc:
                skipped.append(f"{master.item_id}: {exc}")
        resources = [
            CalendarResource(
                href=m.item_id, etag=m.changekey,
                events=tuple(sorted((e for e in events[m.item_id] if _overlaps(e, window)),
                                    key=lambda e: (e.start, e.recurrence_id))),
            )
            for m in masters
        ]  # fmt: skip
        return resources, skipped

    def _occurrences(self, window: Window) -> list[Any]:
        """Occurrences and exceptions in the window, with their UIDs (server expansion).

        The view is probed with FindItem alone (ids and item types); a part the server
        capped (``MaxEntriesReturned``) is split in halves before anything is read, and
        only the occurrences' UIDs are read, 100 a GetItem.
        """
        folder = self._calendar()
        refs: dict[str, tuple[str, str]] = {}
        spans = [(window.start, window.end)]
        while spans:
            start, end = spans.pop()
            found = list(
                folder.view(
                    start=_ews_time(start, _EWS_UTC), end=_ews_time(end, _EWS_UTC),
                    max_items=self.view_cap,
                ).only(*_VIEW_FIELDS)
            )  # fmt: skip
            if len(found) >= self.view_cap and end - start > timedelta(minutes=30):
                middle = start + (end - start) / 2
                spans += [(start, middle), (middle, end)]
                continue
            for item in found:
                if item.type in ("Occurrence", "Exception"):
                    refs[item.id] = (item.id, item.changekey)
        return list(self._fetch(list(refs.values()), _UID_FIELDS))

    def _fetch(self, refs: list[tuple[str, str]], fields: Iterable[str]) -> Iterator[Any]:
        """GetItem, 100 ids a request; items deleted meanwhile are left out."""
        if not refs:
            return
        for item in self._mailbox().fetch(
            ids=refs, only_fields=list(fields), chunk_size=FETCH_CHUNK
        ):
            if isinstance(item, ews_errors.ErrorItemNotFound):
                continue  # deleted meanwhile: the next sync lists it as deleted
            if isinstance(item, Exception):
                raise item
            yield item

    # -------------------------------------------------------------------- writing

    def _find_own(self, uid: str, fields: Iterable[str] = ("subject",)) -> list[Any]:
        """Our events with ``uid`` (FindItem restricted on our uid property)."""
        query = self._calendar().filter(**{_OWN_UID: uid}).only(*fields)
        return sorted(query, key=lambda i: str(i.id))

    # ---------------------------------------------------------------- the account

    def _mailbox(self) -> Any:
        if self._account is None:
            self._account = open_account(self.settings)
        account = self._account
        account.protocol.TIMEOUT = self.timeout  # cached protocols are shared: set per call
        return account

    def _calendar(self) -> Any:
        account = self._mailbox()
        if self._folder is None:
            self._folder = account.calendar
        return self._folder

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate exchangelib and transport errors into our error tree."""
        try:
            yield
        except ConnectorError:
            raise
        except Exception as exc:
            mapped = _translate(exc, f"EWS {what}")
            if mapped is None:
                raise
            raise mapped from None


def _translate(exc: BaseException, what: str) -> ConnectorError | None:
    """Our error for a provider error; None for anything else (a bug of ours)."""
    e = ews_errors
    if isinstance(exc, HttpRefused):
        if exc.status in (429, 503):
            return RateLimited(f"{what}: throttled (HTTP {exc.status})", exc.retry_after)
        return Transient(f"{what}: server error (HTTP {exc.status})")
    if isinstance(exc, e.ErrorServerBusy):
        return RateLimited(f"{what}: the server is busy", exc.back_off)
    if isinstance(exc, e.RateLimitError):
        return RateLimited(f"{what}: throttled", float(exc.wait) if exc.wait else None)
    if isinstance(exc, e.ErrorInvalidSyncStateData):
        return TokenExpired(f"{what}: the sync state is no longer valid")
    if isinstance(
        exc, e.UnauthorizedError | e.ErrorAccessDenied | e.ErrorDelegateNoUser
        | e.ErrorImpersonateUserDenied,
    ):  # fmt: skip
        return AuthExpired(f"{what}: access refused")
    if isinstance(exc, e.CASError):
        return AuthExpired(f"{what}: refused by the client access server")
    if isinstance(exc, e.ErrorItemNotFound | e.ErrorFolderNotFound | e.ErrorNonExistentMailbox):
        return NotFound(f"{what}: not found ({type(exc).__name__})")
    if isinstance(exc, e.ErrorIrresolvableConflict | e.ErrorChangeKeyRequiredForWriteOperations):
        return PreconditionFailed(f"{what}: the item changed meanwhile")
    if isinstance(
        exc,
        e.ErrorTimeoutExpired | e.ErrorInternalServerTransientError | e.ErrorInternalServerError
        | e.ErrorMailboxStoreUnavailable | e.ErrorConnectionFailed | e.ErrorMailboxMoveInProgress
        | e.ErrorTooManyObjectsOpened | e.ErrorExceededConnectionCount,
    ):  # fmt: skip
        return Transient(f"{what}: {type(exc).__name__}")
    if isinstance(exc, requests.exceptions.RequestException | OSError):
        return Transient(f"{what}: {type(exc).__name__}")
    if isinstance(exc, e.ResponseMessageError):
        return ConnectorError(f"{what}: {type(exc).__name__}")
    if isinstance(exc, e.TransportError):  # malformed replies, SOAP faults, redirects
        return Transient(f"{what}: {type(exc).__name__}")
    if isinstance(exc, e.EWSError):
        return ConnectorError(f"{what}: {type(exc).__name__}")
    return None


# ------------------------------------------------------------------------ mapping


def event_from_item(item: Any, href: str, zone_name: str) -> EventData:
    """One exchangelib CalendarItem (single, occurrence or exception) as EventData."""
    zone = _zoneinfo(zone_name)
    tz = item._start_timezone
    tz_name = str(getattr(tz, "key", "") or "") if tz is not None else ""
    start_date: date | None = None
    end_date: date | None = None
    if item.is_all_day and not isinstance(item.start, datetime):
        start_date = date(item.start.year, item.start.month, item.start.day)
        last = item.end if item.end is not None else item.start
        end_date = date(last.year, last.month, last.day) + timedelta(days=1)
        start = datetime.combine(start_date, time(), zone).astimezone(UTC)
        end = datetime.combine(end_date, time(), zone).astimezone(UTC)
    else:
        start, end = _utc(item.start), _utc(item.end)
    recurrence_id = ""
    if item.type in ("Occurrence", "Exception"):
        original = item.recurrence_id or item.original_start
        if original is None:
            raise ValueError("an occurrence without RecurrenceId")
        if start_date is not None:
            local = _utc(original).astimezone(_zoneinfo(tz_name or zone_name))
            recurrence_id = f"{local:%Y%m%d}"
        else:
            recurrence_id = f"{_utc(original):%Y%m%dT%H%M%SZ}"
    description = _text(item.body)
    location = str(item.location or "")
    attendees = tuple(
        _attendee(a, required)
        for required, group in ((True, item.required_attendees), (False, item.optional_attendees))
        for a in group or ()
        if a.mailbox is not None and a.mailbox.email_address
    )
    meeting = _MEETING_URL.search(f"{location}\n{description}")
    return EventData(
        uid=str(item.uid or item.id),
        start=start,
        end=end,
        recurrence_id=recurrence_id,
        summary=str(item.subject or ""),
        timezone=tz_name,
        all_day=start_date is not None,
        start_date=start_date,
        end_date=end_date,
        status=EventStatus.CANCELLED if item.is_cancelled else EventStatus.CONFIRMED,
        location=location,
        description=description,
        organizer=str(item.organizer.email_address or "").lower() if item.organizer else "",
        attendees=attendees,
        busy=item.legacy_free_busy_status not in ("Free", "WorkingElsewhere"),
        private=item.sensitivity in ("Private", "Confidential"),
        online_meeting_url=meeting.group(0) if meeting else "",
        categories=tuple(str(c) for c in item.categories or ()),
        own_marker=str(getattr(item, _MARKER, None) or ""),
        modified_by=str(item.last_modified_name or ""),
        href=href,
    )


# ---------------------------------------------------------------- series expansion


@dataclass(frozen=True, slots=True)
class _Expansion:
    """A master's occurrences in the window: plain ones (original, start, end in UTC),
    and the (id, change key) of its exceptions near the window, to read in full."""

    occurrences: list[tuple[datetime, datetime, datetime]]
    exceptions: list[tuple[str, str]]


_WEEKDAYS = (rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA, rrule.SU)
# exchangelib's DaysOfWeek: 1-7 Monday to Sunday, 8 Day, 9 Weekday, 10 WeekendDay
_DAY_SETS = {8: _WEEKDAYS, 9: _WEEKDAYS[:5], 10: _WEEKDAYS[5:]}


def _expand(master: Any, window: Window) -> _Expansion | None:
    """Expand a recurring master over the window; None when we cannot vouch for it."""
    recurrence = master.recurrence
    zone = master._start_timezone
    if recurrence is None or recurrence.boundary is None or zone is None:
        return None
    tz, end_tz = _zoneinfo(zone.key), _zoneinfo(getattr(master._end_timezone, "key", zone.key))
    if tz.key != zone.key or master.start is None or master.end is None:
        return None  # a zone ZoneInfo does not know: let the server expand it
    all_day = bool(master.is_all_day) and not isinstance(master.start, datetime)
    if all_day:
        first = datetime.combine(master.start, time())
        days = timedelta(days=(master.end - master.start).days + 1)  # end is inclusive here
    else:
        first = _utc(master.start).astimezone(tz).replace(tzinfo=None)
        duration = _utc(master.end) - _utc(master.start)
    boundary = recurrence.boundary
    start_date = _date_of(boundary.start)
    rule = _rule(recurrence.pattern, boundary, datetime.combine(start_date, first.time()))
    if rule is None:
        return None
    modified = {_utc(o.original_start): o for o in master.modified_occurrences or ()}
    deleted = {_utc(o.start) for o in master.deleted_occurrences or ()}
    known = [*modified, *deleted]
    first = master.first_occurrence
    if first is not None and first.original_start is not None:
        known.append(_utc(first.original_start))
    horizon = max([window.end, *known]) + _NEAR
    originals: list[datetime] = []
    exhausted = True  # the whole series expanded (then its last occurrence is checked)
    for local in rule:
        original = local.replace(tzinfo=tz).astimezone(UTC)
        if original > horizon:
            exhausted = False
            break
        originals.append(original)
        if len(originals) > _EXPANSION_LIMIT:
            return None
    if not set(known) <= set(originals) or not _ends_agree(master, originals, deleted, exhausted):
        return None
    occurrences = []
    for original in originals:
        if original in deleted or original in modified:
            continue
        if all_day:
            local_day = original.astimezone(tz).date()
            start = datetime.combine(local_day, time(), tz).astimezone(UTC)
            end = datetime.combine(local_day + days, time(), end_tz).astimezone(UTC)
        else:
            start, end = original, original + duration
        if start < window.end + _NEAR and end > window.start - _NEAR:
            occurrences.append((original, start, end))
    exceptions = [
        (str(o.id), str(o.changekey or ""))
        for o in modified.values()
        if o.start is None or o.end is None
        or (_utc(o.start) < window.end + _NEAR and _utc(o.end) > window.start - _NEAR)
    ]  # fmt: skip
    return _Expansion(occurrences, exceptions)


def _ends_agree(master: Any, originals: list[datetime], deleted: set[datetime],
                exhausted: bool) -> bool:  # fmt: skip
    """The server's first occurrence is our first (not deleted), and its last is our last
    when the whole series was expanded (one that ends before the horizon)."""
    first = master.first_occurrence
    if first is None or first.original_start is None or not originals:
        return False  # nothing to check the expansion against
    kept = [o for o in originals if o not in deleted]
    if not kept or kept[0] != _utc(first.original_start):
        return False
    last = master.last_occurrence
    if last is not None and last.original_start is not None:
        original = _utc(last.original_start)
        return kept[-1] == original if exhausted else original > originals[-1]
    return True


def _rule(pattern: Any, boundary: Any, start: datetime) -> rrule.rrule | None:
    """The dateutil rule (naive wall-clock times) of an EWS recurrence pattern."""
    kind = type(pattern).__name__
    options: dict[str, Any] = {"dtstart": start, "interval": getattr(pattern, "interval", 1)}
    freq: Any
    if kind == "DailyPattern":
        freq = rrule.DAILY
    elif kind == "WeeklyPattern":
        freq = rrule.WEEKLY
        days = pattern.weekdays if isinstance(pattern.weekdays, list) else [pattern.weekdays]
        options["byweekday"] = [_WEEKDAYS[int(d) - 1] for d in days]
        options["wkst"] = int(pattern.first_day_of_week or 1) - 1
    elif kind in ("AbsoluteMonthlyPattern", "AbsoluteYearlyPattern"):
        freq = rrule.MONTHLY if kind == "AbsoluteMonthlyPattern" else rrule.YEARLY
        day = int(pattern.day_of_month)
        # day 31 of a 30-day month is its day 30 in Exchange (RFC 5545 would skip it)
        options["bymonthday"] = list(range(min(day, 28), day + 1))
        options["bysetpos"] = -1
    elif kind in ("RelativeMonthlyPattern", "RelativeYearlyPattern"):
        freq = rrule.MONTHLY if kind == "RelativeMonthlyPattern" else rrule.YEARLY
        weekday = int(pattern.weekday)
        options["byweekday"] = list(_DAY_SETS[weekday] if weekday in _DAY_SETS
                                    else (_WEEKDAYS[weekday - 1],))  # fmt: skip
        week = int(pattern.week_number)
        options["bysetpos"] = -1 if week == 5 else week
    else:
        return None  # regeneration patterns belong to tasks
    if freq == rrule.YEARLY:
        options["bymonth"] = int(pattern.month)
        options["interval"] = 1
    name = type(boundary).__name__
    if name == "NumberedPattern":
        options["count"] = int(boundary.number)
    elif name == "EndDatePattern":
        options["until"] = datetime.combine(_date_of(boundary.end), time(23, 59, 59))
    elif name != "NoEndPattern":
        return None
    return rrule.rrule(freq, **options)


def _occurrence(
    base: EventData, original: datetime, start: datetime, end: datetime, zone_name: str
) -> EventData:
    """An occurrence of a series that was not modified: the master's event at its time,
    mapped as ``event_from_item`` maps an occurrence that GetItem returns."""
    if not base.all_day:
        return replace(base, start=start, end=end,
                       recurrence_id=f"{original:%Y%m%dT%H%M%SZ}")  # fmt: skip
    tz = _zoneinfo(base.timezone or zone_name)
    zone = _zoneinfo(zone_name)
    start_date = start.astimezone(tz).date()
    end_date = (end - timedelta(days=1)).astimezone(tz).date() + timedelta(days=1)
    return replace(
        base,
        start=datetime.combine(start_date, time(), zone).astimezone(UTC),
        end=datetime.combine(end_date, time(), zone).astimezone(UTC),
        start_date=start_date,
        end_date=end_date,
        recurrence_id=f"{original.astimezone(tz):%Y%m%d}",
    )


def _date_of(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    return date(value.year, value.month, value.day)


def _maybe_utc(value: Any) -> datetime | None:
    return _utc(value) if isinstance(value, datetime) else None


def _attendee(value: Any, required: bool) -> Attendee:
    return Attendee(
        email=str(value.mailbox.email_address).lower(),
        name=str(value.mailbox.name or ""),
        response=_RESPONSES.get(str(value.response_type), Response.NEEDS_ACTION),
        required=required,
    )


def _text(body: Any) -> str:
    if not body:
        return ""
    text = str(body)
    if isinstance(body, HTMLBody) or text.lstrip().lower().startswith(("<html", "<!doctype")):
        from lxml import html

        try:
            text = str(html.fromstring(text).text_content())
        except (ValueError, TypeError):
            text = re.sub(r"<[^>]+>", " ", text)
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(line for line in lines if line).strip()


def _overlaps(event: EventData, window: Window) -> bool:
    if event.start == event.end:
        return window.start <= event.start < window.end
    return event.start < window.end and event.end > window.start


def _utc(value: Any) -> datetime:
    if value is None:
        raise ValueError("a calendar item without start or end")
    return datetime.fromtimestamp(value.timestamp(), tz=UTC)


def _ews_time(value: datetime, zone: Any) -> Any:
    utc = value.astimezone(UTC)
    return EWSDateTime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second,
                       tzinfo=_EWS_UTC).astimezone(zone)  # fmt: skip


def _ews_zone(name: str) -> Any:
    try:
        return EWSTimeZone(name or "UTC")
    except (ews_errors.UnknownTimeZone, ValueError, KeyError):
        return _EWS_UTC


def _zoneinfo(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def ews_settings(settings: Mapping[str, Any], secret: Any) -> EwsSettings:
    """EwsSettings from an account's settings; ``secret`` resolves secret references."""
    return EwsSettings(
        mailbox=str(settings["mailbox"]),
        service_endpoint=str(settings.get("service_endpoint", "")),
        autodiscover=bool(settings.get("autodiscover", False)),
        auth=str(settings.get("auth", "basic")),
        username=str(settings.get("username", "")),
        password=secret(settings.get("password")),
        client_id=str(settings.get("client_id", "")),
        client_secret=secret(settings.get("client_secret")),
        tenant_id=str(settings.get("tenant_id", "")),
        access_token=secret(settings.get("access_token")),
        access=str(settings.get("access", "delegate")),
        version=str(settings.get("version", "")),
    )


def open_ews_calendar(settings: Mapping[str, Any], secret: Any, timeout: float = 30) -> EwsCalendar:
    """An EwsCalendar from an account's settings; ``secret`` resolves secret references."""
    return EwsCalendar(
        ews_settings(settings, secret),
        timeout=timeout,
        zone=str(settings.get("zone", "UTC")),
        send_invitations=bool(settings.get("send_invitations", False)),
    )
