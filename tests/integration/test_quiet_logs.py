"""The service's log at its default level (INFO) is quiet: a polling round that finds
nothing writes no line; a change and a send are one line each.

Real jobs on a real Huey (SQLite storage; tasks taken off the queue and executed as the
consumer does), a real store, an ICS account on a file, a real SMTP server (aiosmtpd);
the logging is the one ``assistant run`` and the workers install (``configure_logging``).
Before: 20 pairs polling every 2 s wrote 1,300 lines a minute (Huey's "Executing" and
"executed in" for every task, and the HTTP clients' request lines).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from huey import Huey

from assistant.adapters.channels.smtp import SmtpChannel
from assistant.bootstrap import CHATTY_LIBRARIES, Service, configure_logging
from assistant.services.pairs import add_account, add_pair
from assistant.store.db import UnitOfWork
from config.settings import NotifySettings, QueueSettings, Settings, SyncSettings
from jobs import runtime, tasks
from jobs.queue import build_huey
from tests.support.deps import deps_for
from tests.support.smtp import SmtpServer

# Huey compares ETAs with the real clock: the injected time lies ahead of it.
NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
START = NOW.replace(hour=0, minute=0, second=0) + timedelta(days=1)


class Records(logging.Handler):
    """Every record at INFO or above that reaches the root logger."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        taken = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in self.records]
        self.records.clear()
        return taken


@pytest.fixture
def logs() -> Iterator[Records]:
    """``configure_logging("INFO")`` as in a fresh process (the root logger without the
    test runner's handlers), then our handler in place of its own; all put back after."""
    root = logging.getLogger()
    names = ["", *CHATTY_LIBRARIES, "huey.consumer", "googleapiclient.discovery"]
    levels = {n: logging.getLogger(n).level for n in names}
    runner_handlers = list(root.handlers)
    for h in runner_handlers:
        root.removeHandler(h)
    configure_logging("INFO")
    for h in list(root.handlers):  # the service's own, writing to stderr
        root.removeHandler(h)
    handler = Records()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for h in runner_handlers:
            root.addHandler(h)
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def _event(start: datetime, summary: str) -> str:
    end = start + timedelta(hours=1)
    return (
        f"BEGIN:VEVENT\r\nUID:{summary}@t\r\nDTSTAMP:20261101T000000Z\r\n"
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}\r\nDTEND:{end:%Y%m%dT%H%M%SZ}\r\n"
        f"SUMMARY:{summary}\r\nEND:VEVENT\r\n"
    )


@dataclass
class World:
    huey: Huey
    feeds: list[Path]
    now: datetime = START
    syncs: int = 0  # sync_account jobs executed

    def clock(self) -> datetime:
        return self.now

    def write(self, feed: Path, moved: int = 0) -> None:
        feed.write_text("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n"
                        + _event(START + timedelta(days=1, hours=10 + moved), feed.stem)
                        + "END:VCALENDAR\r\n")  # fmt: skip

    def polling_round(self) -> None:
        """Two seconds on: what the schedule holds for then is queued, and what the queue
        holds is executed, as the consumer's scheduler and workers would."""
        self.now += timedelta(seconds=2)
        for task in self.huey.read_schedule(self.now.replace(tzinfo=None)):
            self.huey.enqueue(task)
        while (task := self.huey.dequeue()) is not None:  # what has an ETA waits for it
            self.syncs += task.name == "sync_account"
            self.huey.execute(task, timestamp=self.now.replace(tzinfo=None))


PAIRS = 4


@pytest.fixture
def world(sqlite_uow: UnitOfWork, tmp_path: Path) -> Iterator[World]:
    with SmtpServer() as smtp:
        settings = Settings(
            data_dir=tmp_path,
            sync=SyncSettings(poll_interval_seconds=2),
            notify=NotifySettings(coalesce_seconds=0),
            queue=QueueSettings(backend="sqlite", name="quiet"),
        )
        channel = SmtpChannel("127.0.0.1", smtp.port, "assistant@example.com", timeout=5)
        huey = build_huey(settings)
        w = World(huey, [])
        svc = Service(settings=settings, engine=sqlite_uow.engine, uow=sqlite_uow,
                      clock=w.clock, channels={"smtp": channel})  # fmt: skip
        for i in range(PAIRS):
            deps = deps_for(sqlite_uow, START)
            add_pair(deps, name=f"pair{i}", manager_email=f"m{i}@example.com",
                     assistant_email=f"a{i}@example.com")  # fmt: skip
            feed = tmp_path / f"cal{i}.ics"
            w.write(feed)
            w.feeds.append(feed)
            add_account(deps, pair=f"pair{i}", name=f"work{i}", provider="ics",
                        settings={"location": str(feed)})  # fmt: skip
        runtime.install(svc)
        tasks.register(huey, periodic=False)
        try:
            yield w
        finally:
            runtime.install(None)


def test_rounds_without_changes_write_nothing_and_a_change_one_line_each(
    world: World, logs: Records
) -> None:
    tasks.keep_polling(world.now, 2)
    world.polling_round()  # every account is due: the first syncs, each calendar's baseline
    baselines = logs.take()
    assert len(baselines) == PAIRS, baselines
    assert all("baseline" in line for line in baselines), baselines

    before = world.syncs
    for _ in range(10):
        world.polling_round()
    assert world.syncs - before == 10 * PAIRS, "every round polled every account"
    assert logs.take() == [], "rounds that found nothing are DEBUG, Huey's task lines too"

    world.write(world.feeds[0], moved=2)  # one pair's meeting moved
    world.polling_round()
    said = logs.take()
    assert len(said) == 2, said
    assert "1 change(s)" in said[0] and said[1].endswith("sent (smtp)"), said


def test_http_clients_and_huey_are_not_at_info_by_default(logs: Records) -> None:
    """They log each request's URL (which may hold a credential) and each task at INFO."""
    for name in ("httpx", "httpcore", "huey", "huey.consumer", "urllib3", "googleapiclient"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
    logging.getLogger("httpx").info("HTTP Request: GET https://u:p@example.com/cal")
    assert logs.take() == []
    assert logging.getLogger("assistant.services.pipeline").isEnabledFor(logging.INFO)


def test_an_undelivered_notification_is_one_warning_without_a_traceback(
    sqlite_uow: UnitOfWork, logs: Records
) -> None:
    from assistant.entrypoints.embedded import free_port
    from assistant.services import outbox
    from config.settings import OutboxSettings

    port = free_port()  # nothing listens there
    with sqlite_uow.begin() as s:
        outbox.enqueue(s, key="k", channel="smtp", recipient="sam@example.com", subject="Moved",
                       body_text="Moved.", pair_id=None, now=START)  # fmt: skip
    closed = {"smtp": SmtpChannel("127.0.0.1", port, "assistant@example.com", timeout=2)}
    report = outbox.drain(sqlite_uow, closed, lambda: START, OutboxSettings())
    [not_sent] = report.not_sent
    assert not_sent.error.startswith(f"cannot reach SMTP server 127.0.0.1:{port}")
    assert not_sent.retry_at == START + timedelta(seconds=OutboxSettings().backoff_seconds)
    [record] = logs.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert f"127.0.0.1:{port}" in record.getMessage() and "retry in" in record.getMessage()
