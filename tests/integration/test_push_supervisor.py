"""The push supervisor `assistant run` starts: a change at the provider queues a sync at once.

Real Dovecot (IMAP IDLE) and the EWS protocol server (streaming), real store.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from assistant.adapters.push import PushSupervisor
from assistant.bootstrap import Service
from assistant.services.pairs import add_account, add_pair
from assistant.store.db import UnitOfWork
from config.settings import Settings
from tests.support.deps import deps_for
from tests.support.dovecot import Dovecot
from tests.support.ews_server import EwsServer, streaming

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


class Signals:
    def __init__(self) -> None:
        self.ids: list[int] = []
        self.cond = threading.Condition()

    def __call__(self, account_id: int) -> None:
        with self.cond:
            self.ids.append(account_id)
            self.cond.notify_all()

    def wait(self, count: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.ids) >= count, timeout)


def service(uow: UnitOfWork, tmp_path: Path) -> Service:
    svc = Service(settings=Settings(data_dir=tmp_path), engine=uow.engine, uow=uow, clock=lambda: NOW)
    add_pair(deps_for(uow, NOW), name="alex", manager_email="alex@example.com", assistant_email="sam@example.com")  # fmt: skip
    return svc


def test_new_mail_in_imap_queues_a_sync_within_two_seconds(
    sqlite_uow: UnitOfWork, tmp_path: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service(sqlite_uow, tmp_path)
    monkeypatch.setenv("TEST_IMAP_PASSWORD", dovecot.password)
    account = add_account(
        deps_for(sqlite_uow, NOW), pair="alex", name="inbox", provider="imap",
        settings={"host": dovecot.host, "port": dovecot.port, "security": "none",
                  "username": dovecot.username, "password": {"env": "TEST_IMAP_PASSWORD"}},
    )  # fmt: skip
    signals = Signals()
    push = PushSupervisor(svc, signals, idle_seconds=5)
    assert push.start() == [account.id]
    try:
        time.sleep(0.5)  # the waiter is in IDLE
        client = dovecot.client()
        started = time.monotonic()
        client.append("INBOX", b"From: sam@example.com\r\nTo: alex@example.com\r\n"
                      b"Subject: Budget\r\nMessage-ID: <p1@x>\r\n\r\nHi\r\n")  # fmt: skip
        client.logout()
        assert signals.wait(1, timeout=2.0), "no sync queued within 2 s of the new message"
        assert signals.ids[0] == account.id
        assert time.monotonic() - started < 2.0
    finally:
        push.stop(timeout=10)
    assert all(not t.is_alive() for t in push.threads.values())


def test_a_calendar_change_on_exchange_queues_a_sync(
    sqlite_uow: UnitOfWork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service(sqlite_uow, tmp_path)
    with EwsServer() as server:
        monkeypatch.setenv("TEST_EWS_PASSWORD", server.password)
        account = add_account(
            deps_for(sqlite_uow, NOW), pair="alex", name="exchange", provider="ews",
            settings={"mailbox": server.mailbox.address, "service_endpoint": server.url,
                      "username": server.username, "password": {"env": "TEST_EWS_PASSWORD"}},
        )  # fmt: skip
        signals = Signals()
        push = PushSupervisor(svc, signals)
        push.start()
        try:
            assert signals.wait(1, timeout=5.0), "no catch-up sync after subscribing"
            assert streaming(server).wait_opened(1)
            time.sleep(0.1)
            start = datetime(2026, 12, 1, 9, tzinfo=UTC)
            began = time.monotonic()
            server.mailbox.add("new", "Dentist", start, start + timedelta(hours=1))
            assert signals.wait(2, timeout=2.0), "no sync queued within 2 s of the change"
            assert time.monotonic() - began < 2.0
            assert set(signals.ids) == {account.id}
        finally:
            push.stop(timeout=10)
