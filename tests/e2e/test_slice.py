"""The whole slice on real parts: Radicale (CalDAV) → Huey consumer → store → outbox → SMTP.

Runs on SQLite and PostgreSQL, with Huey on SQLite and on Redis. The manager's other
client changes the calendar by plain HTTP; the assistant's mailbox is an aiosmtpd server.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from huey import Huey
from sqlalchemy import select

from assistant.bootstrap import Service, build
from assistant.entrypoints.embedded import EmbeddedRadicale
from assistant.entrypoints.runner import start_consumer
from assistant.services import delegation, delegation_views
from assistant.services.pairs import add_account, add_pair
from assistant.store.db import UnitOfWork
from assistant.store.tables import Checkpoint, OutboxEntry
from config.settings import load
from connectors.base import Window
from connectors.caldav.calendar import CalDavCalendar
from jobs import runtime
from jobs.tasks import Jobs, register
from tests.support.deps import deps_for
from tests.support.smtp import SmtpServer

ZONE = "Europe/Berlin"


def ics(uid: str, start: str, end: str, summary: str, location: str = "") -> str:
    loc = f"LOCATION:{location}\r\n" if location else ""
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//other client//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20261120T080000Z\r\nDTSTART;TZID={ZONE}:{start}\r\n"
        f"DTEND;TZID={ZONE}:{end}\r\nSUMMARY:{summary}\r\n{loc}END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


@dataclass
class Slice:
    svc: Service
    jobs: Jobs
    smtp: SmtpServer
    calendar_url: str
    http: httpx.Client
    account_id: int
    pair_id: int

    def put(self, uid: str, body: str) -> None:
        self.http.put(
            f"{self.calendar_url}{uid}.ics", content=body,
            headers={"Content-Type": "text/calendar"},
        ).raise_for_status()  # fmt: skip

    def delete(self, uid: str) -> None:
        self.http.delete(f"{self.calendar_url}{uid}.ics").raise_for_status()

    def run(self, result: Any) -> Any:
        return result.get(blocking=True, timeout=30)

    def outbox(self) -> list[tuple[str, int]]:
        """(state, attempts) of every outbox entry, oldest first."""
        with self.svc.uow.read() as s:
            rows = s.execute(
                select(OutboxEntry.state, OutboxEntry.attempts).order_by(OutboxEntry.id)
            )
            return [(state, attempts) for state, attempts in rows]


@pytest.fixture
def world(
    uow: UnitOfWork,
    database_url: str,
    huey_backend: Huey,
    radicale: EmbeddedRadicale,
    smtp_server: SmtpServer,
    tmp_path: Path,
) -> Iterator[Slice]:
    settings = load(
        None,
        data_dir=str(tmp_path / "data"),
        database={"url": database_url},
        queue={"workers": 2, "scheduler": False},
        smtp={"host": smtp_server.host, "port": smtp_server.port},
        outbox={"backoff_seconds": 0.5, "backoff_max_seconds": 1},
        notify={"coalesce_seconds": 1},
    )
    svc = build(settings)
    runtime.install(svc)
    jobs = register(huey_backend, periodic=False)
    consumer = start_consumer(huey_backend, settings)
    url = radicale.new_calendar("calendar", user="alex")
    now = datetime.now(UTC)
    pair = add_pair(
        deps_for(svc.uow, now), name="alex", manager_name="Alex Morgan", manager_email="alex@example.com",
        assistant_name="Sam Lee", assistant_email="sam@example.com", timezone=ZONE,
    )  # fmt: skip
    account = add_account(
        deps_for(svc.uow, now), pair=pair.id, name="work", provider="caldav", settings={"url": url}
    )
    with httpx.Client(timeout=10) as http:
        try:
            yield Slice(svc, jobs, smtp_server, url, http, account.id, pair.id)
        finally:
            consumer.stop(graceful=True)
            runtime.install(None)
            svc.engine.dispose()


def day(offset: int) -> str:
    """A date ``offset`` days from today, as iCalendar YYYYMMDD (changes are within 14 days)."""
    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y%m%d")


def test_a_change_reaches_the_assistant_once_even_when_jobs_run_again(world: Slice) -> None:
    d = day(2)
    world.put("board", ics("board", f"{d}T100000", f"{d}T120000", "Board meeting", "Boardroom"))
    world.put("lunch", ics("lunch", f"{d}T130000", f"{d}T140000", "Investor lunch", "Café"))
    first = world.run(world.jobs.sync_account(world.account_id))
    assert first["full"] is True
    assert first["changes"] == 0, "the first sync is a baseline"

    world.put("board", ics("board", f"{d}T150000", f"{d}T170000", "Board meeting", "Video call"))
    world.delete("lunch")
    second = world.run(world.jobs.sync_account(world.account_id))
    assert second["changes"] == 2
    mails = world.smtp.wait_for(1, timeout=15)
    assert len(mails) == 1
    mail = mails[0].message
    assert mail["To"].addresses[0].addr_spec == "sam@example.com"
    assert "2 changes" in mail["Subject"]
    text = mail.get_body(preferencelist=("plain",)).get_content()
    assert "Board meeting" in text
    assert "Investor lunch" in text
    assert "Video call" in text

    # Every job again, twice: nothing new to say, nothing sent again.
    for _ in range(2):
        assert world.run(world.jobs.sync_account(world.account_id))["changes"] == 0
        world.run(world.jobs.drain_outbox())
    assert len(world.smtp.messages) == 1
    assert [state for state, _ in world.outbox()] == ["sent"]


def test_a_refused_delivery_is_retried_by_the_job_and_sent_once(world: Slice) -> None:
    d = day(3)
    world.put("review", ics("review", f"{d}T090000", f"{d}T100000", "Product review"))
    world.run(world.jobs.sync_account(world.account_id))
    world.smtp.fail_next(1)
    world.put("review", ics("review", f"{d}T110000", f"{d}T120000", "Product review"))
    assert world.run(world.jobs.sync_account(world.account_id))["changes"] == 1
    mails = world.smtp.wait_for(1, timeout=20)  # the drain job rescheduled itself
    assert world.smtp.refused == 1
    world.run(world.jobs.drain_outbox())
    assert len(world.smtp.messages) == len(mails) == 1
    assert world.outbox() == [("sent", 2)]


def test_a_delegated_task_blocks_two_slots_that_follow_the_task(world: Slice) -> None:
    d = day(4)
    world.put("busy", ics("busy", f"{d}T090000", f"{d}T180000", "Offsite"))
    world.run(world.jobs.sync_account(world.account_id))
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    deadline = start + timedelta(days=4)
    task = delegation.create_task(
        world.svc, pair=world.pair_id, title="Board pack", delegate="",
        term_start=start, deadline=deadline, result="Deck approved",
    )  # fmt: skip
    report = world.run(world.jobs.write_checkpoints(task.id))
    assert len(report["written"]) == 2
    cal = CalDavCalendar(world.calendar_url)

    def ours() -> list[Any]:
        now = datetime.now(UTC)
        delta = cal.changes(None, Window(now - timedelta(days=1), now + timedelta(days=30), ZONE))
        return [e for r in delta.resources for e in r.events if e.own_marker]

    events = ours()
    assert len(events) == 2
    offsite = (
        datetime.strptime(f"{d}T090000", "%Y%m%dT%H%M%S"),
        datetime.strptime(f"{d}T180000", "%Y%m%dT%H%M%S"),
    )
    for e in events:  # never over the manager's busy day
        local_start = e.start.astimezone(ZoneInfo(ZONE)).replace(tzinfo=None)
        assert not (offsite[0] <= local_start < offsite[1])
    assert any("Does the work match" in e.description for e in events)

    # Our own events are not the manager's changes.
    assert world.run(world.jobs.sync_account(world.account_id))["changes"] == 0

    # Deadline moved: both events updated in place, still two; written again → nothing new.
    delegation.update_task(world.svc, task.id, deadline=deadline + timedelta(days=2))
    moved = world.run(world.jobs.write_checkpoints(task.id))
    assert len(moved["written"]) == 2
    again = world.run(world.jobs.write_checkpoints(task.id))
    assert again["written"] == []
    after = ours()
    assert len(after) == 2
    assert {e.uid for e in after} == {e.uid for e in events}
    dead_before = max(e.start for e in events)
    dead_after = max(e.start for e in after)
    assert dead_after > dead_before

    # Cancelled: both removed from the calendar.
    delegation.cancel_task(world.svc, task.id)
    removed = world.run(world.jobs.write_checkpoints(task.id))
    assert len(removed["removed"]) == 2
    assert ours() == []
    with world.svc.uow.read() as s:
        assert {c.state for c in s.scalars(select(Checkpoint))} == {"removed"}
    assert world.run(world.jobs.sync_account(world.account_id))["changes"] == 0
    assert world.smtp.messages == []


def test_a_prompt_reaches_the_manager_and_its_link_is_answered(world: Slice) -> None:
    from starlette.testclient import TestClient

    from assistant.entrypoints.web.app import create_app
    from assistant.services.feedback import score

    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    task = delegation.create_task(
        world.svc, pair=world.pair_id, title="Offsite agenda", delegate="kim@example.com",
        term_start=start, deadline=start + timedelta(days=3),
    )  # fmt: skip
    written = world.run(world.jobs.write_checkpoints(task.id))
    assert len(written["written"]) == 2
    assert len(written["ahead"]) == 2, "a prompt is scheduled at each line (an ETA)"
    # The Red Line comes: the job the ETA would run, run now.
    red_id, red_start = written["ahead"][0]
    world.run(world.jobs.checkpoint_prompt(red_id, red_start))
    mails = world.smtp.wait_for(2, timeout=20)
    by_to = {m.message["To"].addresses[0].addr_spec: m.message for m in mails}
    assert set(by_to) == {"alex@example.com", "kim@example.com"}
    body = by_to["alex@example.com"].get_body(preferencelist=("plain",)).get_content()
    assert "Does the work match the agreed parameters" in body
    link = next(w for w in body.split() if "/feedback/" in w)
    # The manager answers on the page the link opens (served by the real app).
    client = TestClient(create_app(world.svc))
    path = link.split("/feedback/", 1)[1]
    assert client.get(f"/feedback/{path}").status_code == 200
    answer = client.post(f"/feedback/{path}", data={
        "csrf": client.cookies.get("fb_csrf"), "percent_done": "50", "on_track": "yes",
    })  # fmt: skip
    assert answer.status_code == 200
    assert client.get(f"/feedback/{path[:-2]}zz").status_code == 403
    view = delegation_views.task_view(world.svc, task.id)
    assert view.state == "in_progress"
    # A second run of the same prompt sends nothing more.
    world.run(world.jobs.checkpoint_prompt(red_id, red_start))
    world.run(world.jobs.drain_outbox())
    assert len(world.smtp.messages) == 2
    assert score(world.svc, world.pair_id).open == 1
