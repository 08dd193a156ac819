"""One contract for every calendar connector, run through the real sync use case.

Each scenario changes the manager's calendar on the provider's server the way another
client would, syncs with our connector into a real (SQLite) store, and checks what the
change detector reports: exactly the change made, once, and nothing after a lost token
or a provider fault. Backends: ``backends/*.py`` (see ``backend.py``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from assistant.domain.changes import ChangeKind
from assistant.services.pairs import add_account, add_pair
from assistant.services.sync import SyncPolicy, SyncReport, sync_calendar
from assistant.store.db import UnitOfWork
from assistant.store.tables import EventSnapshot
from connectors.base import AuthExpired, CalendarSource, OwnEvent, RateLimited, Transient
from tests.integration.contract.backend import ContractBackend, Series
from tests.support.deps import deps_for

NOW = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)  # a Friday morning
POLICY = SyncPolicy(horizon=timedelta(days=14))


def local(backend: ContractBackend, day: int, hour: int, minute: int = 0) -> datetime:
    """Day ``day`` of December 2026 (1 = Tuesday) at hour:minute in the calendar's zone."""
    return datetime(2026, 12, day, hour, minute, tzinfo=ZoneInfo(backend.zone))


class Harness:
    def __init__(self, backend: ContractBackend, uow: UnitOfWork) -> None:
        self.backend = backend
        self.uow = uow
        add_pair(
            deps_for(uow, NOW), name="pair", manager_email="alex@example.com", assistant_email="sam@example.com",
            timezone=backend.zone,
        )  # fmt: skip
        self.account_id = add_account(
            deps_for(uow, NOW), pair="pair", name=backend.name, provider="ics", settings={}
        ).id
        self.connector = backend.source()

    def sync(self, source: CalendarSource | None = None) -> SyncReport:
        return sync_calendar(self.uow, self.account_id, source or self.connector, NOW, POLICY)

    def stored_events(self) -> list[EventSnapshot]:
        with self.uow.read() as session:
            return list(session.scalars(select(EventSnapshot)))

    def kinds(self, report: SyncReport) -> Counter[ChangeKind]:
        return Counter(c.kind for c in report.changes)

    def seed(self) -> None:
        b = self.backend
        b.create("c-board", "Board meeting", local(b, 1, 10), local(b, 1, 12), location="Boardroom")
        b.create("c-lunch", "Investor lunch", local(b, 2, 13), local(b, 2, 14), location="Café")
        b.create("c-weekly", "1:1 Alex / Sam", local(b, 1, 16), local(b, 1, 16, 30),
                 series=Series(count=4))  # fmt: skip
        report = self.sync()
        assert report.full, "the first sync lists everything"
        assert report.changes == [], "the first sync is a silent baseline"
        assert report.events == 2 + 4


@pytest.fixture
def h(backend: ContractBackend, sqlite_uow: UnitOfWork) -> Harness:
    harness = Harness(backend, sqlite_uow)
    harness.seed()
    return harness


def test_initial_sync_then_nothing_new(h: Harness) -> None:
    report = h.sync()
    assert report.changes == []
    assert not report.full, "the second sync uses the stored change token"


def test_create(h: Harness) -> None:
    b = h.backend
    b.create("c-new", "Dentist", local(b, 3, 8), local(b, 3, 9))
    report = h.sync()
    assert h.kinds(report) == Counter({ChangeKind.CREATED: 1})
    assert report.changes[0].after is not None
    assert report.changes[0].after.summary == "Dentist"
    assert h.sync().changes == []


def test_move(h: Harness) -> None:
    b = h.backend
    b.move("c-board", local(b, 1, 15), local(b, 1, 17))
    report = h.sync()
    assert [c.kind for c in report.changes] == [ChangeKind.MOVED]
    change = report.changes[0]
    assert change.before is not None
    assert change.after is not None
    assert change.before.start == local(b, 1, 10).astimezone(UTC)
    assert change.after.start == local(b, 1, 15).astimezone(UTC)
    assert h.sync().changes == []


def test_cancel(h: Harness) -> None:
    b = h.backend
    b.cancel("c-lunch")
    report = h.sync()
    assert len(report.changes) == 1
    assert report.changes[0].kind in (ChangeKind.CANCELLED, ChangeKind.DELETED)
    assert report.changes[0].before is not None
    assert report.changes[0].before.summary == "Investor lunch"
    assert h.sync().changes == []


def test_one_occurrence_of_a_series_moved(h: Harness) -> None:
    b = h.backend
    b.move_occurrence("c-weekly", local(b, 8, 16), local(b, 9, 9), local(b, 9, 9, 30))
    report = h.sync()
    assert [c.kind for c in report.changes] == [ChangeKind.MOVED]
    after = report.changes[0].after
    assert after is not None
    assert after.start == local(b, 9, 9).astimezone(UTC)
    assert after.recurrence_id == "20261208T150000Z"
    assert h.sync().changes == []


def test_one_occurrence_of_a_series_cancelled(h: Harness) -> None:
    b = h.backend
    b.cancel_occurrence("c-weekly", local(b, 8, 16))
    report = h.sync()
    assert len(report.changes) == 1
    assert report.changes[0].kind in (ChangeKind.CANCELLED, ChangeKind.DELETED)
    before = report.changes[0].before
    assert before is not None
    assert before.recurrence_id == "20261208T150000Z"


def test_series_deleted(h: Harness) -> None:
    b = h.backend
    b.delete("c-weekly")
    report = h.sync()
    # Occurrences on 1, 8 Dec are inside the 14-day horizon from 27 Nov; 15 and 22 Dec are not.
    assert len(report.changes) == 2
    assert {c.kind for c in report.changes} <= {ChangeKind.CANCELLED, ChangeKind.DELETED}
    assert h.sync().changes == []


def test_token_lost_means_full_resync_without_false_changes(h: Harness) -> None:
    b = h.backend
    b.expire_token()
    b.create("c-new", "Dentist", local(b, 3, 8), local(b, 3, 9))
    report = h.sync()
    assert report.full, "an invalid token falls back to listing everything"
    assert h.kinds(report) == Counter({ChangeKind.CREATED: 1})
    after = h.sync()
    assert not after.full
    assert after.changes == []


def test_401_once_then_works(h: Harness) -> None:
    b = h.backend
    b.create("c-new", "Dentist", local(b, 3, 8), local(b, 3, 9))
    b.fail_next(401)
    reported: list[ChangeKind] = []
    if b.refreshes_on_401:
        reported += [c.kind for c in h.sync().changes]
    else:
        with pytest.raises(AuthExpired):
            h.sync()
        reported += [c.kind for c in h.sync().changes]
    assert reported == [ChangeKind.CREATED]
    assert h.sync().changes == []


def test_429_with_retry_after(h: Harness) -> None:
    b = h.backend
    b.create("c-new", "Dentist", local(b, 3, 8), local(b, 3, 9))
    b.fail_next(429, retry_after=120)
    with pytest.raises(RateLimited) as caught:
        h.sync()
    assert caught.value.retry_after == pytest.approx(120, abs=2)
    assert [c.kind for c in h.sync().changes] == [ChangeKind.CREATED]


def test_500_is_transient(h: Harness) -> None:
    b = h.backend
    b.create("c-new", "Dentist", local(b, 3, 8), local(b, 3, 9))
    b.fail_next(500, times=10)  # enough to outlast a client library's own retries
    with pytest.raises(Transient):
        h.sync()
    # Until the provider recovers every sync is Transient and stores nothing; then the
    # change is reported once. (A connector without retries meets all ten failures.)
    reported: list[ChangeKind] = []
    for _ in range(10):
        try:
            reported += [c.kind for c in h.sync().changes]
            break
        except Transient:
            continue
    assert reported == [ChangeKind.CREATED]
    assert h.sync().changes == []


def test_timeout_is_transient(h: Harness) -> None:
    b = h.backend
    b.create("c-new", "Dentist", local(b, 3, 8), local(b, 3, 9))
    b.hang_next(3.0)
    with pytest.raises(Transient):
        h.sync(b.source(timeout=0.5))
    assert [c.kind for c in h.sync().changes] == [ChangeKind.CREATED]


def test_our_events_are_written_once_updated_in_place_and_never_reported(h: Harness) -> None:
    writer = h.backend.writer()
    if writer is None:
        pytest.skip(f"{h.backend.name} is read-only")
    b = h.backend
    event = OwnEvent(
        uid="checkpoint-1@exec-assistant", summary="Red Line: board pack",
        description="Does the work match the agreed parameters?",
        start=local(b, 2, 9), end=local(b, 2, 9, 30), timezone=b.zone, marker="1:red_line",
    )  # fmt: skip
    writer.put_event(event)
    writer.put_event(event)
    moved = replace(event, start=local(b, 3, 11), end=local(b, 3, 11, 30))
    writer.put_event(moved)
    report = h.sync()
    assert report.changes == [], "our own checkpoint events are not the manager's changes"
    held = writer.get_event(event.uid)
    assert held is not None
    assert held.start == local(b, 3, 11).astimezone(UTC)
    assert held.own_marker
    ours = [s for s in h.stored_events() if s.uid == event.uid]
    assert len(ours) == 1, "written three times, one event"
    assert writer.delete_event(event.uid) is True
    assert writer.get_event(event.uid) is None
    assert writer.delete_event(event.uid) is False
    assert h.sync().changes == []
