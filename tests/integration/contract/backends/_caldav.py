"""What the CalDAV backends share: the manager's other client, and our connector behind
a fault proxy.

``OtherClient`` changes the calendar the way a desktop CalDAV client does: it GETs the
calendar object resource, edits the iCalendar and PUTs it back with ``If-Match``,
straight to the real server (never through the proxy, never through our connector).
A cancelled event is kept with ``STATUS:CANCELLED`` (what Thunderbird and Apple
Calendar leave for a meeting they cancel); a moved occurrence is an overriding VEVENT
with RECURRENCE-ID; a cancelled occurrence is an EXDATE on the master; ``delete``
removes the resource.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import icalendar

from connectors.base import CalendarSource, CalendarWriter
from connectors.caldav.calendar import CalDavCalendar
from tests.integration.contract.backend import Series
from tests.support.fault_proxy import FaultProxy

ZONE = "Europe/Berlin"


class OtherClient:
    """A calendar client of the manager's, writing iCalendar over plain HTTP."""

    def __init__(self, calendar_url: str) -> None:
        self.calendar_url = calendar_url
        self.http = httpx.Client(timeout=10)

    def close(self) -> None:
        self.http.close()

    def _url(self, uid: str) -> str:
        return f"{self.calendar_url}{uid}.ics"

    def _get(self, uid: str) -> tuple[icalendar.Calendar, str]:
        response = self.http.get(self._url(uid))
        response.raise_for_status()
        return icalendar.Calendar.from_ical(response.content), response.headers["ETag"]

    def _put(self, uid: str, calendar: icalendar.Calendar, etag: str | None) -> None:
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        headers.update({"If-Match": etag} if etag else {"If-None-Match": "*"})
        response = self.http.put(self._url(uid), content=calendar.to_ical(), headers=headers)
        if response.status_code not in (200, 201, 204):
            raise AssertionError(f"PUT {uid}: {response.status_code} {response.text[:300]}")

    def _edit(self, uid: str, change: Callable[[icalendar.Calendar, Any], None]) -> None:
        calendar, etag = self._get(uid)
        (master,) = [e for e in calendar.walk("VEVENT") if "RECURRENCE-ID" not in e]
        change(calendar, master)
        _bump(master)
        calendar.add_missing_timezones()
        self._put(uid, calendar, etag)

    def create(
        self, uid: str, summary: str, start: datetime, end: datetime,
        *, location: str = "", series: Series | None = None,
    ) -> None:  # fmt: skip
        event = icalendar.Event()
        event.add("UID", uid)
        event.add("DTSTAMP", datetime.now(UTC))
        event.add("DTSTART", start)
        event.add("DTEND", end)
        event.add("SUMMARY", summary)
        event.add("SEQUENCE", 0)
        if location:
            event.add("LOCATION", location)
        if series is not None:
            event.add("RRULE", {"FREQ": "WEEKLY", "COUNT": series.count})
        calendar = icalendar.Calendar()
        calendar.add("PRODID", "-//exec-assistant tests//other client//EN")
        calendar.add("VERSION", "2.0")
        calendar.add_component(event)
        calendar.add_missing_timezones()
        self._put(uid, calendar, None)

    def move(self, uid: str, start: datetime, end: datetime) -> None:
        def change(calendar: icalendar.Calendar, master: Any) -> None:
            _set(master, "DTSTART", start)
            _set(master, "DTEND", end)

        self._edit(uid, change)

    def cancel(self, uid: str) -> None:
        self._edit(uid, lambda calendar, master: _set(master, "STATUS", "CANCELLED"))

    def move_occurrence(
        self, uid: str, original_start: datetime, start: datetime, end: datetime
    ) -> None:
        def change(calendar: icalendar.Calendar, master: Any) -> None:
            override = icalendar.Event()
            override.add("UID", uid)
            override.add("DTSTAMP", datetime.now(UTC))
            override.add("RECURRENCE-ID", original_start)
            override.add("DTSTART", start)
            override.add("DTEND", end)
            for name in ("SUMMARY", "LOCATION", "DESCRIPTION"):
                if name in master:
                    override.add(name, master[name])
            override.add("SEQUENCE", int(master.get("SEQUENCE", 0)) + 1)
            calendar.add_component(override)

        self._edit(uid, change)

    def cancel_occurrence(self, uid: str, original_start: datetime) -> None:
        self._edit(uid, lambda calendar, master: master.add("EXDATE", original_start))

    def delete(self, uid: str) -> None:
        response = self.http.delete(self._url(uid))
        if response.status_code not in (200, 204):
            raise AssertionError(f"DELETE {uid}: {response.status_code}")


def _set(component: Any, name: str, value: object) -> None:
    component.pop(name, None)
    component.add(name, value)


def _bump(master: Any) -> None:
    sequence = int(master.get("SEQUENCE", 0)) + 1
    _set(master, "SEQUENCE", sequence)
    _set(master, "DTSTAMP", datetime.now(UTC))
    _set(master, "LAST-MODIFIED", datetime.now(UTC))


class CalDavBackend:
    """A ``ContractBackend`` for one calendar on a real CalDAV server.

    The connector reaches the server through ``proxy`` (faults are injected there);
    the other client writes to the server directly. ``expire`` makes the server
    forget the sync tokens it handed out.
    """

    zone = ZONE
    refreshes_on_401 = False  # basic auth: a 401 means the user must reconnect

    def __init__(
        self, name: str, calendar_url: str, proxy: FaultProxy, expire: Callable[[], None]
    ) -> None:
        self.name = name
        self.calendar_url = calendar_url
        self.proxy = proxy
        self._expire = expire
        self._other = OtherClient(calendar_url)
        self._connectors: list[CalDavCalendar] = []

    def _connector(self, timeout: float) -> CalDavCalendar:
        connector = CalDavCalendar(
            self.proxy.proxied(self.calendar_url), timeout=timeout, zone=self.zone
        )
        self._connectors.append(connector)
        return connector

    def source(self, timeout: float = 10.0) -> CalendarSource:
        return self._connector(timeout)

    def writer(self) -> CalendarWriter | None:
        return self._connector(10.0)

    def close(self) -> None:
        for connector in self._connectors:
            connector.close()
        self._other.close()

    # -- the manager's other client
    def create(
        self, uid: str, summary: str, start: datetime, end: datetime,
        *, location: str = "", series: Series | None = None,
    ) -> None:  # fmt: skip
        self._other.create(uid, summary, start, end, location=location, series=series)

    def move(self, uid: str, start: datetime, end: datetime) -> None:
        self._other.move(uid, start, end)

    def cancel(self, uid: str) -> None:
        self._other.cancel(uid)

    def move_occurrence(
        self, uid: str, original_start: datetime, start: datetime, end: datetime
    ) -> None:
        self._other.move_occurrence(uid, original_start, start, end)

    def cancel_occurrence(self, uid: str, original_start: datetime) -> None:
        self._other.cancel_occurrence(uid, original_start)

    def delete(self, uid: str) -> None:
        self._other.delete(uid)

    # -- the provider misbehaves
    def expire_token(self) -> None:
        self._expire()

    def fail_next(self, status: int, *, retry_after: int | None = None, times: int = 1) -> None:
        self.proxy.fail_next(status, retry_after=retry_after, times=times)

    def hang_next(self, seconds: float) -> None:
        self.proxy.hang_next(seconds)


@contextmanager
def caldav_backend(
    name: str, server_url: str, calendar_url: str, expire: Callable[[], None]
) -> Iterator[CalDavBackend]:
    """A backend for ``calendar_url`` with a fault proxy in front of ``server_url``."""
    with FaultProxy(server_url) as proxy:
        backend = CalDavBackend(name, calendar_url, proxy, expire)
        try:
            yield backend
        finally:
            backend.close()
