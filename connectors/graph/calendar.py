"""A Microsoft 365 calendar through Microsoft Graph: calendarView delta in, checkpoints out.

Why a thin httpx client with msal, not msgraph-sdk: the SDK is async-first (kiota,
``asyncio`` request adapters, generated models for every entity of Graph) and hides
paging and delta behind iterators and its own retry middleware. We need four calls,
synchronous like the rest of our connectors, with paging, the delta link, retries and
error translation in plain view so that each sync costs a known number of requests.
msal does the one thing worth a library: OAuth against Entra ID (client credentials
for app-only access, refresh tokens for delegated access, token caching).

Reading: ``GET /users/{id}/calendarView/delta?startDateTime&endDateTime`` with
``Prefer: odata.maxpagesize`` and ``outlook.timezone="UTC"``; every ``@odata.nextLink``
is followed and the final ``@odata.deltaLink`` is our change token. Each page is
converted to resources as it arrives and then dropped (``DeltaPages``), so a full sync
holds one page of Graph JSON at a time, not every page. calendarView delta
lists instances (single events, occurrences and exceptions of a series; never the
series master) and reports removed ones as ``{"id": ..., "@removed": {...}}``, so one
resource here is one instance: ``href`` is the instance's id. (A resource per series
would need the series' other occurrences, and the ``@removed`` entry of an occurrence
names only the occurrence.) Occurrences carry the series' ``iCalUId`` as ``uid``
(Exchange's global object id with the instance date cleared) and ``originalStart`` in
UTC as ``recurrence_id``. A token Graph no longer knows (410 ``syncStateNotFound`` /
``resyncRequired``) raises TokenExpired.

Writing: our checkpoint events carry two single-value extended properties (our uid and
our marker) and a ``transactionId``; ``put_event`` first looks the uid up with
``$filter`` on the property, so a retried write updates instead of duplicating.
calendarView delta cannot ``$expand`` extended properties, so during a sync an event
whose ``transactionId`` is ours is read once more with them.

Errors (the request loop of ``connectors.graph.client``, shared with the mailbox, push
and mail sender): 401 refreshes the access token once and repeats the request (still
refused: AuthExpired); 429, and 503 with Retry-After: RateLimited; other 5xx and
transport errors on idempotent requests are retried ``retries`` times with exponential
backoff, then Transient; timeouts: Transient at once; 404: NotFound.

Change-notification subscriptions (webhooks) are in ``connectors/graph/push.py``.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Unpack
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from assistant.domain.model import Attendee, EventData, EventStatus, Response
from connectors.base import (
    CalendarDelta,
    CalendarResource,
    InvalidData,
    OwnEvent,
    TokenExpired,
    Window,
    WrittenEvent,
)
from connectors.graph.client import (
    DeltaPages,
    GraphConnection,
    GraphOptions,
    fail,
    graph_send,
    odata_literal,
    parse_time,
)

PROPERTY_SET = "{8f0c6a52-3d1e-4b7a-9c55-2e6a1f0b9d41}"
UID_PROPERTY = f"String {PROPERTY_SET} Name x-exec-assistant-uid"
MARKER_PROPERTY = f"String {PROPERTY_SET} Name x-exec-assistant-checkpoint"
TRANSACTION_PREFIX = "exec-assistant-"
# Exchange's global object id: a class id, then the instance date (zero in the master).
_GOID_CLASS = "040000008200E00074C5B7101A82E008"
_RESPONSES = {
    "accepted": Response.ACCEPTED,
    "organizer": Response.ACCEPTED,
    "declined": Response.DECLINED,
    "tentativelyaccepted": Response.TENTATIVE,
}
_TAG = re.compile(r"<[^>]+>")
_IANA_TO_WINDOWS: dict[str, str] = {}
for _windows_name, _iana_name in WINDOWS_TO_OLSON.items():
    _IANA_TO_WINDOWS.setdefault(_iana_name, _windows_name)


class GraphCalendar(GraphConnection):
    """The default calendar of ``user`` (an id or user principal name) in Microsoft 365.

    Access and options as for every Graph connection (``GraphConnection``: application
    permission Calendars.ReadWrite, or a delegated refresh token). ``zone`` is the
    manager's zone (all-day events' midnights); ``page_size`` the delta's page size.
    """

    def __init__(
        self, user: str, *, zone: str = "UTC", page_size: int = 100,
        **connection: Unpack[GraphOptions],
    ) -> None:  # fmt: skip
        super().__init__(user, **connection)
        self.zone = zone
        self.page_size = page_size

    # ------------------------------------------------------------- CalendarSource

    def changes(self, token: str | None, window: Window) -> CalendarDelta:
        url = f"{self._user_url}/calendarView/delta"
        params: dict[str, str] | None = {
            "startDateTime": _iso(window.start),
            "endDateTime": _iso(window.end),
        }
        if token:
            if not token.startswith(url + "?"):
                raise TokenExpired("the stored delta link is for another calendar or endpoint")
            url, params = token, None
        pages = DeltaPages(
            lambda u, p: self._json(self._get(u, p, delta=True), "calendarView delta"),
            url, params, "calendarView delta",
        )  # fmt: skip
        # each page is converted as it comes and then dropped: what is kept of an instance
        # is its resource, or None (removed), or why it is skipped ("" for a series master,
        # not a resource of ours); a later page overrides an earlier one
        found: dict[str, CalendarResource | str | None] = {}
        masters: dict[str, str] = {}
        for key, item in pages:
            found.pop(key, None)
            found[key] = None if item is None else self._resource(key, item, window, masters)
        if token and not found:
            return CalendarDelta(full=False, unchanged=True, token=pages.link)
        resources = [r for r in found.values() if isinstance(r, CalendarResource)]
        skipped = [r for r in found.values() if isinstance(r, str) and r]
        deleted = tuple(k for k, v in found.items() if v is None) if token else ()
        return CalendarDelta(
            full=not token,
            resources=tuple(resources),
            deleted=deleted,
            token=pages.link,
            skipped=tuple(skipped),
        )

    def _resource(
        self, key: str, item: Mapping[str, Any], window: Window, masters: dict[str, str]
    ) -> CalendarResource | str:
        """One listed instance's resource, or why it is skipped ("": a series master)."""
        if item.get("type") == "seriesMaster":
            return ""
        try:
            own = self._own_properties(item)
            event = self._event(item, window.zone, masters, own)
        except InvalidData as exc:
            return f"{key}: {exc}"
        return CalendarResource(href=key, etag=_etag(item), events=(event,))

    # ------------------------------------------------------------- CalendarWriter

    def put_event(self, event: OwnEvent) -> WrittenEvent:
        body = _own_body(event)
        found = self._find_own(event.uid)
        for index, item in enumerate(found):
            reply = self._send("PATCH", self._event_url(str(item["id"])), json_body=body)
            if reply.status_code == 404:
                continue  # deleted meanwhile: try the next one, or write it anew
            if not reply.is_success:
                fail(reply, "update event")
            for extra in found[index + 1 :]:  # duplicates (none unless written elsewhere)
                self._delete(str(extra["id"]))
            written = self._json(reply, "update event")
            return WrittenEvent(href=str(written.get("id", item["id"])), etag=_etag(written))
        body["transactionId"] = TRANSACTION_PREFIX + hashlib.sha256(event.uid.encode()).hexdigest()
        reply = self._send("POST", f"{self._user_url}/events", json_body=body, idempotent=False)
        if not reply.is_success:
            fail(reply, "create event")
        written = self._json(reply, "create event")
        return WrittenEvent(href=str(written.get("id", "")), etag=_etag(written))

    def delete_event(self, uid: str) -> bool:
        found = self._find_own(uid)
        for item in found:
            self._delete(str(item["id"]))
        return bool(found)

    def get_event(self, uid: str) -> EventData | None:
        found = self._find_own(uid)
        if not found:
            found = self._find(f"iCalUId eq {odata_literal(uid)}", expand=False)
        for item in found:
            if item.get("type") == "seriesMaster":
                continue
            return self._event(item, self.zone, {}, _own_from(item))
        return None

    # ------------------------------------------------------------------- helpers

    def _find_own(self, uid: str) -> list[dict[str, Any]]:
        """Our events holding ``uid`` (more than one only if a write was duplicated)."""
        found = self._find(
            "singleValueExtendedProperties/Any(ep: ep/id eq "
            f"{odata_literal(UID_PROPERTY)} and ep/value eq {odata_literal(uid)})",
            expand=True,
        )
        return [item for item in found if _own_from(item)[0] == uid]

    def _find(self, odata_filter: str, *, expand: bool) -> list[dict[str, Any]]:
        params = {"$filter": odata_filter}
        if expand:
            params["$expand"] = _EXPAND
        page = self._json(self._get(f"{self._user_url}/events", params), "find events")
        return [item for item in page.get("value") or [] if isinstance(item, dict)]

    def _own_properties(self, item: Mapping[str, Any]) -> tuple[str, str] | None:
        """(our uid, our marker) of an event we wrote, read with its extended properties."""
        if not str(item.get("transactionId") or "").startswith(TRANSACTION_PREFIX):
            return None
        url = self._event_url(str(item["id"]))
        reply = self._get(url, {"$select": "id", "$expand": _EXPAND})
        if reply.status_code == 404:
            return None
        return _own_from(self._json(reply, "read event"))

    def _series_uid(self, item: Mapping[str, Any], masters: dict[str, str]) -> str:
        uid = str(item.get("iCalUId") or "")
        master = str(item.get("seriesMasterId") or "")
        if not master or item.get("type") not in ("occurrence", "exception"):
            return uid or str(item.get("id"))
        if uid.upper().startswith(_GOID_CLASS) and len(uid) >= 40:
            return uid[:32] + "00000000" + uid[40:]
        if master not in masters:
            reply = self._get(self._event_url(master), {"$select": "iCalUId"})
            masters[master] = str(self._json(reply, "read series").get("iCalUId") or master)
        return masters[master]

    def _event(
        self,
        item: Mapping[str, Any],
        zone: str,
        masters: dict[str, str],
        own: tuple[str, str] | None,
    ) -> EventData:
        try:
            return _event_data(item, zone, self._series_uid(item, masters), own, self.user)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidData(f"bad Graph event ({type(exc).__name__}: {exc})") from None

    def _delete(self, event_id: str) -> None:
        reply = self._send("DELETE", self._event_url(event_id))
        if not reply.is_success and reply.status_code != 404:
            fail(reply, "delete event")

    def _event_url(self, event_id: str) -> str:
        return f"{self._user_url}/events/{quote(event_id, safe='')}"

    def _get(
        self, url: str, params: Mapping[str, str] | None, delta: bool = False
    ) -> httpx.Response:
        reply = self._send("GET", url, params=params)
        if not reply.is_success:
            fail(reply, "calendarView delta" if delta else "GET", delta=delta)
        return reply

    def _json(self, reply: httpx.Response, what: str) -> dict[str, Any]:
        try:
            data = reply.json()
        except ValueError:
            raise InvalidData(f"Graph {what}: the reply is not JSON") from None
        if not isinstance(data, dict):
            raise InvalidData(f"Graph {what}: the reply is not a JSON object")
        return data

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """One request: a refused token is renewed once; 5xx retried when idempotent."""
        prefer = f'odata.maxpagesize={self.page_size}, outlook.timezone="UTC"'
        return graph_send(self, method, url, prefer=prefer, params=params,
                          json_body=json_body, idempotent=idempotent)  # fmt: skip


# ------------------------------------------------------------------------ mapping


def _event_data(
    item: Mapping[str, Any], zone: str, uid: str, own: tuple[str, str] | None, user: str
) -> EventData:
    all_day = bool(item.get("isAllDay"))
    original_zone = _iana(str(item.get("originalStartTimeZone") or ""))
    start_date = end_date = None
    if all_day:
        start_date = _local(item["start"]).date()
        end_date = _local(item["end"]).date()
        if end_date <= start_date:
            end_date = start_date + timedelta(days=1)
        tz = _zone(zone)
        start = datetime.combine(start_date, datetime.min.time(), tz).astimezone(UTC)
        end = datetime.combine(end_date, datetime.min.time(), tz).astimezone(UTC)
    else:
        start = _local(item["start"]).astimezone(UTC)
        end = max(start, _local(item["end"]).astimezone(UTC))
    recurrence_id = ""
    if item.get("type") in ("occurrence", "exception"):
        original = item.get("originalStart")
        when = parse_time(str(original)).astimezone(UTC) if original else start
        if all_day:
            local_zone = _zone(original_zone or zone)
            recurrence_id = when.astimezone(local_zone).strftime("%Y%m%d")
        else:
            recurrence_id = when.strftime("%Y%m%dT%H%M%SZ")
    organizer = _address(item.get("organizer"))
    attendees = [_attendee(a) for a in item.get("attendees") or [] if isinstance(a, dict)]
    mine = _RESPONSES.get(str((item.get("responseStatus") or {}).get("response", "")).lower())
    if mine is not None and "@" in user and organizer.lower() != user.lower():
        me = user.lower()
        if any(a.email.lower() == me for a in attendees):
            attendees = [
                Attendee(a.email, a.name, mine, a.required) if a.email.lower() == me else a
                for a in attendees
            ]
        else:
            attendees.append(Attendee(user, "", mine))
    meeting = item.get("onlineMeeting") or {}
    own_uid, own_marker = own or ("", "")
    return EventData(
        uid=own_uid or uid,
        recurrence_id=recurrence_id,
        start=start,
        end=end,
        summary=str(item.get("subject") or ""),
        timezone="" if all_day else original_zone,
        all_day=all_day,
        start_date=start_date,
        end_date=end_date,
        status=EventStatus.CANCELLED if item.get("isCancelled") else EventStatus.CONFIRMED,
        location=str((item.get("location") or {}).get("displayName") or ""),
        description=_body_text(item.get("body")),
        organizer=organizer,
        attendees=tuple(attendees),
        busy=str(item.get("showAs") or "busy") not in ("free", "workingElsewhere"),
        private=str(item.get("sensitivity") or "") in ("private", "confidential"),
        online_meeting_url=str(meeting.get("joinUrl") or item.get("onlineMeetingUrl") or ""),
        categories=tuple(str(c) for c in item.get("categories") or ()),
        own_marker=own_marker,
        href=str(item.get("id") or ""),
    )


def _own_body(event: OwnEvent) -> dict[str, Any]:
    text = event.description + (f"\n\n{event.url}" if event.url else "")
    return {
        "subject": event.summary,
        "body": {"contentType": "text", "content": text},
        "start": _wall(event.start, event.timezone),
        "end": _wall(event.end, event.timezone),
        "showAs": "busy",
        "isReminderOn": True,
        "attendees": [
            {
                "emailAddress": {"address": a.email, "name": a.name},
                "type": "required" if a.required else "optional",
            }
            for a in event.attendees
        ],
        "singleValueExtendedProperties": [
            {"id": UID_PROPERTY, "value": event.uid},
            {"id": MARKER_PROPERTY, "value": event.marker},
        ],
    }


def _own_from(item: Mapping[str, Any]) -> tuple[str, str]:
    values: dict[str, str] = {}
    for prop in item.get("singleValueExtendedProperties") or []:
        if isinstance(prop, dict):
            values[str(prop.get("id", "")).lower()] = str(prop.get("value") or "")
    return values.get(UID_PROPERTY.lower(), ""), values.get(MARKER_PROPERTY.lower(), "")


def _wall(value: datetime, zone: str) -> dict[str, str]:
    """A Graph dateTimeTimeZone: wall time in the event's zone, named the Windows way."""
    tz = _zone(zone or "UTC")
    local = value.astimezone(tz).replace(tzinfo=None)
    name = "UTC" if zone in ("", "UTC", "Etc/UTC") else _IANA_TO_WINDOWS.get(zone, zone)
    return {"dateTime": local.isoformat(timespec="seconds"), "timeZone": name}


def _local(value: Mapping[str, Any]) -> datetime:
    """A Graph dateTimeTimeZone as an aware datetime."""
    parsed = parse_time(str(value["dateTime"]))
    if parsed.tzinfo is not None:
        return parsed
    return parsed.replace(tzinfo=_zone(_iana(str(value.get("timeZone") or "UTC")) or "UTC"))


def _iana(name: str) -> str:
    """The IANA name of a Graph zone name (Windows or IANA; "" when unknown)."""
    if not name:
        return ""
    if name in ("UTC", "tzone://Microsoft/Utc", "Etc/UTC", "GMT"):
        return "UTC"
    key = WINDOWS_TO_OLSON.get(name, name)
    if key in ("Etc/UTC", "Etc/GMT"):
        return "UTC"
    try:
        ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        return ""
    return key


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidData(f"unknown time zone {name!r}") from None


def _address(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    return str((value.get("emailAddress") or {}).get("address") or "")


def _attendee(value: Mapping[str, Any]) -> Attendee:
    email = value.get("emailAddress") or {}
    answer = str((value.get("status") or {}).get("response") or "").lower()
    return Attendee(
        email=str(email.get("address") or ""),
        name=str(email.get("name") or ""),
        response=_RESPONSES.get(answer, Response.NEEDS_ACTION),
        required=str(value.get("type") or "required") == "required",
    )


def _body_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    content = str(body.get("content") or "")
    if str(body.get("contentType") or "").lower() == "html":
        content = html.unescape(_TAG.sub(" ", content))
        content = re.sub(r"[ \t]+", " ", content)
    return content.strip()


def _etag(item: Mapping[str, Any]) -> str:
    return str(item.get("@odata.etag") or item.get("changeKey") or "")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_EXPAND = (
    f"singleValueExtendedProperties($filter=id eq {odata_literal(UID_PROPERTY)}"
    f" or id eq {odata_literal(MARKER_PROPERTY)})"
)
