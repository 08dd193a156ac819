"""A calendar that refuses its credentials is tried with growing gaps, then parked until
they change; the other account of the pair keeps syncing; the assistant and the manager
get one message when it has failed for 15 minutes and one when it works again; the
digest lists it.

Real parts: Radicale checking passwords (htpasswd: a wrong one is a real 401) behind
the fault proxy (which counts what reached the server), the store on SQLite and
PostgreSQL, an aiosmtpd server, the Huey jobs in immediate mode (the minute's tick as a
consumer runs it). The clock is injected: the polling rounds run at the default-like
2 s interval of simulated time, without waiting.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from huey import Huey

from assistant.bootstrap import Service, build
from assistant.entrypoints.cli.doctor import _accounts
from assistant.services import pipeline, polling
from assistant.services.accounts import check_account
from assistant.services.digest import preview
from assistant.services.pairs import (
    add_account,
    add_pair,
    list_accounts,
    update_account_settings,
)
from assistant.services.runner import sync_now
from assistant.store.db import UnitOfWork
from assistant.store.tables import Account
from config.settings import load
from jobs import runtime, tasks
from jobs.queue import build_huey
from jobs.tasks import register
from tests.support.fault_proxy import FaultProxy
from tests.support.radicale import RadicaleWithLogins
from tests.support.smtp import SmtpServer
from tests.support.web import Clock

START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
INTERVAL = 2.0


@dataclass
class Desk:
    svc: Service
    clock: Clock
    smtp: SmtpServer
    proxy: FaultProxy
    pair_id: int
    work: int  # alex's calendar: its password was changed at the provider
    home: int  # bob's calendar of the same pair: works

    def poll_for(self, seconds: float, step: float = INTERVAL) -> dict[int, list[datetime]]:
        """Polling rounds every ``step`` s of simulated time (the poll interval stays
        INTERVAL), each due account synced as the ``sync_account`` job does; when each
        account was tried."""
        tried: dict[int, list[datetime]] = {self.work: [], self.home: []}
        end = self.clock() + timedelta(seconds=seconds)
        while self.clock() < end:
            for aid in polling.accounts_due(self.svc.uow, self.clock(), INTERVAL):
                tried.setdefault(aid, []).append(self.clock())
                pipeline.after_poll(self.svc, aid)
            self.clock.advance(seconds=step)
        return tried

    def refused(self) -> int:
        """Requests of the work calendar that reached the server and were refused."""
        return sum(1 for s in self.proxy.seen if s.status == 401)

    def account(self, account_id: int) -> Account:
        with self.svc.uow.read() as s:
            account = s.get(Account, account_id)
            assert account is not None
            s.expunge(account)
            return account

    def mails(self) -> list[tuple[str, str]]:
        return [
            (m.message["To"].addresses[0].addr_spec, str(m.message["Subject"]))
            for m in self.smtp.messages
        ]


@pytest.fixture
def desk(
    uow: UnitOfWork,
    database_url: str,
    smtp_server: SmtpServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Desk]:
    monkeypatch.setenv("ALEX_OLD_PASSWORD", "old secret")
    monkeypatch.setenv("ALEX_NEW_PASSWORD", "new secret")
    monkeypatch.setenv("BOB_PASSWORD", "bob secret")
    clock = Clock(START)
    settings = load(
        None,
        data_dir=str(tmp_path / "data"),
        database={"url": database_url},
        queue={"backend": "memory", "scheduler": False},
        smtp={"host": smtp_server.host, "port": smtp_server.port},
        sync={"poll_interval_seconds": INTERVAL},
    )
    svc = build(settings, clock=clock)
    huey: Huey = build_huey(settings)  # jobs the tick queues are not run: only its own work
    runtime.install(svc)
    register(huey, periodic=False)
    logins = {"alex": "new secret", "bob": "bob secret"}
    with (
        RadicaleWithLogins(tmp_path / "radicale", logins) as radicale,
        FaultProxy(radicale.url) as proxy,
    ):
        pair = add_pair(
            svc, name="alex", manager_name="Alex Morgan", manager_email="alex@example.com",
            assistant_name="Sam Lee", assistant_email="sam@example.com", timezone="Europe/Berlin",
        )  # fmt: skip
        work = add_account(
            svc, pair=pair.id, name="work", provider="caldav",
            settings={"url": proxy.proxied(radicale.new_calendar("work", user="alex")),
                      "username": "alex", "password": {"env": "ALEX_OLD_PASSWORD"}},
        )  # fmt: skip
        home = add_account(
            svc, pair=pair.id, name="home", provider="caldav",
            settings={"url": radicale.new_calendar("home", user="bob"), "username": "bob",
                      "password": {"env": "BOB_PASSWORD"}},
        )  # fmt: skip
        proxy.seen.clear()  # only the service's requests
        try:
            yield Desk(svc, clock, smtp_server, proxy, pair.id, work.id, home.id)
        finally:
            runtime.install(None)
            svc.engine.dispose()


def test_refused_credentials_back_off_then_park_and_the_other_account_syncs(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tried = desk.poll_for(INTERVAL)  # one round
    per_try = desk.refused()  # the client's requests of one try (a challenge, the login)
    assert per_try >= 1
    tried = desk.poll_for(93 - INTERVAL)  # the measurement: 46 tries in 93 s before

    gaps = [(b - a).total_seconds() for a, b in pairwise(tried[desk.work])]
    assert gaps == [4, 8, 16], "tried with doubling gaps from the poll interval (2 s, ...)"
    assert desk.refused() == 5 * per_try, "the server saw 5 tries, not one per poll"
    work = desk.account(desk.work)
    assert work.parked_reason == "credentials" and work.next_try_at is None
    assert work.failures == 5 and work.failing_since == START
    # The other calendar of the same pair was synced all along.
    assert len(tried[desk.home]) >= 40
    home = desk.account(desk.home)
    assert home.state == "ok" and home.last_sync_at is not None
    assert home.last_sync_at >= desk.clock() - timedelta(seconds=2 * INTERVAL)
    assert home.failing_since is None
    # Two lines at WARNING (it fails; it is parked), no ERROR, no traceback; the other
    # tries at DEBUG.
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in loud] == [
        "account 1: CalDAV PROPFIND /alex/work/: credentials refused (reconnect needed)",
        "account 1: credentials refused 5 times; not tried again until they change",
    ]
    assert not any(r.exc_info for r in caplog.records)

    desk.poll_for(600, step=30)  # ten more minutes: parked means not tried at all
    assert desk.refused() == 5 * per_try
    assert desk.mails() == [], "not yet failing for 15 minutes: nobody is told"

    # A push signal or a lost job queues its sync: not tried either.
    assert pipeline.after_poll(desk.svc, desk.work).to_json() == {
        "account_id": desk.work, "parked": True,
        "error": "CalDAV PROPFIND /alex/work/: credentials refused",
    }  # fmt: skip
    assert desk.refused() == 5 * per_try

    # By hand (`assistant sync`) it is tried once more (someone asked) and stays parked;
    # the pair's other account is synced and reported all the same.
    report = sync_now(desk.svc, pair=desk.pair_id, send=False)
    work_line, home_line = [x for x in report.lines if x.kind == "calendar"]
    assert work_line.account == "1 work" and work_line.error
    assert "parked until its credentials change" in work_line.summary
    assert home_line.account == "2 home" and home_line.summary == "no change"
    assert report.failed
    assert desk.refused() == 6 * per_try
    assert desk.account(desk.work).parked_reason == "credentials"


def test_one_alert_and_one_recovery_reach_both_and_the_digest_lists_it(desk: Desk) -> None:
    desk.poll_for(40)  # parked after 5 tries
    assert desk.account(desk.work).parked_reason == "credentials"
    desk.clock.now = START + timedelta(minutes=15)

    tasks.tick()  # the minute's tick queues the alert
    tasks.tick()  # and again: nothing twice
    pipeline.deliver(desk.svc)  # the drain the tick queued

    alerts = sorted(desk.mails())
    assert [to for to, _ in alerts] == ["alex@example.com", "sam@example.com"], alerts
    assert all(subject.startswith("Not synced since") and "work" in subject
               for _, subject in alerts), alerts  # fmt: skip
    body = desk.smtp.messages[0].message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert '"work" (caldav)' in text and "refuses its password" in text
    assert "Reconnect" in text and "stopped trying" in text
    assert "old secret" not in text

    digest = preview(desk.svc, desk.pair_id).message
    assert digest is not None
    assert "Not syncing" in digest.text and '"work" (caldav)' in digest.text
    assert "home" not in digest.text.split("==")[2], "the working account is not listed"

    # New credentials: the account is tried at the next poll, and works.
    update_account_settings(desk.svc, desk.work, {"password": {"env": "ALEX_NEW_PASSWORD"}})
    assert desk.account(desk.work).parked_reason == ""
    desk.poll_for(10)
    tasks.tick()
    pipeline.deliver(desk.svc)

    work = desk.account(desk.work)
    assert work.state == "ok" and work.failing_since is None and work.failures == 0
    mails = sorted(desk.mails())
    assert len(mails) == 4, mails
    recovered = [m for m in mails if m[1].startswith("Working again")]
    assert sorted(to for to, _ in recovered) == ["alex@example.com", "sam@example.com"]
    digest = preview(desk.svc, desk.pair_id).message
    assert digest is not None and "Not syncing" not in digest.text


def test_an_unreachable_server_backs_off_capped_and_is_never_parked(desk: Desk) -> None:
    desk.proxy.stop()  # the work calendar's server is gone: connection refused
    first = desk.poll_for(64)[desk.work]
    later = desk.poll_for(2.5 * 3600, step=120)[desk.work]  # rounds two minutes apart

    gaps = [(b - a).total_seconds() for a, b in pairwise(first)]
    assert gaps == [2, 4, 8, 16, 32], "doubling from the poll interval"
    gaps = [(b - a).total_seconds() for a, b in pairwise(later)]
    assert gaps[-2:] == [1800, 1800], f"capped at 30 min, and still tried: {gaps}"
    work = desk.account(desk.work)
    assert work.parked_reason == "" and work.next_try_at is not None
    views = {v.id: v for v in list_accounts(desk.svc)}  # what `account list` shows
    assert views[desk.work].health == "retrying" and views[desk.work].failures > 5
    assert views[desk.work].next_try_at == work.next_try_at
    # Told once (failing for 15 minutes), to the assistant only: not a credentials problem.
    tasks.tick()
    pipeline.deliver(desk.svc)
    assert [to for to, _ in desk.mails()] == ["sam@example.com"]
    assert "cannot be reached" in desk.smtp.messages[0].message.get_body(
        ("plain",)
    ).get_content()  # type: ignore[union-attr]


def test_doctor_says_parked_with_the_fix_without_trying_it(desk: Desk) -> None:
    desk.poll_for(40)  # parked after 5 tries
    refused = desk.refused()

    checks = {c.name: c for c in _accounts(desk.svc.settings)}

    work = checks["account 1 work (caldav)"]
    assert not work.ok
    assert work.detail == ("the provider refuses its password or sign-in: 5 tries since "
                           "2026-11-24 09:00 UTC, no longer tried until the credentials change")
    assert work.fix.startswith("Enter the new password, or sign in again")
    assert desk.refused() == refused, "doctor does not try a parked account"
    assert checks["account 2 home (caldav)"].ok
    views = {v.name: v for v in list_accounts(desk.svc)}  # what `account list` shows
    assert (views["work"].health, views["work"].parked) == ("parked", "credentials")
    assert views["home"].health not in ("parked", "retrying")


def test_a_check_that_gets_in_unparks_it(desk: Desk) -> None:
    desk.poll_for(40)
    assert desk.account(desk.work).parked_reason == "credentials"
    assert desk.work not in polling.accounts_due(desk.svc.uow, desk.clock(), INTERVAL)

    # The secret it refers to is mended outside the service; a Check (the web's button)
    # that gets in puts it back into polling, and the next poll syncs it.
    os.environ["ALEX_OLD_PASSWORD"] = "new secret"  # the fixture's monkeypatch restores it
    assert check_account(desk.svc, desk.pair_id, desk.work).ok
    assert desk.account(desk.work).parked_reason == ""
    assert desk.work in polling.accounts_due(desk.svc.uow, desk.clock(), INTERVAL)
    desk.poll_for(INTERVAL)
    work = desk.account(desk.work)
    assert work.state == "ok" and work.failing_since is None
