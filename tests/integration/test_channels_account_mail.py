"""Notifications through the pair's connected account (EWS, Graph, Gmail), through the real
outbox (SQLite and PostgreSQL), against the protocol-level servers in tests/support.

A change is detected by the real sync, turned into a message by the real dispatch, and
drained through ``AccountMailChannel`` into the provider's client library and server.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from assistant.adapters.channels.account_mail import AccountMailChannel
from assistant.domain.message_ids import message_id_for
from assistant.domain.model import EventData
from assistant.services import outbox
from assistant.services.notifications import dispatch
from assistant.services.pairs import add_account, add_pair
from assistant.services.sync import SyncPolicy, sync_calendar
from assistant.store.db import UnitOfWork
from assistant.store.tables import Account, OutboxEntry, Pair
from config.settings import NotifySettings, OutboxSettings
from connectors.base import CalendarDelta, CalendarResource, Window
from tests.support.deps import deps_for
from tests.support.ews_server import EwsServer
from tests.support.gmail_server import READONLY, SEND, GmailServer
from tests.support.graph_server import GraphServer

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
SETTINGS = OutboxSettings(
    max_attempts=5, backoff_seconds=30, backoff_max_seconds=100, claim_timeout_seconds=60
)
NOTIFY = NotifySettings(coalesce_seconds=20)
MANAGER, ASSISTANT = "alex@example.com", "sam@example.com"


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class WorkerDied(BaseException):
    """The worker process ends (kill -9) right after the provider accepted the mail."""


class DiesAfterSending:
    def __init__(self, channel: outbox.Channel) -> None:
        self.channel = channel

    def send(self, message: outbox.OutboxMessage) -> None:
        self.channel.send(message)
        raise WorkerDied


class ListSource:
    def __init__(self, events: list[EventData]) -> None:
        self.events = events

    def changes(self, token: str | None, window: Window) -> CalendarDelta:
        res = tuple(CalendarResource(f"h-{e.uid}", "1", (e,)) for e in self.events)
        return CalendarDelta(full=True, resources=res, token="t")


@dataclass
class Sent:
    to: list[str]
    subject: str
    body: str
    message_id: str


# --------------------------------------------------------------------- providers


class Provider:
    """One provider's server, account settings and view of what it sent."""

    name: str
    provider: str

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def sent(self) -> list[Sent]:
        raise NotImplementedError

    def throttle(self, retry_after: int) -> None:
        raise NotImplementedError

    def refuse_credentials(self) -> None:
        raise NotImplementedError


class Ews(Provider):
    name, provider = "ews", "ews"

    def __init__(self, server: EwsServer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.server = server
        monkeypatch.setenv("EA_TEST_EWS_PASSWORD", server.password)

    def settings(self) -> dict[str, Any]:
        return {"mailbox": self.server.mailbox.address, "service_endpoint": self.server.url,
                "username": self.server.username, "password": {"env": "EA_TEST_EWS_PASSWORD"},
                "version": "Exchange2016"}  # fmt: skip

    def sent(self) -> list[Sent]:
        return [Sent(s.to, s.subject, s.body, s.message_id) for s in self.server.sent]

    def throttle(self, retry_after: int) -> None:
        self.server.fail_next(429, retry_after=retry_after)

    def refuse_credentials(self) -> None:
        self.server.fail_next(401)


class Graph(Provider):
    name, provider = "graph", "graph-mail"

    def __init__(self, server: GraphServer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.server = server
        monkeypatch.setenv("EA_TEST_GRAPH_SECRET", server.client_secret)

    def settings(self) -> dict[str, Any]:
        g = self.server
        return {"user": g.user, "tenant": g.tenant, "client_id": g.client_id,
                "client_secret": {"env": "EA_TEST_GRAPH_SECRET"}, "graph_url": g.graph_url,
                "authority_host": g.authority_host, "verify": g.ca_file}  # fmt: skip

    def sent(self) -> list[Sent]:
        return [Sent(s.to, s.subject, s.content, s.internet_message_id) for s in self.server.sent]

    def throttle(self, retry_after: int) -> None:
        self.server.fail_next(429, retry_after=retry_after)

    def refuse_credentials(self) -> None:
        self.server.fail_next(401, times=2)  # the renewed token is refused too


class Gmail(Provider):
    name, provider = "gmail", "gmail"

    def __init__(self, server: GmailServer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.server = server
        client_id, secret = server.add_client()
        refresh = server.issue_refresh_token(MANAGER, client_id, scopes=(READONLY, SEND))
        self.client_id = client_id
        monkeypatch.setenv("EA_TEST_GMAIL_SECRET", secret)
        monkeypatch.setenv("EA_TEST_GMAIL_REFRESH", refresh)

    def settings(self) -> dict[str, Any]:
        return {"auth": "oauth", "client_id": self.client_id,
                "client_secret": {"env": "EA_TEST_GMAIL_SECRET"},
                "refresh_token": {"env": "EA_TEST_GMAIL_REFRESH"},
                "api_root": self.server.url, "token_uri": self.server.token_uri}  # fmt: skip

    def sent(self) -> list[Sent]:
        out = []
        for _, raw in self.server.sent:
            msg = message_from_bytes(raw, policy=policy.default)
            part = msg.get_body(preferencelist=("html", "plain"))
            out.append(Sent([str(msg["To"])], str(msg["Subject"]),
                            part.get_content() if part else "", str(msg["Message-ID"])))  # fmt: skip
        return out

    def throttle(self, retry_after: int) -> None:
        self.server.fail_next(429, retry_after=retry_after, method="messages.send")

    def refuse_credentials(self) -> None:
        self.server.fail_next(401, times=2, method="messages.send")


@pytest.fixture(params=["ews", "graph", "gmail"])
def provider(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Provider]:
    if request.param == "ews":
        with EwsServer() as ews:
            yield Ews(ews, monkeypatch)
    elif request.param == "graph":
        with GraphServer(tmp_path) as graph:
            yield Graph(graph, monkeypatch)
    else:
        with GmailServer() as gmail:
            yield Gmail(gmail, monkeypatch)


# ------------------------------------------------------------------------- world


@dataclass
class World:
    uow: UnitOfWork
    pair_id: int
    calendar_id: int
    clock: Clock
    channel: AccountMailChannel

    def channels(self) -> dict[str, outbox.Channel]:
        return {"account": self.channel, "ews-mail": self.channel,
                "graph-mail": self.channel, "gmail": self.channel}  # fmt: skip

    def notify_through(self, *names: str) -> None:
        with self.uow.begin() as s:
            s.execute(
                update(Pair).where(Pair.id == self.pair_id).values(notify_channels=list(names))
            )

    def board_meeting_moves(self, hours: int = 2) -> list[int]:
        """The manager's board meeting moves; the change is dispatched; the outbox ids."""
        start = NOW + timedelta(days=2)
        moved = EventData(uid="board", start=start + timedelta(hours=hours),
                          end=start + timedelta(hours=hours + 1), summary="Board meeting")  # fmt: skip
        sync_calendar(self.uow, self.calendar_id, ListSource([moved]), self.clock(),
                      SyncPolicy(horizon=timedelta(days=14)))  # fmt: skip
        return list(dispatch(self.uow, self.pair_id, self.clock(), NOTIFY, force=True).outbox_ids)

    def drain(self, channels: dict[str, outbox.Channel] | None = None) -> outbox.DrainReport:
        return outbox.drain(self.uow, channels or self.channels(), self.clock, SETTINGS)

    def entry(self, entry_id: int) -> OutboxEntry:
        with self.uow.read() as s:
            row = s.get(OutboxEntry, entry_id)
            assert row is not None
            s.expunge(row)
            return row


def make_world(uow: UnitOfWork) -> World:
    pair = add_pair(deps_for(uow, NOW), name="alex", manager_email=MANAGER, assistant_email=ASSISTANT)
    calendar = add_account(deps_for(uow, NOW), pair="alex", name="calendar", provider="ics", settings={})
    start = NOW + timedelta(days=2)
    board = EventData(uid="board", start=start, end=start + timedelta(hours=1),
                      summary="Board meeting")  # fmt: skip
    sync_calendar(
        uow, calendar.id, ListSource([board]), NOW, SyncPolicy(horizon=timedelta(days=14))
    )
    return World(uow, pair.id, calendar.id, Clock(), AccountMailChannel(uow, timeout=5))


@pytest.fixture
def world(uow: UnitOfWork, provider: Provider) -> Iterator[World]:
    w = make_world(uow)
    add_account(deps_for(uow, NOW), pair="alex", name="mail", provider=provider.provider,
                settings=provider.settings())  # fmt: skip
    w.notify_through("account")
    yield w
    w.channel.close()


# ------------------------------------------------------------------------- tests


def test_a_change_arrives_once_with_its_message_id(world: World, provider: Provider) -> None:
    [entry_id] = world.board_meeting_moves()
    first, second = world.drain(), world.drain()
    assert (first.claimed, first.sent, second.claimed) == (1, 1, 0)
    row = world.entry(entry_id)
    assert row.state == "sent" and row.channel == "account"
    [mail] = provider.sent()
    assert mail.to == [ASSISTANT]
    assert mail.subject == row.subject and "Board meeting" in mail.subject
    assert "Board meeting" in mail.body
    assert mail.message_id == message_id_for(row.idempotency_key)


def test_throttled_is_retried_after_retry_after(world: World, provider: Provider) -> None:
    [entry_id] = world.board_meeting_moves()
    provider.throttle(retry_after=90)
    report = world.drain()
    row = world.entry(entry_id)
    assert (report.retried, row.state, provider.sent()) == (1, "pending", [])
    assert "throttled" in row.last_error or "rate limited" in row.last_error
    assert row.next_attempt_at is not None
    assert row.next_attempt_at.replace(tzinfo=UTC) == NOW + timedelta(seconds=90)
    world.clock.advance(89)
    assert world.drain().claimed == 0
    world.clock.advance(1)
    assert world.drain().sent == 1
    assert len(provider.sent()) == 1


def test_refused_credentials_wait_long_and_say_reconnect(world: World, provider: Provider) -> None:
    [entry_id] = world.board_meeting_moves()
    provider.refuse_credentials()
    assert world.drain().retried == 1
    row = world.entry(entry_id)
    assert row.state == "pending" and provider.sent() == []
    assert "reconnect the account" in row.last_error
    assert f"{provider.provider} account 'mail'" in row.last_error
    assert row.next_attempt_at is not None
    assert row.next_attempt_at.replace(tzinfo=UTC) == NOW + timedelta(hours=1)
    world.clock.advance(3600)  # reconnected meanwhile: the fault is spent
    assert world.drain().sent == 1
    assert len(provider.sent()) == 1


def test_a_crash_after_the_provider_accepted_does_not_send_again(
    world: World, provider: Provider
) -> None:
    [entry_id] = world.board_meeting_moves()
    dying = {name: DiesAfterSending(ch) for name, ch in world.channels().items()}
    with pytest.raises(WorkerDied):
        world.drain(dying)  # type: ignore[arg-type]
    assert world.entry(entry_id).state == "sending"
    assert len(provider.sent()) == 1
    world.clock.advance(SETTINGS.claim_timeout_seconds + 1)  # the claim runs out
    report = world.drain()
    assert (report.claimed, report.sent) == (1, 1)
    assert len(provider.sent()) == 1  # found in Sent Items, not sent again
    assert world.entry(entry_id).state == "sent"


def test_an_invalid_recipient_is_a_dead_letter(world: World, provider: Provider) -> None:
    with world.uow.begin() as s:
        entry = outbox.enqueue(
            s, key="k:bad", channel="account", recipient="not-an-address", subject="S",
            body_text="T", pair_id=world.pair_id, now=NOW,
        )  # fmt: skip
        assert entry is not None
        entry_id = entry.id
    assert world.drain().dead == 1
    row = world.entry(entry_id)
    assert row.state == "dead" and provider.sent() == []
    assert f"{provider.provider} account 'mail'" in row.last_error


def test_graph_reply_lost_after_acceptance_is_not_sent_again(
    uow: UnitOfWork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with GraphServer(tmp_path) as server:
        graph = Graph(server, monkeypatch)
        w = make_world(uow)
        add_account(deps_for(uow, NOW), pair="alex", name="mail", provider="graph-mail",
                    settings=graph.settings())  # fmt: skip
        w.notify_through("graph-mail")
        [entry_id] = w.board_meeting_moves()
        server.drop_next("POST")  # sendMail is carried out, its 202 never arrives
        assert w.drain().retried == 1
        assert len(graph.sent()) == 1
        w.clock.advance(30)
        assert w.drain().sent == 1
        assert len(graph.sent()) == 1
        assert w.entry(entry_id).state == "sent"
        w.channel.close()


def test_a_refresh_token_rotated_while_sending_is_stored_for_the_next_process(
    uow: UnitOfWork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.sealed import Keyring, install

    keyring = Keyring.from_secrets(["a test secret key, long enough to derive from"])
    install(keyring)
    try:
        with GraphServer(tmp_path) as server:
            graph = Graph(server, monkeypatch)
            server.single_use_refresh_tokens = True  # a used token is refused afterwards
            conf = graph.settings() | {
                "client_secret": "", "refresh_token": keyring.seal(server.issue_refresh_token())
            }  # fmt: skip
            w = make_world(uow)
            account = add_account(deps_for(uow, NOW), pair="alex", name="mail", provider="graph-mail",
                                  settings=conf)  # fmt: skip
            w.notify_through("graph-mail")
            w.board_meeting_moves()
            assert w.drain().sent == 1
            w.channel.close()
            # Another process (a restarted worker) opens the account from the store.
            w.channel = AccountMailChannel(uow, timeout=5)
            server.expire_access_tokens()
            w.board_meeting_moves(hours=3)
            assert w.drain().sent == 1
            assert len(graph.sent()) == 2
            with uow.read() as s:
                stored = s.get(Account, account.id).settings["refresh_token"]  # type: ignore[union-attr]
            assert keyring.open(stored["encrypted"]) in server._refresh
            w.channel.close()
    finally:
        install(None)


def test_a_pair_names_accounts_by_id_and_by_provider(
    uow: UnitOfWork, monkeypatch: pytest.MonkeyPatch
) -> None:
    with EwsServer() as ews_server, GmailServer() as gmail_server:
        ews, gmail = Ews(ews_server, monkeypatch), Gmail(gmail_server, monkeypatch)
        w = make_world(uow)
        add_account(deps_for(uow, NOW), pair="alex", name="exchange", provider="ews", settings=ews.settings())  # fmt: skip
        google = add_account(deps_for(uow, NOW), pair="alex", name="google", provider="gmail",
                             settings=gmail.settings())  # fmt: skip
        other = add_pair(deps_for(uow, NOW), name="other", manager_email="kim@example.com",
                         assistant_email="lee@example.com")  # fmt: skip
        stranger = add_account(deps_for(uow, NOW), pair="other", name="theirs", provider="gmail",
                               settings=gmail.settings())  # fmt: skip
        w.notify_through(f"account:{google.id}", "ews-mail", f"account:{stranger.id}")
        ids = w.board_meeting_moves()
        assert len(ids) == 3
        report = w.drain()
        assert (report.sent, report.dead) == (2, 1)
        assert [m.to for m in gmail.sent()] == [[ASSISTANT]]
        assert [m.to for m in ews.sent()] == [[ASSISTANT]]
        with uow.read() as s:
            dead = s.scalars(select(OutboxEntry).where(OutboxEntry.state == "dead")).one()
        assert dead.channel == f"account:{stranger.id}"
        assert "is not one that can send mail" in dead.last_error
        assert other.id != w.pair_id
        w.channel.close()


def test_the_default_account_prefers_the_one_marked_to_send(
    uow: UnitOfWork, monkeypatch: pytest.MonkeyPatch
) -> None:
    with EwsServer() as ews_server, GmailServer() as gmail_server:
        ews, gmail = Ews(ews_server, monkeypatch), Gmail(gmail_server, monkeypatch)
        w = make_world(uow)
        add_account(deps_for(uow, NOW), pair="alex", name="exchange", provider="ews", settings=ews.settings())  # fmt: skip
        add_account(deps_for(uow, NOW), pair="alex", name="google", provider="gmail",
                    settings={**gmail.settings(), "send_mail": True})  # fmt: skip
        w.notify_through("account")
        w.board_meeting_moves()
        assert w.drain().sent == 1
        assert (len(gmail.sent()), len(ews.sent())) == (1, 0)
        raw = gmail_server.sent[0][1]
        assert b"Auto-Submitted: auto-generated" in raw
        w.channel.close()
