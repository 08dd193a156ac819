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

Both bulk reads (SyncFolderItems and the GetItem of a sync) read calendar items with
exchangelib's parsers of only the fields asked for (``connectors.ews.items``), not as
whole ``CalendarItem`` objects, and replies are parsed in 64 KiB slices, not byte by byte
(``connectors.ews.account``): together most of a full sync's time before.

Series are expanded locally, from the master, by ``connectors.ews.series`` (the pattern
and its boundary as a dateutil ``rrule`` in the master's Windows zone, checked against
what the server says of the series). A series that fails a check, has a pattern we do
not know, or a zone exchangelib cannot map (a custom time zone definition) is expanded
by the server instead, here: a ``CalendarView`` over the window, probed with
``FindItem`` alone (ids and item types, no ``GetItem``) and split in halves while a part
is capped (``MaxEntriesReturned``), then ``GetItem`` of the UIDs of the occurrences only
and of the properties of those that belong to such a series. ``expand_locally=False``
takes that path for every series (the behaviour before local expansion, kept to compare
against).

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

Streaming notifications (Subscribe + GetStreamingEvents) are in ``connectors/ews/push.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from exchangelib import (
    CalendarItem,
)
from exchangelib import errors as ews_errors
from exchangelib.items import SEND_TO_ALL_AND_SAVE_COPY, SEND_TO_NONE
from exchangelib.properties import Attendee as EwsAttendee
from exchangelib.properties import Mailbox

from assistant.domain.model import EventData
from connectors.base import (
    CalendarDelta,
    CalendarResource,
    InvalidData,
    OwnEvent,
    Window,
    WrittenEvent,
)
from connectors.ews.account import (
    EWS_UTC,
    MARKER,
    OWN_UID,
    EwsSettings,
    ews_settings,
    open_account,
    register_properties,
    translated,
)
from connectors.ews.items import CalendarRecord, ItemSync, get_items
from connectors.ews.series import (
    NEAR,
    event_from_item,
    ews_time,
    ews_zone,
    expand_series,
    maybe_utc,
    occurrence,
    overlaps,
)
from connectors.ews.settings import EwsCalendarSettings
from connectors.netguard import NetPolicy
from connectors.settings import Resolver

SYNC_PAGE = 512  # the most SyncFolderItems returns at once
VIEW_CAP = 1000  # Exchange's default EWSFindCountLimit
FETCH_CHUNK = 100

_SYNC_FIELDS = ("uid", "type", "start", "end")
_VIEW_FIELDS = ("type",)  # what FindItem returns by itself (no GetItem)
_UID_FIELDS = ("uid", "type")
_EVENT_FIELDS = (
    "uid", "type", "start", "end", "recurrence_id", "original_start", "subject", "location",
    "body", "is_all_day", "is_cancelled", "legacy_free_busy_status", "sensitivity",
    "categories", "organizer", "required_attendees", "optional_attendees",
    "last_modified_name", "_start_timezone", "_end_timezone", MARKER,
)  # fmt: skip
_SERIES_FIELDS = (
    "recurrence", "first_occurrence", "last_occurrence", "modified_occurrences",
    "deleted_occurrences",
)  # fmt: skip
_ITEM_FIELDS = _EVENT_FIELDS + _SERIES_FIELDS  # singles and masters in one GetItem
_WRITTEN_FIELDS = (
    "subject", "body", "start", "end", "is_all_day", "legacy_free_busy_status",
    "required_attendees", MARKER, OWN_UID,
)  # fmt: skip


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
        return self.start < window.end + NEAR and self.end > window.start - NEAR


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
            zone = ews_zone(event.timezone)
            item.subject = event.summary
            item.body = event.description + (f"\n\n{event.url}" if event.url else "")
            item.start = ews_time(event.start, zone)
            item.end = ews_time(event.end, zone)
            item._start_timezone = zone
            item._end_timezone = zone
            item.is_all_day = False
            item.legacy_free_busy_status = "Busy"
            item.required_attendees = [
                EwsAttendee(mailbox=Mailbox(email_address=a.email, name=a.name or None),
                            response_type="Unknown")
                for a in event.attendees
            ] or None  # fmt: skip
            setattr(item, MARKER, event.marker)
            setattr(item, OWN_UID, event.uid)
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
        sync = ItemSync(folder, token or None, _SYNC_FIELDS, self.sync_page)
        for kind, item in sync:
            if kind in ("create", "update") and isinstance(item, CalendarRecord):
                changed[item.id] = _Master(
                    item.id, item.changekey or "", item.uid or "", item.type or "Single",
                    maybe_utc(item.start), maybe_utc(item.end),
                )  # fmt: skip
            elif kind == "delete":
                changed.pop(item.id, None)
                deleted.append(str(item.id))
        folder.item_sync_state = state = sync.state
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
                expansion = expand_series(item, window) if self.expand_locally else None
            except (ValueError, TypeError, AttributeError) as exc:
                skipped.append(f"{master.item_id}: {exc}")
                continue
            if expansion is None:
                by_server[master.uid or master.item_id] = master
                continue
            events[master.item_id] += [
                occurrence(event, original, start, end, window.zone)
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
                events=tuple(sorted((e for e in events[m.item_id] if overlaps(e, window)),
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
                    start=ews_time(start, EWS_UTC), end=ews_time(end, EWS_UTC),
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
        for item in get_items(self._mailbox(), self._calendar(), refs, fields, FETCH_CHUNK):
            if isinstance(item, ews_errors.ErrorItemNotFound):
                continue  # deleted meanwhile: the next sync lists it as deleted
            if isinstance(item, Exception):
                raise item
            yield item

    # -------------------------------------------------------------------- writing

    def _find_own(self, uid: str, fields: Iterable[str] = ("subject",)) -> list[Any]:
        """Our events with ``uid`` (FindItem restricted on our uid property)."""
        query = self._calendar().filter(**{OWN_UID: uid}).only(*fields)
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

    def _errors(self, what: str) -> translated:
        """Translate exchangelib and transport errors into our error tree."""
        return translated(f"EWS {what}")


def open_ews_calendar(
    settings: EwsCalendarSettings, secret: Resolver, timeout: float = 30,
    policy: NetPolicy | None = None,
) -> EwsCalendar:  # fmt: skip
    """An EwsCalendar from an account's settings; ``secret`` resolves secret references."""
    return EwsCalendar(
        ews_settings(settings, secret, policy),
        timeout=timeout,
        zone=settings.zone,
        send_invitations=settings.send_invitations,
    )
