"""Microsoft 365: the Graph connector against the protocol-level Graph server in tests/support.

The manager's calendar is in Berlin; events are stored the way Outlook writes them, with
the Windows zone name ("W. Europe Standard Time"). The connector signs in with client
credentials through msal against the server's token endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from connectors.base import CalendarSource, CalendarWriter
from connectors.graph.calendar import GraphCalendar
from tests.integration.contract.backend import ContractBackend, Series
from tests.support.graph_server import GraphServer

NAME = "graph"
WINDOWS_ZONE = "W. Europe Standard Time"


class GraphBackend:
    name = NAME
    zone = "Europe/Berlin"
    refreshes_on_401 = True

    def __init__(self, server: GraphServer) -> None:
        self.server = server
        self.ids: dict[str, str] = {}
        self._opened: list[GraphCalendar] = []

    def connector(self, timeout: float = 10.0) -> GraphCalendar:
        s = self.server
        calendar = GraphCalendar(
            s.user, tenant=s.tenant, client_id=s.client_id, client_secret=s.client_secret,
            graph_url=s.graph_url, authority_host=s.authority_host, verify=s.ca_file,
            timeout=timeout, zone=self.zone, backoff=0.0,
        )  # fmt: skip
        self._opened.append(calendar)
        return calendar

    def close(self) -> None:
        for calendar in self._opened:
            calendar.close()

    def source(self, timeout: float = 10.0) -> CalendarSource:
        return self.connector(timeout)

    def writer(self) -> CalendarWriter | None:
        return self.connector()

    def create(
        self, uid: str, summary: str, start: datetime, end: datetime,
        *, location: str = "", series: Series | None = None,
    ) -> None:  # fmt: skip
        self.ids[uid] = self.server.create_event(
            summary, start, end, zone=WINDOWS_ZONE, weekly=series.count if series else None,
            location={"displayName": location, "locationType": "default"},
        )  # fmt: skip

    def move(self, uid: str, start: datetime, end: datetime) -> None:
        self.server.update_event(self.ids[uid], start=start, end=end)

    def cancel(self, uid: str) -> None:
        self.server.cancel_event(self.ids[uid])

    def move_occurrence(
        self, uid: str, original_start: datetime, start: datetime, end: datetime
    ) -> None:
        self.server.move_occurrence(self.ids[uid], original_start, start, end)

    def cancel_occurrence(self, uid: str, original_start: datetime) -> None:
        self.server.cancel_occurrence(self.ids[uid], original_start)

    def delete(self, uid: str) -> None:
        self.server.delete_event(self.ids.pop(uid))

    def expire_token(self) -> None:
        self.server.invalidate_delta_tokens()

    def fail_next(self, status: int, *, retry_after: int | None = None, times: int = 1) -> None:
        self.server.fail_next(status, retry_after=retry_after, times=times)

    def hang_next(self, seconds: float) -> None:
        self.server.hang_next(seconds)


@contextmanager
def open_backend(tmp_path: Path) -> Iterator[ContractBackend]:
    with GraphServer(tmp_path) as server:
        backend = GraphBackend(server)
        try:
            yield backend
        finally:
            backend.close()
