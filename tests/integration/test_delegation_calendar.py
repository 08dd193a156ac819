"""Checkpoint events stay true to the task, and the task to the calendar (real Radicale).

The manager's other client moves or deletes our events by plain HTTP; sync brings that
back to the task. Database: SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from assistant.bootstrap import Service
from assistant.entrypoints.embedded import EmbeddedRadicale
from assistant.services import delegation, delegation_views, pipeline
from assistant.services.pairs import add_account, add_pair
from assistant.services.sync import SyncPolicy
from assistant.store.db import UnitOfWork
from assistant.store.tables import Checkpoint, OutboxEntry
from config.settings import Settings
from connectors.base import Window
from connectors.caldav.calendar import CalDavCalendar
from tests.support.deps import deps_for

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # Monday 09:00 in Berlin


@dataclass
class Desk:
    svc: Service
    url: str
    account_id: int
    cal: CalDavCalendar

    def sync(self) -> int:
        report = pipeline.calendar_sync(self.svc, self.account_id, self.cal,
                                        SyncPolicy(horizon=timedelta(days=14)))  # fmt: skip
        return len(report.changes)

    def ours(self) -> dict[str, datetime]:
        now = self.svc.now()
        delta = self.cal.changes(None, Window(now - timedelta(days=2), now + timedelta(days=30), "UTC"))
        return {e.own_marker.split(":")[1]: e.start for r in delta.resources for e in r.events if e.own_marker}

    def checkpoints(self) -> dict[str, tuple[str, datetime | None]]:
        with self.svc.uow.read() as s:
            return {c.kind: (c.state, c.start_at) for c in s.scalars(select(Checkpoint))}

    def href(self, kind: str) -> str:
        with self.svc.uow.read() as s:
            return s.scalars(select(Checkpoint.event_href).where(Checkpoint.kind == kind)).one()


@pytest.fixture
def desk(uow: UnitOfWork, radicale: EmbeddedRadicale, tmp_path: Path) -> Desk:
    clock = {"now": NOW}
    svc = Service(settings=Settings(data_dir=tmp_path), engine=uow.engine, uow=uow,
                  clock=lambda: clock["now"])  # fmt: skip
    url = radicale.new_calendar("calendar", user="alex")
    add_pair(deps_for(uow, NOW), name="alex", manager_email="alex@example.com", assistant_email="sam@example.com",
             timezone="Europe/Berlin")  # fmt: skip
    account = add_account(deps_for(uow, NOW), pair="alex", name="work", provider="caldav", settings={"url": url})  # fmt: skip
    d = Desk(svc, url, account.id, CalDavCalendar(url))
    assert d.sync() == 0
    return d


def local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=BERLIN)


def make_task(desk: Desk) -> int:
    task = delegation.create_task(
        desk.svc, pair="alex", title="Q3 board pack", delegate="", term_start=local(23, 9),
        deadline=local(27, 17), result="Deck approved",
    )  # fmt: skip
    report = delegation.reconcile_checkpoints(desk.svc, task.id)
    assert len(report.written) == 2
    return task.id


def move_event(desk: Desk, kind: str, start: datetime, end: datetime) -> None:
    """The manager drags the event in their calendar app (which keeps unknown properties)."""
    url = httpx.URL(desk.url).join(desk.href(kind))
    body = httpx.get(url).text
    fmt = "%Y%m%dT%H%M%SZ"
    body = re.sub(r"DTSTART[^:\r\n]*:[^\r\n]+", f"DTSTART:{start.astimezone(UTC):{fmt}}", body)
    body = re.sub(r"DTEND[^:\r\n]*:[^\r\n]+", f"DTEND:{end.astimezone(UTC):{fmt}}", body)
    httpx.put(url, content=body, headers={"Content-Type": "text/calendar"}).raise_for_status()


def test_two_events_at_the_lines_then_moved_in_place(desk: Desk) -> None:
    task_id = make_task(desk)
    events = desk.ours()
    assert set(events) == {"red_line", "dead_line"}
    assert events["dead_line"] == local(27, 17).astimezone(UTC)
    assert local(24, 9) <= events["red_line"] <= local(25, 18)  # mid-term, in working hours
    assert desk.sync() == 0, "our events are never the manager's changes"
    delegation.update_task(desk.svc, task_id, deadline=local(30, 17))
    delegation.reconcile_checkpoints(desk.svc, task_id)
    moved = desk.ours()
    assert len(moved) == 2
    assert moved["dead_line"] == local(30, 17).astimezone(UTC)
    assert moved["red_line"] > events["red_line"]


def test_the_manager_moves_a_checkpoint_and_the_task_follows(desk: Desk) -> None:
    task_id = make_task(desk)
    move_event(desk, "red_line", local(26, 8), local(26, 8, 30))
    assert desk.sync() == 0
    state, start = desk.checkpoints()["red_line"]
    assert (state, start) == ("pinned", local(26, 8).astimezone(UTC))
    view = delegation_views.task_view(desk.svc, task_id)
    red = next(c for c in view.checkpoints if c.kind == "red_line")
    assert red.line_at is not None and red.line_at.startswith("2026-11-26T08:00")
    # Writing again does not drag it back; a later deadline keeps the manager's Red Line.
    assert delegation.reconcile_checkpoints(desk.svc, task_id).written == []
    delegation.update_task(desk.svc, task_id, deadline=local(30, 17))
    delegation.reconcile_checkpoints(desk.svc, task_id)
    events = desk.ours()
    assert events["red_line"] == local(26, 8).astimezone(UTC)
    assert events["dead_line"] == local(30, 17).astimezone(UTC)


def test_the_manager_deletes_a_checkpoint_and_is_asked_not_overruled(desk: Desk) -> None:
    task_id = make_task(desk)
    httpx.delete(httpx.URL(desk.url).join(desk.href("red_line"))).raise_for_status()
    assert desk.sync() == 0
    assert desk.checkpoints()["red_line"][0] == "user_deleted"
    with desk.svc.uow.read() as s:
        [question] = s.scalars(select(OutboxEntry)).all()
    assert question.recipient == "alex@example.com"
    assert "removed from your calendar" in question.subject
    assert f"assistant task restore {task_id}" in question.body_text
    report = delegation.reconcile_checkpoints(desk.svc, task_id)
    assert report.written == []
    assert set(desk.ours()) == {"dead_line"}, "not silently recreated"
    assert desk.sync() == 0
    with desk.svc.uow.read() as s:
        assert len(s.scalars(select(OutboxEntry)).all()) == 1, "asked once"
    assert delegation.restore_checkpoints(desk.svc, task_id) == 1
    delegation.reconcile_checkpoints(desk.svc, task_id)
    assert set(desk.ours()) == {"red_line", "dead_line"}


def test_accepted_early_removes_what_is_ahead_and_keeps_what_passed(desk: Desk, uow: UnitOfWork) -> None:
    task_id = make_task(desk)
    red_at = desk.ours()["red_line"]
    desk.svc.clock = lambda: red_at + timedelta(hours=1)
    delegation.accept_task(desk.svc, task_id)
    report = delegation.reconcile_checkpoints(desk.svc, task_id)
    assert len(report.removed) == 1
    assert set(desk.ours()) == {"red_line"}
    states = desk.checkpoints()
    assert states["dead_line"][0] == "removed"
    assert states["red_line"][0] == "written"


def test_cancelled_removes_both(desk: Desk) -> None:
    task_id = make_task(desk)
    delegation.cancel_task(desk.svc, task_id)
    assert len(delegation.reconcile_checkpoints(desk.svc, task_id).removed) == 2
    assert desk.ours() == {}
    assert desk.sync() == 0
