"""What follows a sync, in the same run: a question or a notification the sync queued is
reported and delivered before the job (or ``assistant sync``) returns, not at the next tick.

Real parts: Radicale (CalDAV), the store on SQLite and PostgreSQL, an aiosmtpd server, and
the Huey jobs in immediate mode (each job runs in the caller, as a consumer would run it).
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from huey import Huey
from sqlalchemy import select

from assistant.bootstrap import Service, build
from assistant.entrypoints.embedded import EmbeddedRadicale
from assistant.services import delegation
from assistant.services.pairs import add_account, add_pair
from assistant.services.runner import sync_now
from assistant.store.db import UnitOfWork
from assistant.store.tables import Checkpoint, OutboxEntry
from config.settings import load
from jobs import runtime
from jobs.queue import build_huey
from jobs.tasks import Jobs, register
from tests.support.smtp import SmtpServer

ZONE = "Europe/Berlin"


@dataclass
class Desk:
    svc: Service
    jobs: Jobs
    smtp: SmtpServer
    url: str
    account_id: int
    pair_id: int
    server_port: int

    def delegate(self) -> int:
        """A task whose Red Line and Dead Line are written to the manager's calendar."""
        now = self.svc.now()
        task = delegation.create_task(
            self.svc, pair=self.pair_id, title="Q3 board pack", delegate="",
            term_start=now + timedelta(hours=1), deadline=now + timedelta(days=4),
            result="Deck approved",
        )  # fmt: skip
        assert len(delegation.reconcile_checkpoints(self.svc, task.id).written) == 2
        return task.id

    def delete_red_line(self) -> None:
        """The manager deletes the Red Line event in another calendar client."""
        with self.svc.uow.read() as s:
            href = s.scalars(
                select(Checkpoint.event_href).where(Checkpoint.kind == "red_line")
            ).one()
        httpx.delete(httpx.URL(self.url).join(href)).raise_for_status()

    def questions(self) -> list[int]:
        asked = OutboxEntry.idempotency_key.startswith("checkpoint-deleted:")
        with self.svc.uow.read() as s:
            return list(s.scalars(select(OutboxEntry.id).where(asked)))


@pytest.fixture
def desk(
    uow: UnitOfWork,
    database_url: str,
    radicale: EmbeddedRadicale,
    smtp_server: SmtpServer,
    tmp_path: Path,
) -> Iterator[Desk]:
    settings = load(
        None,
        data_dir=str(tmp_path / "data"),
        database={"url": database_url},
        queue={"backend": "memory", "scheduler": False},
        smtp={"host": smtp_server.host, "port": smtp_server.port},
    )
    svc = build(settings)
    huey: Huey = build_huey(settings, immediate=True)
    runtime.install(svc)
    jobs = register(huey, periodic=False)
    url = radicale.new_calendar("calendar", user="alex")
    pair = add_pair(
        svc, name="alex", manager_name="Alex Morgan", manager_email="alex@example.com",
        assistant_name="Sam Lee", assistant_email="sam@example.com", timezone=ZONE,
    )  # fmt: skip
    account = add_account(
        svc, pair=pair.id, name="work", provider="caldav", settings={"url": url}
    )
    try:
        yield Desk(svc, jobs, smtp_server, url, account.id, pair.id, radicale.port)
    finally:
        runtime.install(None)
        svc.engine.dispose()


def test_the_sync_job_delivers_the_checkpoint_question_it_queued(desk: Desk) -> None:
    assert desk.jobs.sync_account(desk.account_id)()["changes"] == 0  # the baseline
    task_id = desk.delegate()
    desk.delete_red_line()

    result = desk.jobs.sync_account(desk.account_id)()

    [question] = desk.questions()
    assert result["changes"] == 0, "our own events are not news"
    assert result["outbox"] == [question], "the question is reported by the sync"
    [mail] = desk.smtp.messages  # delivered before the job returned
    assert mail.message["To"].addresses[0].addr_spec == "alex@example.com"
    assert "removed from your calendar" in mail.message["Subject"]
    assert f"assistant task restore {task_id}" in mail.message.get_content()
    again = desk.jobs.sync_account(desk.account_id)()
    assert again["outbox"] == [] and len(desk.smtp.messages) == 1, "asked once"


def test_assistant_sync_reports_and_delivers_the_question(desk: Desk) -> None:
    sync_now(desk.svc, account_id=desk.account_id, send=False)  # the baseline
    desk.delegate()
    desk.delete_red_line()

    report = sync_now(desk.svc, account_id=desk.account_id)

    [question] = desk.questions()
    assert report.outbox_ids == (question,)
    [mail] = desk.smtp.messages
    assert "removed from your calendar" in mail.message["Subject"]
    assert [line.kind for line in report.lines] == ["calendar", "send"]
    assert report.lines[-1].summary == "1 sent"


def _watchers() -> set[threading.Thread]:
    """The CalDAV connection pools' idle-connection watcher threads (one per pool)."""
    return {t for t in threading.enumerate() if t.name.endswith("(idle_conn_watch_task)")}


def _connections_to(port: int) -> int:
    """This process's established TCP connections to ``port`` on the loopback."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            mine.add(link[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                cols = line.split()
                remote_port, state, inode = int(cols[2].rsplit(":", 1)[1], 16), cols[3], cols[9]
                count += remote_port == port and state == "01" and inode in mine
    return count


def test_a_sync_leaves_no_connection_or_thread_behind(desk: Desk) -> None:
    """Every sync opens the calendar anew; what it opened ends with the sync, not when the
    garbage collector gets to it (a CalDAV session's pool keeps its sockets and a watcher
    thread of its own: with many pairs polled often, the threads grew with the pairs)."""
    desk.jobs.sync_account(desk.account_id)()  # the baseline
    gc.collect()
    before = _watchers()
    gc.disable()  # what only the collector would free stays, as between two collections
    try:
        for _ in range(3):
            assert desk.jobs.sync_account(desk.account_id)()["changes"] == 0
        assert _connections_to(desk.server_port) == 0, "the syncs' connections are closed"
        left = _watchers() - before
        for t in left:
            t.join(timeout=2)  # a closed pool's watcher ends at once
        assert [t.name for t in left if t.is_alive()] == []
    finally:
        gc.enable()
