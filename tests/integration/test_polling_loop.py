"""The self-rescheduling polling loop (Huey's periodic tasks only tick once a minute).

Real Huey storage (SQLite, and Redis when reachable), real store; time injected.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from huey import Huey

from assistant.bootstrap import Service
from assistant.services.pairs import add_account, add_pair
from assistant.store.db import UnitOfWork
from config.settings import Settings, SyncSettings
from jobs import runtime, tasks
from tests.support.deps import deps_for

# Huey compares ETAs with the real clock: the injected time lies ahead of it, so planned
# rounds stay scheduled instead of being due at once.
NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def loop(huey_backend: Huey, sqlite_uow: UnitOfWork, tmp_path: Path) -> Iterator[tuple[Huey, Clock]]:
    clock = Clock()
    settings = Settings(data_dir=tmp_path, sync=SyncSettings(poll_interval_seconds=2))
    svc = Service(settings=settings, engine=sqlite_uow.engine, uow=sqlite_uow, clock=clock)
    add_pair(deps_for(sqlite_uow, NOW), name="alex", manager_email="alex@example.com",
             assistant_email="sam@example.com")  # fmt: skip
    add_account(deps_for(sqlite_uow, NOW), pair="alex", name="work", provider="caldav",
                settings={"url": "http://127.0.0.1:9/cal/"})  # fmt: skip
    runtime.install(svc)
    tasks.register(huey_backend, periodic=False)
    try:
        yield huey_backend, clock
    finally:
        runtime.install(None)


def names(huey: Huey) -> list[str]:
    """Tasks to run now (a task with an ETA waits in the queue until the consumer moves
    it to the schedule)."""
    return [t.name for t in huey.pending() if t.eta is None]


def planned(huey: Huey) -> list[datetime]:
    return [t.eta.replace(tzinfo=UTC) for t in huey.pending() if t.eta is not None]


def run_next(huey: Huey, name: str) -> None:
    """Take queued tasks off the queue until one called ``name``; run it."""
    while (task := huey.dequeue()) is not None:
        if task.name == name:
            huey.execute(task)
            return
    raise AssertionError(f"no {name} queued")


def test_one_loop_on_a_fixed_grid_and_a_replaced_loop_stops(loop: tuple[Huey, Clock]) -> None:
    huey, clock = loop
    assert tasks.keep_polling(clock.now, 2) is True
    assert tasks.keep_polling(clock.now, 2) is False, "a live loop is not started twice"
    assert names(huey) == ["sync_due"]
    start = NOW + timedelta(seconds=0.9)  # the first round sets the grid
    clock.now = start
    run_next(huey, "sync_due")
    assert names(huey) == ["sync_account"], "the account was due and is synced"
    assert planned(huey) == [start + timedelta(seconds=2)]
    # The next round runs 0.6 s late (the scheduler ticks once a second)...
    second = next(t for t in huey.pending() if t.eta is not None)
    while huey.dequeue() is not None:
        pass
    clock.now = start + timedelta(seconds=2.6)
    huey.execute(second, timestamp=second.eta)  # as the consumer does at its ETA
    # ...and the one after is still planned on the grid, not 2 s after the late start.
    assert planned(huey) == [start + timedelta(seconds=4)]
    assert names(huey) == ["sync_account"], "never synced (that job was not run): due again"
    nxt = next(t for t in huey.pending() if t.eta is not None)
    # Two intervals and a few seconds on, the loop is still alive: tick does not start
    # another one (its rounds may just be late: a busy queue, the scheduler's tick).
    clock.now = start + timedelta(seconds=8)
    assert tasks.keep_polling(clock.now, 2) is False
    # When the recorded loop is stale (its rounds were lost), tick starts a new one and a
    # round of the old loop, should it still run, ends it instead of polling twice.
    clock.now = NOW + timedelta(minutes=5)
    assert tasks.keep_polling(clock.now, 2) is True
    before = len(planned(huey))
    assert huey.execute(nxt, timestamp=nxt.eta) == 0  # a round of the replaced loop...
    assert len(planned(huey)) == before, "...polls nothing and plans nothing more"


def _read_at(at: datetime) -> None:
    """The account's calendar was read at ``at`` (a re-poll, a push), as a sync records it."""
    from assistant.store.tables import Account

    with runtime.service().uow.begin() as session:
        account = session.get(Account, 1)
        assert account is not None
        account.last_sync_at = at


def test_a_calendar_re_polled_just_before_a_round_is_polled_by_it(
    loop: tuple[Huey, Clock],
) -> None:
    """A round skips only an account read since its planned time; the next round reads it
    at most an interval later. Skipping one re-polled just before the round (the last
    re-poll of a quiet period, 1.5 s before it) made a change made just after that
    re-poll wait the interval and those 1.5 s."""
    huey, clock = loop
    runtime.service().settings.sync.poll_interval_seconds = 30  # the default
    tasks.keep_polling(clock.now, 30)
    start = NOW + timedelta(seconds=0.9)
    clock.now = start
    run_next(huey, "sync_due")
    [second] = [t for t in huey.pending() if t.eta is not None]
    assert second.eta.replace(tzinfo=UTC) == start + timedelta(seconds=30)
    while huey.dequeue() is not None:
        pass
    _read_at(start + timedelta(seconds=28.5))  # a re-poll, 1.5 s before the round
    clock.now = start + timedelta(seconds=30.3)  # the round runs 0.3 s late
    huey.execute(second, timestamp=second.eta)
    assert names(huey) == ["sync_account"], "read 1.8 s ago, before the round fell due"
    [third] = [t for t in huey.pending() if t.eta is not None]
    while huey.dequeue() is not None:
        pass
    _read_at(start + timedelta(seconds=60.2))  # after the round fell due: it ran late
    clock.now = start + timedelta(seconds=60.6)
    huey.execute(third, timestamp=third.eta)
    assert names(huey) == [], "read since the round fell due: the next round is 30 s on"


def test_the_next_round_is_known_to_the_dispatcher(loop: tuple[Huey, Clock]) -> None:
    huey, clock = loop
    assert tasks.next_poll_at(clock.now) is None, "no loop yet: unknown"
    tasks.keep_polling(clock.now, 2)
    start = NOW + timedelta(seconds=0.9)
    clock.now = start
    run_next(huey, "sync_due")
    assert tasks.next_poll_at(start + timedelta(seconds=0.5)) == start + timedelta(seconds=2)
    late = start + timedelta(seconds=7)  # the loop fell behind: a round may start any moment
    assert tasks.next_poll_at(late) == late


def test_a_minute_or_more_polls_at_the_next_tick(loop: tuple[Huey, Clock]) -> None:
    runtime.service().settings.sync.poll_interval_seconds = 300
    at = datetime(2026, 11, 24, 9, 0, 42, 5, tzinfo=UTC)
    assert tasks.next_poll_at(at) == datetime(2026, 11, 24, 9, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("provider", "public_url", "expected"),
    [
        ("ews", "", True),
        ("graph", "", False),
        ("graph", "https://assistant.example.com", True),
        ("google", "https://assistant.example.com", True),
        ("google", "http://assistant.example.com", False),
        ("caldav", "https://assistant.example.com", False),
        ("ics", "https://assistant.example.com", False),
    ],
)
def test_which_calendars_can_report_between_polls(
    provider: str, public_url: str, expected: bool
) -> None:
    from assistant.services.push import calendar_pushes
    from config.settings import WebSettings

    settings = Settings(web=WebSettings(public_url=public_url))
    assert calendar_pushes(settings, provider) is expected
