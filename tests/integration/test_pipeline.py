"""What follows a sync, in the same run: a question or a notification the sync queued is
reported and delivered before the job (or ``assistant sync``) returns, not at the next tick.

Real parts: Radicale (CalDAV), the store on SQLite and PostgreSQL, an aiosmtpd server, and
the Huey jobs in immediate mode (each job runs in the caller, as a consumer would run it).
"""

from __future__ import annotations

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
        yield Desk(svc, jobs, smtp_server, url, account.id, pair.id)
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
