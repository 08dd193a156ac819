"""Google Calendar watch channels end to end over real HTTP: events.watch and channels.stop
through google-api-python-client against the protocol-level server
(tests/support/google_server), which POSTs its messages to our receiver app
(assistant/entrypoints/web/push.py) served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette

from assistant.entrypoints.web.push import MemoryDirectory, push_routes
from assistant.services.push import PushSignal
from connectors.base import ConnectorError
from connectors.google.calendar import GoogleCalendar
from connectors.google.push import GoogleChannel, GoogleWatches
from tests.support.google_server import GoogleCalendarServer, push
from tests.support.push_receiver import ServedApp

MANAGER = "alex@example.com"
ACCOUNT = 11


@dataclass
class Receiver:
    directory: MemoryDirectory
    signals: list[PushSignal]
    url: str

    def wait_signals(self, count: int, timeout: float = 2.0) -> list[PushSignal]:
        deadline = time.monotonic() + timeout
        while len(self.signals) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.signals)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    directory = MemoryDirectory()
    signals: list[PushSignal] = []
    with ServedApp(Starlette(routes=push_routes(directory, signals.append))) as served:
        yield Receiver(directory, signals, served.url)


@pytest.fixture
def server() -> Iterator[GoogleCalendarServer]:
    with GoogleCalendarServer(time_zone="Europe/Paris") as s:
        yield s


@pytest.fixture
def calendar(server: GoogleCalendarServer) -> GoogleCalendar:
    client_id, client_secret = server.add_client()
    refresh = server.issue_refresh_token(MANAGER, client_id)
    return GoogleCalendar.installed_app(
        client_id, client_secret, refresh, token_uri=server.token_uri, api_root=server.url,
        timeout=5,
    )  # fmt: skip


def watches(calendar: GoogleCalendar, receiver: Receiver, **kw: timedelta) -> GoogleWatches:
    return GoogleWatches(calendar, f"{receiver.url}/push/google", **kw)


def watch(w: GoogleWatches, receiver: Receiver, now: datetime) -> GoogleChannel:
    """Start a channel, registered before Google's first message can arrive."""
    import secrets
    import uuid

    channel_id, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
    receiver.directory.add_google(channel_id, ACCOUNT, token)
    return w.start(now, channel_id=channel_id, token=token)


def wait_deliveries(server: GoogleCalendarServer, count: int) -> list[int]:
    deadline = time.monotonic() + 2
    while len(push(server).deliveries) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return [d.status for d in push(server).deliveries]


def test_a_channel_is_confirmed_by_sync_and_a_change_reaches_the_callback(
    server: GoogleCalendarServer, calendar: GoogleCalendar, receiver: Receiver
) -> None:
    now = datetime.now(UTC)
    channel = watch(watches(calendar, receiver), receiver, now)
    state = push(server)
    stored = state.channels[channel.id]
    assert stored.token == channel.token and stored.resource_id == channel.resource_id
    assert stored.address == f"{receiver.url}/push/google"
    assert abs(channel.expires - (now + timedelta(days=7))) < timedelta(seconds=5)
    assert wait_deliveries(server, 1) == [200], "the sync message was accepted"
    assert state.deliveries[0].headers["X-Goog-Resource-State"] == "sync"
    assert receiver.signals == [], "a sync message is no change"

    assert state.notify(MANAGER) == [200]
    assert receiver.wait_signals(1) == [PushSignal("google", ACCOUNT, "change", channel.id)]
    headers = state.deliveries[-1].headers
    assert headers["X-Goog-Resource-State"] == "exists"
    assert headers["X-Goog-Message-Number"] == "2"


def test_a_wrong_or_missing_token_is_refused(
    server: GoogleCalendarServer, calendar: GoogleCalendar, receiver: Receiver
) -> None:
    watch(watches(calendar, receiver), receiver, datetime.now(UTC))
    wait_deliveries(server, 1)
    assert push(server).notify(MANAGER, token="guessed") == [403]
    assert push(server).notify(MANAGER, token="") == [403]
    time.sleep(0.1)
    assert receiver.signals == []


def test_an_unknown_channel_is_refused(receiver: Receiver) -> None:
    reply = httpx.post(f"{receiver.url}/push/google", headers={
        "X-Goog-Channel-ID": "not-ours", "X-Goog-Channel-Token": "x",
        "X-Goog-Resource-State": "exists", "X-Goog-Resource-ID": "r",
    })  # fmt: skip
    assert reply.status_code == 403  # like a wrong token: nobody learns which channels exist
    bad = httpx.post(f"{receiver.url}/push/google", headers={"X-Goog-Channel-ID": "x"})
    assert bad.status_code == 400
    assert receiver.signals == []


def test_stopping_a_channel(
    server: GoogleCalendarServer, calendar: GoogleCalendar, receiver: Receiver
) -> None:
    w = watches(calendar, receiver)
    channel = watch(w, receiver, datetime.now(UTC))
    assert w.stop(channel) is True
    assert push(server).channels == {}
    assert push(server).stopped == [channel.id]
    assert w.stop(channel) is False
    assert push(server).notify(MANAGER) == [], "a stopped channel gets nothing"


def test_renewal_before_expiry_starts_a_new_channel_then_stops_the_old(
    server: GoogleCalendarServer, calendar: GoogleCalendar, receiver: Receiver
) -> None:
    now = datetime.now(UTC)
    w = watches(calendar, receiver, ttl=timedelta(hours=2), renew_before=timedelta(hours=1))
    channel = watch(w, receiver, now)
    assert abs(channel.expires - (now + timedelta(hours=2))) < timedelta(seconds=5)
    assert w.ensure(channel, now + timedelta(minutes=50)) is channel
    renewed = w.ensure(channel, now + timedelta(minutes=61))
    assert renewed.id != channel.id and renewed.token != channel.token
    state = push(server)
    assert list(state.channels) == [renewed.id]
    assert state.stopped == [channel.id]
    calls = [(r.method, r.path.rsplit("/", 2)[-2:]) for r in server.api_requests()]
    assert calls == [("POST", ["events", "watch"]), ("POST", ["events", "watch"]),
                     ("POST", ["channels", "stop"])]  # fmt: skip


def test_an_expired_channel_is_started_anew(
    server: GoogleCalendarServer, calendar: GoogleCalendar, receiver: Receiver
) -> None:
    now = datetime.now(UTC)
    w = watches(calendar, receiver)
    channel = watch(w, receiver, now)
    fresh = w.ensure(channel, now + timedelta(days=8))
    assert fresh.id != channel.id
    assert fresh.id in push(server).channels


def test_a_watch_google_refuses_is_an_error(
    server: GoogleCalendarServer, calendar: GoogleCalendar
) -> None:
    w = GoogleWatches(calendar, "http://example.com/push/google")  # not https
    with pytest.raises(ConnectorError, match="400"):
        w.start(datetime.now(UTC))
