"""EWS connector (real exchangelib, real HTTP) against the protocol-level EWS server.

The manager's other client (Outlook) changes the mailbox inside the server directly,
the way Exchange records it: a moved occurrence becomes an exception of the master, a
cancelled occurrence a deleted occurrence, a cancelled meeting stays in the calendar
with IsCancelled set (as an attendee's Outlook leaves it until it is removed), a deleted
series disappears. Every change moves the item's change key and the folder's change
log, so SyncFolderItems reports it.

Basic auth: a 401 surfaces as AuthExpired (``refreshes_on_401 = False``). The connector
makes no retries of its own (exchangelib runs with a fail-fast policy; the sync service
decides when to try again), so ``fail_next(status, times=N)`` fails N syncs in a row.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from connectors.base import CalendarSource, CalendarWriter
from connectors.ews.account import EwsSettings
from connectors.ews.calendar import EwsCalendar
from tests.integration.contract.backend import Series
from tests.support.ews_server import Change, EwsServer, windows_zone

NAME = "ews"
ZONE = "Europe/Berlin"


class EwsBackend:
    name = NAME
    zone = ZONE
    refreshes_on_401 = False

    def __init__(self, server: EwsServer) -> None:
        self.server = server
        self.mailbox = server.mailbox

    def _connector(self, timeout: float) -> EwsCalendar:
        settings = EwsSettings(
            mailbox=self.mailbox.address,
            service_endpoint=self.server.url,
            auth="basic",
            username=self.server.username,
            password=self.server.password,
        )
        return EwsCalendar(settings, timeout=timeout, zone=self.zone)

    def source(self, timeout: float = 10.0) -> CalendarSource:
        return self._connector(timeout)

    def writer(self) -> CalendarWriter | None:
        return self._connector(10.0)

    # -- the manager's other client
    def create(
        self, uid: str, summary: str, start: datetime, end: datetime,
        *, location: str = "", series: Series | None = None,
    ) -> None:  # fmt: skip
        self.mailbox.add(
            uid, summary, start, end, location=location, zone=windows_zone(self.zone),
            weekly_count=series.count if series else None,
        )  # fmt: skip

    def move(self, uid: str, start: datetime, end: datetime) -> None:
        with self.mailbox.edit(uid) as item:
            item.start, item.end = start, end

    def cancel(self, uid: str) -> None:
        with self.mailbox.edit(uid) as item:
            item.cancelled = True
            item.subject = f"Canceled: {item.subject}"

    def move_occurrence(
        self, uid: str, original_start: datetime, start: datetime, end: datetime
    ) -> None:
        with self.mailbox.edit(uid) as item:
            original = _original(item.original_starts(), original_start)
            item.modified[original] = Change(start, end)

    def cancel_occurrence(self, uid: str, original_start: datetime) -> None:
        with self.mailbox.edit(uid) as item:
            item.deleted.add(_original(item.original_starts(), original_start))

    def delete(self, uid: str) -> None:
        self.mailbox.remove(self.mailbox.by_uid(uid).item_id)

    # -- the provider misbehaves
    def expire_token(self) -> None:
        self.mailbox.expire_states()

    def fail_next(self, status: int, *, retry_after: int | None = None, times: int = 1) -> None:
        self.server.fail_next(status, retry_after=retry_after, times=times)

    def hang_next(self, seconds: float) -> None:
        self.server.hang_next(seconds)


def _original(starts: list[datetime], wanted: datetime) -> datetime:
    for start in starts:
        if start == wanted:
            return start
    raise AssertionError(f"no occurrence starts at {wanted}")


@contextmanager
def open_backend(tmp_path: Path) -> Iterator[EwsBackend]:
    with EwsServer() as server:
        yield EwsBackend(server)
