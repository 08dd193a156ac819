"""The sync use case on a real database (SQLite and PostgreSQL) with a real ICS file source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from assistant.services.notifications import dispatch
from assistant.services.pairs import add_account, add_pair
from assistant.services.sync import SuspiciousEmptyCalendar, SyncPolicy, sync_calendar
from assistant.store.db import UnitOfWork
from assistant.store.tables import Account, EventSnapshot, OutboxEntry, ScheduleChange
from config.settings import NotifySettings
from connectors.base import CalendarDelta, TokenExpired, Window
from connectors.ics.feed import IcsFeed
from tests.support.deps import deps_for

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
POLICY = SyncPolicy(horizon=timedelta(days=14))

HEAD = "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//EN\n"
TAIL = "END:VCALENDAR\n"


def vevent(uid: str, start: str, end: str, summary: str = "Meeting", location: str = "", extra: str = "") -> str:
    loc = f"LOCATION:{location}\n" if location else ""
    return (
        f"BEGIN:VEVENT\nUID:{uid}\nDTSTART;TZID=Europe/Berlin:{start}\nDTEND;TZID=Europe/Berlin:{end}\n"
        f"SUMMARY:{summary}\n{loc}{extra}END:VEVENT\n"
    )


BOARD = vevent("board", "20261126T100000", "20261126T120000", "Board meeting", "Boardroom")
LUNCH = vevent("lunch", "20261127T130000", "20261127T140000", "Investor lunch", "Café")
WEEKLY = vevent("weekly", "20261123T160000", "20261123T163000", "1:1", extra="RRULE:FREQ=WEEKLY;COUNT=6\n")
PAST = vevent("past", "20261120T100000", "20261120T110000", "Old")


@pytest.fixture
def setup(uow: UnitOfWork, tmp_path: Path) -> tuple[int, Path]:
    add_pair(
        deps_for(uow, NOW), name="alex", manager_email="alex@example.com", assistant_email="sam@example.com",
        timezone="Europe/Berlin",
    )  # fmt: skip
    path = tmp_path / "cal.ics"
    account = add_account(
        deps_for(uow, NOW), pair="alex", name="feed", provider="ics", settings={"location": str(path)}
    )
    return account.id, path


def write(path: Path, *events: str) -> None:
    path.write_text(HEAD + "".join(events) + TAIL)


def count(uow: UnitOfWork, model: type) -> int:
    with uow.read() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_first_sync_is_a_silent_baseline(uow: UnitOfWork, setup: tuple[int, Path]) -> None:
    account_id, path = setup
    write(path, BOARD, LUNCH, WEEKLY, PAST)
    report = sync_calendar(uow, account_id, IcsFeed(str(path)), NOW, POLICY)
    assert report.full and report.changes == [] and report.batch_id is None
    assert count(uow, EventSnapshot) == 1 + 1 + 6 + 1
    assert count(uow, OutboxEntry) == 0


def test_changes_are_stored_with_their_notification_once(uow: UnitOfWork, setup: tuple[int, Path]) -> None:
    account_id, path = setup
    write(path, BOARD, LUNCH, WEEKLY)
    feed = IcsFeed(str(path))
    sync_calendar(uow, account_id, feed, NOW, POLICY)
    moved = BOARD.replace("T100000", "T150000").replace("T120000", "T170000")
    weekly_once_moved = WEEKLY + vevent(
        "weekly", "20261201T090000", "20261201T093000", "1:1",
        extra="RECURRENCE-ID;TZID=Europe/Berlin:20261130T160000\n",
    )  # fmt: skip
    write(path, moved, weekly_once_moved)  # lunch cancelled (gone)
    report = sync_calendar(uow, account_id, feed, NOW + timedelta(minutes=5), POLICY)
    kinds = sorted((c.event.uid, c.kind.value) for c in report.changes)
    assert kinds == [("board", "moved"), ("lunch", "deleted"), ("weekly", "moved")]
    assert report.batch_id is not None
    with uow.read() as s:
        states = s.scalars(select(ScheduleChange.state)).all()
        assert states == ["pending"] * 3, "sync stores changes; dispatch sends them"
    assert count(uow, OutboxEntry) == 0
    # Inside the coalescing window nothing is sent; after it, one message for all three.
    early = dispatch(uow, 1, NOW + timedelta(minutes=5, seconds=10), NotifySettings())
    assert early.outbox_ids == () and early.next_due == NOW + timedelta(minutes=5, seconds=20)
    sent = dispatch(uow, 1, NOW + timedelta(minutes=5, seconds=20), NotifySettings())
    assert len(sent.outbox_ids) == 1 and sent.sent == 3
    assert dispatch(uow, 1, NOW + timedelta(minutes=6), NotifySettings()).outbox_ids == ()
    with uow.read() as s:
        entry = s.scalars(select(OutboxEntry)).one()
        assert entry.recipient == "sam@example.com"
        assert entry.state == "pending"
        assert "Board meeting" in entry.body_text and "Investor lunch" in entry.body_text
        assert "->" in entry.body_text  # before -> after
        assert s.scalar(select(func.count()).select_from(ScheduleChange)) == 3
    # Same data again: unchanged, nothing new stored or queued.
    again = sync_calendar(uow, account_id, feed, NOW + timedelta(minutes=6), POLICY)
    assert again.unchanged and again.changes == []
    assert count(uow, OutboxEntry) == 1


class ExpiringSource:
    """Wraps a real source; its first incremental call says the token expired."""

    def __init__(self, inner: IcsFeed) -> None:
        self.inner = inner
        self.calls: list[str | None] = []

    def changes(self, token: str | None, window: Window) -> CalendarDelta:
        self.calls.append(token)
        if token is not None:
            raise TokenExpired("token gone")
        return self.inner.changes(None, window)


def test_lost_token_full_resync_gives_no_false_changes(uow: UnitOfWork, setup: tuple[int, Path]) -> None:
    account_id, path = setup
    write(path, BOARD, LUNCH, WEEKLY)
    sync_calendar(uow, account_id, IcsFeed(str(path)), NOW, POLICY)
    source = ExpiringSource(IcsFeed(str(path)))
    report = sync_calendar(uow, account_id, source, NOW + timedelta(minutes=1), POLICY)
    assert source.calls[0] is not None and source.calls[1] is None
    assert report.full and report.changes == []
    assert count(uow, OutboxEntry) == 0


def test_empty_calendar_after_many_events_is_a_fault(uow: UnitOfWork, setup: tuple[int, Path]) -> None:
    account_id, path = setup
    write(path, BOARD, LUNCH, WEEKLY)
    feed = IcsFeed(str(path))
    sync_calendar(uow, account_id, feed, NOW, POLICY)
    write(path)
    with pytest.raises(SuspiciousEmptyCalendar):
        sync_calendar(uow, account_id, feed, NOW + timedelta(minutes=1), POLICY)
    assert count(uow, OutboxEntry) == 0
    assert count(uow, EventSnapshot) == 8  # the old snapshot is kept
    with uow.read() as s:
        account = s.get(Account, account_id)
        assert account is not None and account.state == "error"
        assert "empty" in account.last_error


def test_window_moving_on_does_not_announce_old_series(uow: UnitOfWork, setup: tuple[int, Path]) -> None:
    account_id, path = setup
    long_series = vevent("daily", "20261124T080000", "20261124T081500", "Daily", extra="RRULE:FREQ=DAILY\n")
    write(path, long_series)
    policy = SyncPolicy(window_future=timedelta(days=10), horizon=timedelta(days=14))
    feed = IcsFeed(str(path))
    sync_calendar(uow, account_id, feed, NOW, policy)
    later = NOW + timedelta(days=3)  # the window moved 3 days; new occurrences appear at its end
    report = sync_calendar(uow, account_id, feed, later, policy)
    assert report.full  # re-expanded over the new window
    assert report.changes == []


class Statements:
    """The SQL statements (by their verb) an engine runs while active, transaction control
    left out (a ``before_cursor_execute`` listener)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.engine = uow.engine
        self.seen: list[str] = []

    def _count(self, conn: object, cursor: object, statement: str, *args: object) -> None:
        verb = statement.split(None, 1)[0].upper()
        if verb not in ("BEGIN", "COMMIT", "ROLLBACK"):  # SQLite's BEGIN is sent as SQL
            self.seen.append(verb)

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)


def test_a_sync_that_finds_nothing_new_is_two_statements(uow: UnitOfWork, setup: tuple[int, Path]) -> None:
    """One read (the account with its pair's zone), one UPDATE where the token is unchanged:
    the cost of most polls, per account, at any number of pairs."""
    account_id, path = setup
    write(path, BOARD, LUNCH)
    sync_calendar(uow, account_id, IcsFeed(str(path)), NOW, POLICY)
    with Statements(uow) as statements:
        again = sync_calendar(uow, account_id, IcsFeed(str(path)), NOW + timedelta(minutes=1), POLICY)
    assert again.unchanged and not again.superseded
    assert statements.seen == ["SELECT", "UPDATE"]
    with uow.read() as s:
        account = s.get(Account, account_id)
        assert account is not None and account.last_sync_at is not None
        assert account.last_sync_at.replace(tzinfo=UTC) == NOW + timedelta(minutes=1)
        assert account.state == "ok" and "window_end" in account.sync_state


class MeanwhileSynced:
    """Wraps a real source; while it is asked, another worker syncs the account (its token
    moves on in the database)."""

    def __init__(self, inner: IcsFeed, uow: UnitOfWork, account_id: int) -> None:
        self.inner, self.uow, self.account_id = inner, uow, account_id

    def changes(self, token: str | None, window: Window) -> CalendarDelta:
        delta = self.inner.changes(token, window)
        with self.uow.begin() as s:
            account = s.get(Account, self.account_id)
            assert account is not None
            account.sync_token = "by-the-other-worker"
        return delta


def test_no_change_found_after_another_worker_synced_leaves_its_result(
    uow: UnitOfWork, setup: tuple[int, Path]
) -> None:
    account_id, path = setup
    write(path, BOARD, LUNCH)
    first = sync_calendar(uow, account_id, IcsFeed(str(path)), NOW, POLICY)
    assert first.full
    source = MeanwhileSynced(IcsFeed(str(path)), uow, account_id)
    again = sync_calendar(uow, account_id, source, NOW + timedelta(minutes=1), POLICY)
    assert again.unchanged and again.superseded
    with uow.read() as s:
        account = s.get(Account, account_id)
        assert account is not None and account.sync_token == "by-the-other-worker"
        assert account.last_sync_at is not None
        assert account.last_sync_at.replace(tzinfo=UTC) == NOW  # this sync recorded nothing
