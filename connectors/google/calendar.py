"""A Google Calendar (API v3) calendar, through google-api-python-client.

Every request goes through the real client library (``googleapiclient.discovery.build``
with the discovery document shipped in the package) over an ``httplib2.Http`` with a
timeout, wrapped by ``google_auth_httplib2.AuthorizedHttp``: a 401 is answered by one
token refresh and one retry inside the call; a refresh the token endpoint refuses
(``invalid_grant``) is ``AuthExpired``. Credentials are either an installed app's OAuth
refresh token or a service account with domain-wide delegation acting as the manager.

Sync is ``events.list`` with ``singleEvents=False`` and ``showDeleted=True``: series
masters and their exceptions (moved or cancelled instances, ``recurringEventId`` +
``originalStartTime``) come as they are stored, and the series are expanded over the
window by ``connectors.google.series`` (``recurring-ical-events`` on the master's
RRULE/RDATE/EXDATE lines, then the exceptions applied by original start; the mapping of
an event to ours is there too). One resource per series (href = the master's
id) or per single event (href = its id). The first listing has no token; its
``nextSyncToken`` is our token; a 410 on a token is ``TokenExpired``.

The listing is read page by page: a single event becomes its resource as its page
arrives (the JSON is not kept), series members are grouped once every page is in.

Costs: nothing changed since the token, one request. Something changed, one listing
(paged) plus one ``events.list(iCalUID=...)`` per touched series, which brings the
master and all its exceptions (two requests when only a cancelled exception without
its iCalUID was listed: ``events.get`` of the master first).

Our checkpoint events carry ``extendedProperties.private`` ``{x-exec-assistant-checkpoint:
marker, x-exec-assistant-uid: uid}`` and a client-chosen event id derived from the UID
(base32hex of its SHA-256), so a retried insert answers 409 and becomes an update:
writing the same uid twice leaves one event.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import google.auth.credentials
import google.auth.exceptions
import httplib2
from googleapiclient.errors import HttpError

from assistant.domain.model import EventData, Response
from connectors.base import (
    AuthExpired,
    CalendarDelta,
    CalendarResource,
    ConnectorError,
    InvalidData,
    NotFound,
    OwnEvent,
    PreconditionFailed,
    TokenExpired,
    Transient,
    Window,
    WrittenEvent,
)
from connectors.google.common import (
    SignsIn,
    build_service,
    credentials_for,
    google_error,
)
from connectors.google.series import (
    MARKER_KEY,
    UID_KEY,
    Item,
    Series,
    group_items,
    instant,
    is_cancelled,
    resource_events,
    zone_or_utc,
)
from connectors.google.settings import GoogleCalendarSettings
from connectors.settings import Resolver, parse

SCOPES = ("https://www.googleapis.com/auth/calendar",)
DEFAULT_ROOT = "https://www.googleapis.com/"
MAX_PAGES = 10_000

_TO_GOOGLE = {
    Response.ACCEPTED: "accepted",
    Response.DECLINED: "declined",
    Response.TENTATIVE: "tentative",
}

RequestHook = Callable[[str, str, int], None]


class _Conflict(ConnectorError):
    """409: an event with that id exists already."""


class GoogleCalendar(SignsIn):
    """One Google calendar (``calendar_id``, "primary" by default) seen with ``credentials``.

    ``api_root`` is where the API lives (``https://www.googleapis.com/``; tests point it
    at a local server). ``zone`` is the manager's zone, used by ``get_event`` for all-day
    dates. ``on_request(method, url, status)`` is called for every HTTP response
    received; ``requests`` counts them. ``send_updates`` is the ``sendUpdates`` of our
    writes ("none": attendees of checkpoints are not mailed by Google).
    """

    PRODUCT = "Google"
    SCOPES = SCOPES

    def __init__(
        self,
        credentials: google.auth.credentials.Credentials,
        calendar_id: str = "primary",
        *,
        api_root: str = DEFAULT_ROOT,
        timeout: float = 30,
        zone: str = "UTC",
        page_size: int = 1000,
        send_updates: str = "none",
        on_request: RequestHook | None = None,
    ) -> None:
        self.calendar_id = calendar_id
        self.zone = zone
        self.page_size = page_size
        self.send_updates = send_updates
        self.requests = 0
        self._on_request = on_request
        self._credentials = credentials
        root = api_root if api_root.endswith("/") else api_root + "/"
        self._service, _ = build_service(
            "calendar", "v3", credentials, timeout=timeout, hook=self._count,
            endpoint=root + "calendar/v3/",
        )  # fmt: skip
        self._events = self._service.events()

    def channels(self) -> Any:
        """The API's channels resource (``channels.stop`` of push channels)."""
        return self._service.channels()

    # ------------------------------------------------------------------ factories

    @classmethod
    def from_settings(
        cls,
        settings: Mapping[str, Any] | GoogleCalendarSettings,
        secret: Resolver,
        *,
        timeout: float = 30,
        zone: str = "UTC",
    ) -> GoogleCalendar:
        """From an account's settings (``connectors.google.settings``, a model or the
        stored dict); ``secret`` resolves secret references."""
        conf = settings
        if not isinstance(conf, GoogleCalendarSettings):
            conf = parse(GoogleCalendarSettings, "google", conf, None)
        return cls(
            credentials_for(conf, secret, SCOPES, "Google"), conf.calendar_id,
            api_root=conf.api_root or DEFAULT_ROOT, timeout=timeout, zone=zone,
        )  # fmt: skip

    # ------------------------------------------------------------- CalendarSource

    def changes(self, token: str | None, window: Window) -> CalendarDelta:
        listing = _Listing(self, token)
        # single events become their resources page by page, as grouped by group_items
        # (a later copy replaces an earlier one in its place, a cancelled one removes it):
        # what is kept of each is its resource, why it is skipped, or None (nothing in the
        # window), not its JSON; one whose times name no offset waits for the calendar's
        # zone (the last page's). Series members and cancelled items are grouped at the end.
        singles: dict[str, CalendarResource | str | Item | None] = {}
        others: list[Item] = []
        listed = False
        for item in listing:
            listed = True
            if item.get("recurringEventId") or is_cancelled(item) or item.get("recurrence"):
                others.append(item)
                if not item.get("recurringEventId") and is_cancelled(item):
                    singles.pop(str(item["id"]), None)
                continue
            key = str(item["id"])
            single = item if _needs_zone(item) else None
            singles[key] = single or self._outcome(item["id"], [item], None, window, "", not token)
        next_token, cal_zone = listing.next_token, listing.zone
        if token is not None and not listed:
            return CalendarDelta(full=False, unchanged=True, token=next_token)
        _, series, deleted = group_items(others)
        outcomes = [
            self._outcome(v["id"], [v], None, window, cal_zone, not token)
            if isinstance(v, dict)
            else v
            for v in singles.values()
        ]
        gone: list[str] = []
        for sid, group in series.items():
            if sid in deleted:
                continue
            if token:  # only what changed was listed: read the whole series
                fetched = self._fetch_series(sid, group.ical_uid)
                if fetched is None:
                    gone.append(sid)
                    continue
                group = fetched
            members = [*([group.master] if group.master else []), *group.exceptions.values()]
            if group.master is None and all(is_cancelled(e) for e in members):
                gone.append(sid)
                continue
            outcomes.append(self._outcome(sid, members, group, window, cal_zone, not token))
        return CalendarDelta(
            full=not token,
            resources=tuple(o for o in outcomes if isinstance(o, CalendarResource)),
            deleted=() if not token else tuple(sorted(set(deleted) | set(gone))),
            token=next_token,
            skipped=tuple(o for o in outcomes if isinstance(o, str)),
        )

    # ------------------------------------------------------------- CalendarWriter

    def put_event(self, event: OwnEvent) -> WrittenEvent:
        body = _own_body(event)
        event_id = event_id_for(event.uid)
        cal = self.calendar_id
        try:
            written = self._execute(
                self._events.insert(
                    calendarId=cal, body={"id": event_id, **body}, sendUpdates=self.send_updates
                ),
                f"insert {event_id}",
            )
        except _Conflict:  # written before (perhaps by a retried call), or deleted since
            body.pop("iCalUID")
            written = self._execute(
                self._events.update(
                    calendarId=cal, eventId=event_id, body=body, sendUpdates=self.send_updates
                ),
                f"update {event_id}",
            )
        return WrittenEvent(
            href=str(written.get("id", event_id)), etag=str(written.get("etag", ""))
        )

    def delete_event(self, uid: str) -> bool:
        ids = [event_id_for(uid)]
        found = False
        while ids:
            event_id = ids.pop()
            try:
                self._execute(
                    self._events.delete(
                        calendarId=self.calendar_id, eventId=event_id,
                        sendUpdates=self.send_updates,
                    ),
                    f"delete {event_id}",
                )  # fmt: skip
                found = True
            except NotFound:
                if not found and event_id == event_id_for(uid):
                    ids.extend(str(i["id"]) for i in self._find(uid))
        return found

    def get_event(self, uid: str) -> EventData | None:
        item = self._get(event_id_for(uid))
        if item is None or is_cancelled(item):
            item = next(iter(self._find(uid)), None)
        if item is None:
            return None
        start = instant(item.get("start") or {}, self.zone, ZoneInfo(zone_or_utc(self.zone)))
        around = Window(start - timedelta(days=1), start + timedelta(days=2), self.zone)
        group = Series(master=item) if item.get("recurrence") else None
        events = resource_events(str(item["id"]), [item], group, around, self.zone)
        return events[0] if events else None

    # ----------------------------------------------------------------- requests

    def _fetch_series(self, sid: str, ical_uid: str) -> Series | None:
        """The master of ``sid`` and all its exceptions, or None when the series is gone."""
        if not ical_uid:
            master = self._get(sid)
            if master is None or is_cancelled(master):
                return None
            ical_uid = str(master.get("iCalUID", ""))
            if not ical_uid:
                return Series(master=master)
        items: list[Item] = []
        page: str | None = None
        for _ in range(MAX_PAGES):
            reply = self._execute(
                self._events.list(
                    calendarId=self.calendar_id, iCalUID=ical_uid, singleEvents=False,
                    showDeleted=True, maxResults=self.page_size, pageToken=page,
                ),
                f"events.list iCalUID={ical_uid}",
            )  # fmt: skip
            items.extend(i for i in reply.get("items", ()) if isinstance(i, dict) and i.get("id"))
            page = reply.get("nextPageToken")
            if not page:
                break
        related = (i for i in items if sid in (i["id"], i.get("recurringEventId")))
        _, series, deleted = group_items(related)
        if sid in deleted:
            return None
        group = series.get(sid)
        if group is None or (group.master is None and not group.exceptions):
            return None
        return group

    def _get(self, event_id: str) -> Item | None:
        try:
            item = self._execute(
                self._events.get(calendarId=self.calendar_id, eventId=event_id),
                f"get {event_id}",
            )
        except NotFound:
            return None
        return item if isinstance(item, dict) else None

    def _find(self, uid: str) -> list[Item]:
        """Our events holding ``uid`` wherever they are (one request)."""
        reply = self._execute(
            self._events.list(
                calendarId=self.calendar_id, privateExtendedProperty=f"{UID_KEY}={uid}",
                singleEvents=False, showDeleted=False, maxResults=10,
            ),
            "events.list by uid",
        )  # fmt: skip
        return [i for i in reply.get("items", ()) if i.get("id") and not is_cancelled(i)]

    def _execute(self, request: Any, what: str, *, gone: type[ConnectorError] = NotFound) -> Any:
        """Run one request; every failure becomes an error of our tree."""
        try:
            return request.execute(num_retries=0)
        except HttpError as exc:
            raise _translate(exc, what, gone) from None
        except google.auth.exceptions.RefreshError as exc:
            if getattr(exc, "retryable", False):
                raise Transient(f"Google {what}: token refresh failed, try again") from None
            raise AuthExpired(f"Google {what}: the token refresh was refused") from None
        except google.auth.exceptions.TransportError:
            raise Transient(f"Google {what}: the token endpoint could not be reached") from None
        except TimeoutError:
            raise Transient(f"Google {what}: timed out") from None
        except (httplib2.HttpLib2Error, http.client.HTTPException, OSError) as exc:
            raise Transient(f"Google {what}: {type(exc).__name__}") from None
        except ValueError:  # a body that is not JSON
            raise InvalidData(f"Google {what}: malformed reply") from None

    def _count(self, method: str, uri: str, status: int) -> None:
        self.requests += 1
        if self._on_request is not None:
            self._on_request(method, uri, status)

    def _outcome(
        self,
        href: str,
        members: list[Item],
        group: Series | None,
        window: Window,
        cal_zone: str,
        full: bool,
    ) -> CalendarResource | str | None:
        """The resource of a single event or a series, why it is skipped, or None (a full
        listing leaves out what has nothing in the window)."""
        try:
            events = resource_events(href, members, group, window, cal_zone)
        except InvalidData as exc:
            return f"{href}: {exc}"
        if full and not events:
            return None  # nothing of it in the window: a full listing may leave it out
        etag = hashlib.sha256(
            "\n".join(sorted(f"{m['id']}\t{m.get('etag', '')}" for m in members)).encode()
        ).hexdigest()[:32]
        return CalendarResource(href=href, etag=etag, events=tuple(events))


class _Listing:
    """All pages of one events.list (``singleEvents=False``, ``showDeleted=True``) from
    ``token``, fetched as they are iterated: its items, one page in memory at a time; then
    ``next_token`` (nextSyncToken) and ``zone`` (the calendar's, from the last page)."""

    def __init__(self, calendar: GoogleCalendar, token: str | None) -> None:
        self.calendar = calendar
        self.token = token
        self.next_token: str | None = None
        self.zone = ""

    def __iter__(self) -> Iterator[Item]:
        cal, token = self.calendar, self.token
        page: str | None = None
        for _ in range(MAX_PAGES):
            reply = cal._execute(
                cal._events.list(
                    calendarId=cal.calendar_id, singleEvents=False, showDeleted=True,
                    maxResults=cal.page_size, syncToken=token, pageToken=page,
                ),
                "events.list",
                gone=TokenExpired if token else NotFound,
            )  # fmt: skip
            yield from (i for i in reply.get("items", ()) if isinstance(i, dict) and i.get("id"))
            page = reply.get("nextPageToken")
            if not page:
                self.next_token = reply.get("nextSyncToken")
                self.zone = str(reply.get("timeZone") or "")
                return
        raise ConnectorError(f"Google events.list: more than {MAX_PAGES} pages")


def _needs_zone(item: Mapping[str, Any]) -> bool:
    """Whether a single event's times depend on the calendar's zone (a dateTime without
    an offset; one that does not parse is counted in, to be read as before)."""
    for key in ("start", "end"):
        value = item.get(key)
        if isinstance(value, Mapping) and "dateTime" in value:
            try:
                if datetime.fromisoformat(str(value["dateTime"])).tzinfo is not None:
                    continue
            except ValueError:
                pass
            return True
    return False


# ------------------------------------------------------------------------ write


def event_id_for(uid: str) -> str:
    """Our event id for ``uid``: base32hex (Google's id alphabet) of its SHA-256."""
    digest = hashlib.sha256(uid.encode("utf-8")).digest()
    return base64.b32hexencode(digest).decode("ascii").rstrip("=").lower()


def _own_body(event: OwnEvent) -> dict[str, Any]:
    if event.start.tzinfo is None or event.end.tzinfo is None:
        raise ValueError("checkpoint times must be aware datetimes")
    tz_name = zone_or_utc(event.timezone)
    zone = ZoneInfo(tz_name)
    body: dict[str, Any] = {
        "iCalUID": event.uid,
        "summary": event.summary,
        "description": event.description,
        "start": {
            "dateTime": event.start.astimezone(zone).replace(microsecond=0).isoformat(),
            "timeZone": tz_name,
        },
        "end": {
            "dateTime": event.end.astimezone(zone).replace(microsecond=0).isoformat(),
            "timeZone": tz_name,
        },
        "status": "confirmed",
        "transparency": "opaque",
        "extendedProperties": {"private": {MARKER_KEY: event.marker, UID_KEY: event.uid}},
    }
    if event.attendees:
        body["attendees"] = [
            {
                "email": a.email,
                **({"displayName": a.name} if a.name else {}),
                "optional": not a.required,
                "responseStatus": _TO_GOOGLE.get(a.response, "needsAction"),
            }
            for a in event.attendees
        ]
    if event.url:
        body["source"] = {"title": "exec-assistant", "url": event.url}
    return body


# ----------------------------------------------------------------------- errors


def _translate(exc: HttpError, what: str, gone: type[ConnectorError]) -> ConnectorError:
    """The error of our tree that a Google Calendar error reply stands for."""
    return google_error(exc, f"Google {what}", {
        404: lambda where, _: NotFound(f"{where}: not found"),
        409: lambda where, _: _Conflict(f"{where}: already exists"),
        410: lambda where, reason: gone(f"{where}: gone ({reason or 410})"),
        412: lambda where, _: PreconditionFailed(f"{where}: precondition failed"),
    })  # fmt: skip
