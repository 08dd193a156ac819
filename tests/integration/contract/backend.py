"""What a calendar provider must offer the contract suite.

Each module in ``backends/`` exposes ``NAME: str`` and ``open_backend(tmp_path)``, a
context manager yielding a ``ContractBackend``: the provider's server (real, or a
protocol-level one from ``tests/support``) with a way to change the manager's calendar
from "another client" and to inject faults at the HTTP level, plus our connector
pointed at it. ``test_calendar_contract.py`` runs every scenario on every backend.

Times given to the backend are aware datetimes; ``zone`` is the calendar's zone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from connectors.base import CalendarSource, CalendarWriter


@dataclass(frozen=True)
class Series:
    """A weekly series of ``count`` occurrences (RRULE:FREQ=WEEKLY;COUNT=count)."""

    count: int


class ContractBackend(Protocol):
    name: str
    zone: str
    # True where a 401 is answered by refreshing a token and retrying inside the call
    # (OAuth providers); False where it surfaces as AuthExpired (basic auth).
    refreshes_on_401: bool

    def source(self, timeout: float = 10.0) -> CalendarSource:
        """A new connector instance pointed at the server."""
        ...

    def writer(self) -> CalendarWriter | None:
        """The connector as a writer, or None for read-only providers."""
        ...

    # -- the manager's other client changes the calendar
    def create(
        self, uid: str, summary: str, start: datetime, end: datetime,
        *, location: str = "", series: Series | None = None,
    ) -> None: ...  # fmt: skip

    def move(self, uid: str, start: datetime, end: datetime) -> None: ...

    def cancel(self, uid: str) -> None:
        """Cancel a single event the way the provider's clients do (status or removal)."""
        ...

    def move_occurrence(
        self, uid: str, original_start: datetime, start: datetime, end: datetime
    ) -> None: ...

    def cancel_occurrence(self, uid: str, original_start: datetime) -> None: ...

    def delete(self, uid: str) -> None:
        """Delete an event or a whole series."""
        ...

    # -- the provider misbehaves
    def expire_token(self) -> None:
        """The next request with any earlier change token gets the provider's
        "token no longer valid" answer (CalDAV 403/409 valid-sync-token, Google 410,
        Graph 410 syncStateNotFound, EWS ErrorInvalidSyncStateData)."""
        ...

    def fail_next(self, status: int, *, retry_after: int | None = None, times: int = 1) -> None:
        """The next ``times`` requests get ``status`` (with Retry-After when given)."""
        ...

    def hang_next(self, seconds: float) -> None:
        """The next request is answered only after ``seconds``."""
        ...


OpenBackend = Callable[[Path], AbstractContextManager[ContractBackend]]
BackendIterator = Iterator[ContractBackend]
