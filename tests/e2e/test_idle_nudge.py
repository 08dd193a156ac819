"""IMAP IDLE → sync → a nudge scheduled, with no poll: real Dovecot, Huey consumer, store.

The manager's mail client (here: an APPEND from another connection) files a new message
from the assistant; the push waiter `assistant run` starts hears it in IDLE, queues the
mailbox sync, the sync imports the message and queues the nudge job, which plans itself
for the moment 80% of the SLA will have passed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from assistant.adapters.push import PushSupervisor
from assistant.bootstrap import build
from assistant.entrypoints.runner import start_consumer
from assistant.services.pairs import add_account, add_pair
from assistant.store.migrate import upgrade
from assistant.store.tables import Message
from config.settings import load
from jobs import runtime
from jobs.queue import build_huey
from jobs.tasks import register
from tests.support.dovecot import Dovecot


def test_a_message_arriving_in_idle_is_imported_and_its_nudge_planned(
    dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load(None, data_dir=str(tmp_path / "data"),
                    queue={"workers": 2, "scheduler": False},
                    sync={"poll_interval_seconds": 3600})  # fmt: skip  # no polling at all
    settings.data_dir.mkdir(parents=True)
    upgrade(settings.database_url)
    svc = build(settings)
    runtime.install(svc)
    huey = build_huey(settings)
    jobs = register(huey, periodic=False)
    consumer = start_consumer(huey, settings)
    # Working every day, all day, so the SLA clock runs whenever the test does.
    every_day = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    pair = add_pair(svc, name="alex", manager_email="alex@example.com",
                    assistant_email="sam@example.com", working_hours=every_day)  # fmt: skip
    monkeypatch.setenv("TEST_IMAP_PASSWORD", dovecot.password)
    add_account(svc, pair=pair.id, name="inbox", provider="imap",
                settings={"host": dovecot.host, "port": dovecot.port, "security": "none",
                          "username": dovecot.username, "password": {"env": "TEST_IMAP_PASSWORD"}})  # fmt: skip
    push = PushSupervisor(svc, lambda account_id: jobs.sync_account(account_id), idle_seconds=5)
    push.start()
    try:
        time.sleep(0.5)
        sent = datetime.now(UTC)
        client = dovecot.client()
        client.append("INBOX", (
            "From: Sam <sam@example.com>\r\nTo: Alex <alex@example.com>\r\n"
            f"Subject: Budget sign-off\r\nDate: {format_datetime(sent)}\r\n"
            "Message-ID: <idle-1@example.com>\r\n\r\nPlease sign.\r\n"
        ).encode())  # fmt: skip
        client.logout()
        deadline = time.monotonic() + 10
        imported = False
        while time.monotonic() < deadline and not imported:
            with svc.uow.read() as s:
                imported = s.scalars(select(Message.id)).first() is not None
            time.sleep(0.1)
        assert imported, "the message was not imported within 10 s of arriving"
        deadline = time.monotonic() + 10
        planned: list[datetime] = []
        while time.monotonic() < deadline and not planned:
            planned = [
                t.eta.replace(tzinfo=UTC)
                for t in [*huey.scheduled(), *huey.pending()]
                if t.name == "nudge_pair" and t.eta is not None
            ]
            time.sleep(0.1)
        assert planned, "no nudge planned after the import"
        # 80% of the 30-minute SLA after the message was sent.
        assert abs(planned[0] - (sent + timedelta(minutes=24))) < timedelta(seconds=5)
    finally:
        push.stop(timeout=10)
        consumer.stop(graceful=True)
        runtime.install(None)
        svc.engine.dispose()
