"""A calendar collection on a CalDAV server (RFC 4791), synced with sync-collection (RFC 6578).

Requests are sent through the caldav library's ``DAVClient`` (it negotiates basic,
digest or bearer auth); the REPORT bodies are built and the multistatus replies read
in ``connectors.caldav.webdav``, so that every sync costs a known number of requests:

* nothing changed since ``token``: one sync-collection REPORT;
* something changed: one sync-collection REPORT that also asks for calendar-data.
  Servers that return the data inline (Radicale, SabreDAV) need nothing more; for
  the others the changed hrefs are fetched with one calendar-multiget per 1,000;
* ``token=None``: one PROPFIND for the collection's current ``DAV:sync-token``, then one
  calendar-query REPORT for every event with its data. The token is read first, so
  whatever changes between the two requests is reported again by the next sync (the
  caller compares content, nothing is announced twice) and nothing is missed. A server
  that has no token property, or refuses so large a query (Radicale refuses a REPORT
  with more than 10,000 VEVENTs), is read the RFC 6578 way: one sync-collection REPORT
  with an empty token for hrefs and etags, then one calendar-multiget per 1,000
  resources (a refused multiget is halved). Against Radicale the two requests cost
  about 40% of the server time of the sync-collection way (its empty-token sync
  builds the token's state item by item).

A server without sync-collection (the REPORT is refused: 403 supported-report, 400,
405, 415, 422, 501) is listed with calendar-query instead, and its token is
``"exec-assistant-etags:" + sha256(href→etag map)``: when nothing changed a sync costs
one calendar-query for the etags; when anything changed the whole calendar is fetched
by multiget and comes back with ``full=True`` (the caller compares content hashes, so
nothing is announced twice).

Hrefs are the server's paths, percent-decoded; ``WrittenEvent.href`` uses the same form.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from caldav.davclient import DAVClient

from assistant.domain.model import EventData
from connectors.base import (
    DEFAULT_LIMITS,
    CalendarDelta,
    CalendarResource,
    ConnectorError,
    InvalidData,
    OwnEvent,
    ParseLimits,
    TokenExpired,
    Window,
    WrittenEvent,
)
from connectors.caldav.webdav import (
    CALDAV,
    DAV,
    PROPFIND_SYNC_STATE,
    Entry,
    Reply,
    Streamed,
    ahead,
    dav_path,
    fail,
    multiget_body,
    multistatus,
    query_body,
    send,
    status_code,
    streamed,
    sync_body,
)
from connectors.ics.ical import own_event_to_ical, parse_resource
from connectors.netguard import NetPolicy, guarded_session, operator_policy

ETAGS_PREFIX = "exec-assistant-etags:"
MULTIGET_CHUNK = 1000
MAX_SYNC_PAGES = 1000
_UNSUPPORTED_REPORT = frozenset({400, 405, 415, 422, 501})
_TOO_LARGE = frozenset({400, 413, 507})
_VALID_SYNC_TOKEN = f"{{{DAV}}}valid-sync-token"
_SUPPORTED_REPORT = f"{{{DAV}}}supported-report"
_NO_UID_CONFLICT = f"{{{CALDAV}}}no-uid-conflict"
_UID_LINE = re.compile(r"^UID(?:;[^:\r\n]*)?:(.*)$", re.MULTILINE | re.IGNORECASE)
_VTIMEZONE = re.compile(r"^BEGIN:VTIMEZONE.*?^END:VTIMEZONE", re.MULTILINE | re.DOTALL)
_DTSTART_DATE = re.compile(r"^DTSTART[^:\r\n]*:(\d{8})", re.MULTILINE)

RequestHook = Callable[[str, str, int], None]


class _SyncUnsupported(ConnectorError):
    """The server refused the sync-collection REPORT itself."""


class CalDavCalendar:
    """One calendar collection at ``url`` (e.g. ``https://host/dav/alex/work/``).

    ``zone`` is the manager's zone, used by ``get_event`` for floating times and
    all-day dates. ``on_request(method, url, status)`` is called for every HTTP
    response received (auth retries included); ``requests`` counts them.
    ``inline_data=False`` never asks for calendar-data in sync-collection (always
    multiget), for servers that mishandle it.
    """

    def __init__(
        self,
        url: str,
        username: str = "",
        password: str = "",
        timeout: float = 30,
        verify: bool = True,
        *,
        zone: str = "UTC",
        inline_data: bool = True,
        on_request: RequestHook | None = None,
        policy: NetPolicy | None = None,
        limits: ParseLimits = DEFAULT_LIMITS,
    ) -> None:
        self.policy = policy or operator_policy()
        self._limits = limits
        self.url = url if url.endswith("/") else url + "/"
        self.path = dav_path(self.url)
        self.zone = zone
        self.inline_data = inline_data
        self.requests = 0
        self._on_request = on_request
        self._client = DAVClient(
            url=self.url,
            username=username or None,
            password=password if username else None,
            timeout=timeout,  # type: ignore[arg-type]  # floats are fine for niquests
            ssl_verify_cert=verify,
            enable_rfc6764=False,
            rate_limit_handle=False,
        )
        # a session that connects only where the policy allows, and bounds what it reads
        self._client.session.close()
        self._client.session = guarded_session(self.policy)
        self._client.session.hooks["response"].append(self._count)

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------- CalendarSource

    def changes(self, token: str | None, window: Window) -> CalendarDelta:
        if token is not None and token.startswith(ETAGS_PREFIX):
            return self._changes_by_etags(token, window)
        if not token:
            everything = self._full_by_query(window)
            if everything is not None:
                return everything
        try:
            new_token, entries = self._sync(token or "", with_data=bool(token) and self.inline_data)
        except _SyncUnsupported:
            if token:
                raise TokenExpired("the server no longer answers sync-collection") from None
            return self._changes_by_etags(None, window)
        present = [e for e in entries if e.status != 404]
        deleted = [e.href for e in entries if e.status == 404]
        if token and not present and not deleted:
            return CalendarDelta(full=False, unchanged=True, token=new_token)
        resources, skipped, vanished = self._resources(present, window)
        return CalendarDelta(
            full=not token,
            resources=tuple(resources),
            deleted=() if not token else tuple(deleted + vanished),
            token=new_token,
            skipped=tuple(skipped),
        )

    # ------------------------------------------------------------- CalendarWriter

    def put_event(self, event: OwnEvent) -> WrittenEvent:
        body = own_event_to_ical(event)
        href = self._href_for(event.uid)
        reply = self._put(href, body)
        # RFC 4791 says 403 or 409; Xandikos answers 412 with the same precondition.
        if reply.status in (403, 409, 412) and _NO_UID_CONFLICT in reply.preconditions:
            found = self._find_by_uid(event.uid)  # the user's client moved it: replace there
            if not found:
                fail(reply, f"PUT {href}")
            href = found[0].href
            reply = self._put(href, body)
        if not 200 <= reply.status < 300:
            fail(reply, f"PUT {href}")
        return WrittenEvent(href=href, etag=reply.headers.get("ETag", ""))

    def delete_event(self, uid: str) -> bool:
        hrefs = [self._href_for(uid)]
        reply = self._send("DELETE", hrefs[0])
        if reply.status == 404:
            hrefs = [e.href for e in self._find_by_uid(uid)]
            if not hrefs:
                return False
            for href in hrefs:
                reply = self._send("DELETE", href)
                if not 200 <= reply.status < 300 and reply.status != 404:
                    fail(reply, f"DELETE {href}")
            return True
        if not 200 <= reply.status < 300:
            fail(reply, f"DELETE {hrefs[0]}")
        return True

    def get_event(self, uid: str) -> EventData | None:
        found = [e for e in self._multiget([self._href_for(uid)]) if e.data is not None]
        if not found:
            found = self._find_by_uid(uid)
        for entry in found:
            assert entry.data is not None
            resource = parse_resource(
                entry.href, entry.etag, entry.data, self._around(entry.data), limits=self._limits
            )
            events = [e for e in resource.events if e.uid == uid]
            if events:
                return next((e for e in events if not e.recurrence_id), events[0])
        return None

    # ----------------------------------------------------------------------- sync

    def _sync(self, token: str, with_data: bool) -> tuple[str, list[Entry]]:
        """All pages of one sync-collection; later pages override earlier entries.

        A reply with data that is too large for the server (Radicale refuses more than
        10,000 VEVENTs in one REPORT) is asked again without data.
        """
        entries: dict[str, Entry] = {}
        current = token
        pages = 0
        while pages < MAX_SYNC_PAGES:
            reply = self._report(sync_body(current, with_data), depth=0)
            if with_data and reply.status in _TOO_LARGE:
                with_data = False
                continue
            pages += 1
            if reply.status == 403 and _VALID_SYNC_TOKEN in reply.preconditions:
                raise TokenExpired("the server no longer knows the sync token")
            if not token and (
                reply.status in _UNSUPPORTED_REPORT
                or (reply.status == 403 and _SUPPORTED_REPORT in reply.preconditions)
            ):
                raise _SyncUnsupported(f"sync-collection refused ({reply.status})")
            if token and (reply.status in (409, 412) or _VALID_SYNC_TOKEN in reply.preconditions):
                raise TokenExpired(f"the server refused the sync token ({reply.status})")
            if reply.status != 207:
                fail(reply, f"sync-collection on {self.path}")
            page, new_token, truncated = multistatus(reply.tree, self.path)
            if new_token is None:
                if token:
                    raise TokenExpired("the server sent no sync token")
                raise _SyncUnsupported("the server sent no sync token")
            for entry in page:
                entries[entry.href] = entry
            current = new_token
            if not truncated:
                break
        return current, list(entries.values())

    def _full_by_query(self, window: Window) -> CalendarDelta | None:
        """The current sync token, then every event in one calendar-query; None when the
        server has no token property or refuses the query (sync-collection decides).

        The query's reply is read as it streams in: each resource is parsed as soon as
        its ``DAV:response`` is complete, and its XML and text are dropped then, so the
        parsing overlaps the transfer and a large calendar is never held twice.
        """
        token = self._current_token()
        if token is None:
            return None
        with self._report_streamed(query_body(True, ""), depth=1) as reply:
            if reply.reply.status != 207:
                return None  # too large, or refused: the sync-collection way names any error
            entries: dict[str, Entry] = {}
            parsed: dict[str, CalendarResource | str] = {}
            for entry in reply.entries(self.path):
                if entry.status == 404:
                    continue
                entries[entry.href] = entry
                if entry.data is not None:
                    parsed[entry.href] = _parse(entry, window, self._limits)
                    entry.data = ""  # parsed: the text is not needed any more
                else:
                    parsed.pop(entry.href, None)
        resources, skipped, _ = self._resources(list(entries.values()), window, parsed)
        return CalendarDelta(
            full=True, resources=tuple(resources), token=token, skipped=tuple(skipped)
        )

    def _current_token(self) -> str | None:
        """The collection's ``DAV:sync-token`` property (RFC 6578 §4), or None."""
        reply = self._send(
            "PROPFIND",
            self.path,
            PROPFIND_SYNC_STATE,
            {"Depth": "0", "Content-Type": 'application/xml; charset="utf-8"'},
        )
        if reply.status != 207 or reply.tree is None:
            return None
        for response in reply.tree.iterfind(f"{{{DAV}}}response"):
            for propstat in response.iterfind(f"{{{DAV}}}propstat"):
                if status_code(propstat.findtext(f"{{{DAV}}}status")) != 200:
                    continue
                found = propstat.findtext(f"{{{DAV}}}prop/{{{DAV}}}sync-token")
                if found and found.strip():
                    return str(found).strip()
        return None

    def _changes_by_etags(self, token: str | None, window: Window) -> CalendarDelta:
        listing = self._query(with_data=False)
        if _etag_token(listing) == token:
            return CalendarDelta(full=False, unchanged=True, token=token)
        resources, skipped, _ = self._resources(listing, window)
        return CalendarDelta(
            full=True,
            resources=tuple(resources),
            token=_etag_token(listing),
            skipped=tuple(skipped),
        )

    def _resources(
        self,
        entries: list[Entry],
        window: Window,
        parsed: dict[str, CalendarResource | str] | None = None,
    ) -> tuple[list[CalendarResource], list[str], list[str]]:
        """Parse entries (multiget those without data): (resources, skipped, vanished).

        ``parsed`` holds what was already parsed, by href (a resource or why it was
        skipped). The next multiget is already on its way while the previous reply is
        parsed, so the server's time and ours overlap; the results keep the order of
        ``entries``.
        """
        by_href = {e.href: e for e in entries}
        missing = [e.href for e in entries if e.data is None]
        parsed = parsed if parsed is not None else {}  # href → resource or why skipped
        vanished: list[str] = []
        for batch in self._multiget_ahead(missing):
            for fetched in batch:
                if fetched.status == 404:
                    by_href.pop(fetched.href, None)
                    parsed.pop(fetched.href, None)
                    vanished.append(fetched.href)
                elif fetched.data is not None and fetched.href in by_href:
                    by_href[fetched.href] = fetched
                    parsed[fetched.href] = _parse(fetched, window, self._limits)
        resources: list[CalendarResource] = []
        skipped: list[str] = []
        for entry in by_href.values():
            if entry.data is None:  # the server did not answer for it: read it next time
                skipped.append(f"{entry.href}: no calendar data returned")
                continue
            result = parsed.get(entry.href) or _parse(entry, window, self._limits)
            if isinstance(result, str):
                skipped.append(result)
            else:
                resources.append(result)
        return resources, skipped, vanished

    # ------------------------------------------------------------------- requests

    def _multiget(self, hrefs: list[str]) -> list[Entry]:
        """calendar-multiget by chunks; a chunk too large for the server is halved."""
        return [entry for batch in self._multiget_batches(hrefs) for entry in batch]

    def _multiget_batches(self, hrefs: list[str]) -> Generator[list[Entry], None, None]:
        """The entries of each calendar-multiget reply, one reply after the other."""
        chunks = [hrefs[i : i + MULTIGET_CHUNK] for i in range(0, len(hrefs), MULTIGET_CHUNK)]
        while chunks:
            chunk = chunks.pop(0)
            reply = self._report(multiget_body(chunk), depth=None)
            if reply.status in _TOO_LARGE and len(chunk) > 1:
                chunks[:0] = [chunk[: len(chunk) // 2], chunk[len(chunk) // 2 :]]
                continue
            if reply.status != 207:
                fail(reply, f"calendar-multiget on {self.path}")
            yield multistatus(reply.tree, self.path)[0]

    def _multiget_ahead(self, hrefs: list[str]) -> Iterator[list[Entry]]:
        """``_multiget_batches`` with the next request sent while the caller works.

        One worker thread makes the requests, one at a time (the HTTP session is never
        used by two threads at once); its errors are raised here, in order. A single
        request needs no thread.
        """
        if len(hrefs) <= MULTIGET_CHUNK:
            yield from self._multiget_batches(hrefs)
            return
        yield from ahead(self._multiget_batches(hrefs))

    def _query(self, *, with_data: bool, uid: str = "") -> list[Entry]:
        reply = self._report(query_body(with_data, uid), depth=1)
        if reply.status != 207:
            fail(reply, f"calendar-query on {self.path}")
        return [e for e in multistatus(reply.tree, self.path)[0] if e.status != 404]

    def _find_by_uid(self, uid: str) -> list[Entry]:
        """Resources holding ``uid`` wherever they are in the collection (one REPORT)."""
        found = self._query(with_data=True, uid=uid)
        return [e for e in found if e.data and _has_uid(e.data, uid)]

    def _report(self, body: str, depth: int | None) -> Reply:
        headers = {"Content-Type": 'application/xml; charset="utf-8"'}
        if depth is not None:
            headers["Depth"] = str(depth)
        return self._send("REPORT", self.path, body, headers)

    def _report_streamed(self, body: str, depth: int) -> AbstractContextManager[Streamed]:
        """``_report`` with a 207 reply read as it streams in (``Streamed.entries``)."""
        headers = {"Content-Type": 'application/xml; charset="utf-8"', "Depth": str(depth)}
        return streamed(
            self._client, self.url, self.path, "REPORT", self.path, body, headers, self.policy
        )

    def _put(self, href: str, body: str) -> Reply:
        return self._send("PUT", href, body, {"Content-Type": "text/calendar; charset=utf-8"})

    def _send(
        self, method: str, href: str, body: str = "", headers: Mapping[str, str] | None = None
    ) -> Reply:
        """One request; only errors that no status check could want are raised here."""
        return send(self._client, self.url, self.path, method, href, body, headers)

    def _count(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        if self._on_request is not None:
            request = getattr(response, "request", None)
            method = str(getattr(request, "method", "") or "")
            self._on_request(method, str(response.url), int(response.status_code))
        return response

    # -------------------------------------------------------------------- helpers

    def _href_for(self, uid: str) -> str:
        """The href we write ``uid`` at: the UID itself when it is path-safe."""
        name = re.sub(r"[^A-Za-z0-9._-]", "_", uid)[:100]
        if name.startswith("."):
            name = "_" + name[1:]
        if name != uid:
            name += "-" + hashlib.sha256(uid.encode()).hexdigest()[:12]
        return f"{self.path}{name}.ics"

    def _around(self, text: str) -> Window:
        """A window holding the first occurrence of the calendar object in ``text``."""
        dates = sorted(_DTSTART_DATE.findall(_VTIMEZONE.sub("", text)))
        if not dates:
            raise InvalidData("calendar object without DTSTART")
        first = datetime.strptime(dates[0], "%Y%m%d").replace(tzinfo=UTC)
        return Window(first - timedelta(days=2), first + timedelta(days=3), self.zone)


def _parse(entry: Entry, window: Window, limits: ParseLimits) -> CalendarResource | str:
    """One entry with data → its resource, or why it was skipped."""
    assert entry.data is not None
    try:
        return parse_resource(entry.href, entry.etag, entry.data, window, limits=limits)
    except InvalidData as exc:
        message = str(exc)
        return message if entry.href in message else f"{entry.href}: {message}"


def _has_uid(text: str, uid: str) -> bool:
    unfolded = re.sub(r"\r?\n[ \t]", "", text)
    return any(m.group(1).strip() == uid for m in _UID_LINE.finditer(unfolded))


def _etag_token(entries: list[Entry]) -> str:
    listing = "\n".join(f"{e.href}\t{e.etag}" for e in sorted(entries, key=lambda e: e.href))
    return ETAGS_PREFIX + hashlib.sha256(listing.encode()).hexdigest()
