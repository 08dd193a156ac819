"""Bursts and undo as the assistant sees them through polling (issue 14, point 12).

The real jobs (``jobs.tasks``: ``sync_account``, ``dispatch_changes`` and what ``follow``
schedules), the real pipeline, Radicale (CalDAV), the store (SQLite: what is tested here is
when, not how it is stored) and an aiosmtpd server; time is injected. A small driver
plays the consumer: it runs the polling rounds on their 30 s grid (recording the loop mark, as ``sync_due`` does, so the
jobs know when the next round comes), the manager's edits at their instants, and every
task the jobs schedule at its ETA, in time order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from huey import Huey
from huey.api import Task
from sqlalchemy import select

from assistant.bootstrap import Service, build
from assistant.entrypoints.embedded import EmbeddedRadicale
from assistant.services.pairs import add_account, add_pair
from assistant.services.polling import LoopMark
from assistant.services.priorities import add_rule
from assistant.store.db import UnitOfWork
from assistant.store.tables import OutboxEntry, ScheduleChange
from config.settings import load
from jobs import runtime
from jobs.queue import build_huey
from jobs.tasks import POLL_LOOP_KEY, register
from tests.support.smtp import SmtpServer

ZONE = "Europe/Berlin"
POLL = 30.0
# Huey compares ETAs with the real clock: the injected time lies ahead of it, so what the
# jobs schedule stays scheduled until the driver runs it.
T0 = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=1)  # on the grid


def day(offset: int) -> str:
    return (T0 + timedelta(days=offset)).strftime("%Y%m%d")


def ics(uid: str, hour: int, summary: str = "Board meeting") -> str:
    d = day(2)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//other client//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20261120T080000Z\r\nDTSTART;TZID={ZONE}:{d}T{hour:02d}0000\r\n"
        f"DTEND;TZID={ZONE}:{d}T{hour + 1:02d}0000\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\n"
        "END:VCALENDAR\r\n"
    )


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Desk:
    svc: Service
    huey: Huey
    clock: Clock
    smtp: SmtpServer
    url: str
    account_id: int
    pair_id: int
    syncs: list[tuple[float, bool]] = field(default_factory=list)  # (at, re-poll?)
    _when: dict[str, float] = field(default_factory=dict)

    def put(self, uid: str, body: str) -> None:
        httpx.put(f"{self.url}{uid}.ics", content=body,
                  headers={"Content-Type": "text/calendar"}).raise_for_status()  # fmt: skip

    def play(self, edits: dict[float, Callable[[], None]], until: float) -> None:
        """Run from T0 to T0 + ``until`` s: rounds every POLL s (the first at T0), the
        edits at their seconds (before a round at the same instant), and every task the
        jobs queue or schedule, at its ETA (a queued one at once)."""
        waiting: list[Task] = []
        rounds = [i * POLL for i in range(int(until // POLL) + 1)]
        moments = sorted({*edits, *rounds})
        while True:
            while (task := self.huey.dequeue()) is not None:
                self._when[task.id] = self._planned(task)
                waiting.append(task)
            due = [(self._when[t.id], i) for i, t in enumerate(waiting)]
            task_at, index = min(due) if due else (float("inf"), -1)
            if moments and moments[0] <= task_at:
                self._moment(moments.pop(0), edits, rounds)
                continue
            if task_at > until:
                return
            task = waiting.pop(index)
            self.clock.now = max(self.clock.now, T0 + timedelta(seconds=task_at))
            if len(self.syncs) > 500:
                raise AssertionError(f"runaway: {self.syncs[-5:]}")
            if task.name == "sync_account":
                self.syncs.append((self.seconds(), len(task.args) > 1))
            self.huey.execute(task, timestamp=task.eta)

    def _moment(
        self, at: float, edits: dict[float, Callable[[], None]], rounds: list[float]
    ) -> None:
        self.clock.now = max(self.clock.now, T0 + timedelta(seconds=at))
        if at in edits:
            edits[at]()
        if at in rounds:  # a polling round, as ``sync_due`` runs it
            self.huey.put(POLL_LOOP_KEY, LoopMark("loop", self.clock.now).stored())
            self.huey.enqueue(_sync_task(self.huey, self.account_id))

    def _planned(self, task: Task) -> float:
        """When a task just queued runs, in seconds from T0. An ETA is the injected time;
        a delay Huey turned into an ETA on the real clock counts from the injected now."""
        if task.eta is None:
            return self.seconds()
        eta = task.eta.replace(tzinfo=UTC)
        if eta < T0 - timedelta(hours=12):  # from a delay
            return self.seconds() + (eta - datetime.now(UTC)).total_seconds()
        return (eta - T0).total_seconds()

    def seconds(self) -> float:
        return (self.clock.now - T0).total_seconds()

    def messages(self) -> list[OutboxEntry]:
        with self.svc.uow.read() as s:
            return list(s.scalars(select(OutboxEntry).order_by(OutboxEntry.id)))

    def states(self) -> list[str]:
        with self.svc.uow.read() as s:
            return list(s.scalars(select(ScheduleChange.state).order_by(ScheduleChange.id)))

    def sent_at(self) -> list[float]:
        return [((m.sent_at.replace(tzinfo=UTC) if m.sent_at else T0) - T0).total_seconds()
                for m in self.messages()]  # fmt: skip


def _sync_task(huey: Huey, account_id: int) -> Task:
    from jobs.tasks import jobs

    return jobs().sync_account.s(account_id)


@pytest.fixture
def make_desk(
    sqlite_uow: UnitOfWork,
    radicale: EmbeddedRadicale,
    smtp_server: SmtpServer,
    tmp_path: Path,
) -> Iterator[Callable[..., Desk]]:
    built: list[Service] = []

    def make(**notify: Any) -> Desk:
        settings = load(
            None,
            data_dir=str(tmp_path / "data"),
            database={"url": str(sqlite_uow.engine.url)},
            queue={"backend": "memory", "scheduler": False},
            smtp={"host": smtp_server.host, "port": smtp_server.port},
            sync={"poll_interval_seconds": POLL},
            notify={"coalesce_seconds": 20, **notify},
        )
        clock = Clock()
        svc = build(settings, clock=clock)
        built.append(svc)
        huey: Huey = build_huey(settings)
        runtime.install(svc)
        register(huey, periodic=False)
        url = radicale.new_calendar("calendar", user="alex")
        pair = add_pair(
            svc, name="alex", manager_name="Alex Morgan", manager_email="alex@example.com",
            assistant_name="Sam Lee", assistant_email="sam@example.com", timezone=ZONE,
        )  # fmt: skip
        account = add_account(svc, pair=pair.id, name="work", provider="caldav",
                              settings={"url": url})  # fmt: skip
        desk = Desk(svc, huey, clock, smtp_server, url, account.id, pair.id)
        desk.put("board", ics("board", 10))
        desk.put("lunch", ics("lunch", 13, "Investor lunch"))
        return desk

    try:
        yield make
    finally:
        runtime.install(None)
        for svc in built:
            svc.engine.dispose()


def edit(desk: Desk, hour: int, summary: str = "Board meeting") -> Callable[[], None]:
    return lambda: desk.put("board", ics("board", hour, summary))


def test_a_poll_inside_a_five_edit_burst_still_makes_one_message(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk()
    # Edits 1 s apart, the round at 30 s lands after the second: it sees a half-done burst.
    burst = {29.0 + i: edit(desk, 11 + i, f"Board meeting v{i + 1}") for i in range(5)}
    desk.play(burst, until=150)
    [message] = desk.messages()
    assert "v5" in message.body_text and "15:00" in message.body_text, "the burst's end"
    assert "v2" not in message.body_text
    assert len(desk.smtp.messages) == 1
    # Sent once the burst was quiet for the window: seen whole by a re-poll at 35 s.
    [sent] = desk.sent_at()
    assert 35 + 20 <= sent <= 35 + 20 + 1, desk.syncs
    repolls = [at for at, again in desk.syncs if again]
    assert repolls == [35.0, 40.0, 45.0, 50.0, 55.0], "every few seconds for the window"


def test_an_edit_undone_10s_later_sends_nothing(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk()
    desk.play({27.0: edit(desk, 16), 37.0: edit(desk, 10)}, until=150)
    assert desk.messages() == [] and desk.smtp.messages == []
    assert desk.states() == ["undone", "undone"]


def test_a_16s_burst_with_a_10s_window_is_one_message(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(coalesce_seconds=10)
    desk.play({29.0: edit(desk, 11), 37.0: edit(desk, 12), 45.0: edit(desk, 14)}, until=150)
    [message] = desk.messages()
    assert "-> Thu" in message.body_text and "14:00–15:00" in message.body_text, "its end"


def test_a_single_change_goes_within_poll_interval_plus_window(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk()
    desk.play({0.5: edit(desk, 16)}, until=120)  # just after a round: the worst case
    [sent] = desk.sent_at()
    assert sent - 0.5 <= POLL + 20 + 2
    assert len(desk.smtp.messages) == 1


def test_a_change_right_after_a_burst_settled_is_seen_by_the_next_round(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk()
    # The last re-poll at 50 s; the round at 60 s must not skip the calendar for it.
    desk.play({29.0: edit(desk, 11), 51.0: edit(desk, 16)}, until=150)
    assert [round(s) for s in desk.sent_at()] == [50, 80]


def test_a_burst_that_never_settles_goes_at_the_cap(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(coalesce_max_seconds=60)
    edits = {1.0 + 10 * i: edit(desk, 11 + i % 6) for i in range(12)}  # every 10 s, for 2 min
    desk.play(edits, until=125)
    first = desk.sent_at()[0]
    assert 30 + 60 <= first <= 30 + 60 + 5, "the first seen at 30 s, out at the cap"


def test_a_high_priority_change_goes_at_once(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk()
    add_rule(desk.svc, pair="alex", kind="keyword", pattern="urgent", level="high")
    desk.play({29.0: edit(desk, 16, "Board meeting urgent")}, until=60)
    assert desk.sent_at() == [30.0]


def test_repolls_are_claimed_once_and_their_claims_freed(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk()
    # A long burst: the rounds at 30 s and 60 s both see changes while it settles.
    edits = {29.0 + 8 * i: edit(desk, 8 + i) for i in range(5)}
    desk.play(edits, until=150)
    repolls = [at for at, again in desk.syncs if again]
    assert len(repolls) == len(set(repolls)), f"one re-poll per instant: {desk.syncs}"
    assert len(desk.messages()) == 1
    kept = desk.huey.storage.result_items()
    assert not [k for k in kept if "repoll" in str(k)], "no claim left behind"
