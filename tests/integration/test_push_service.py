"""Webhook push in the running service, end to end over real HTTP.

The protocol-level Graph (HTTPS) and Google servers talk to our real web app
(``create_app`` served by uvicorn on 127.0.0.1) with its database-backed directory;
subscriptions and channels are made by ``assistant.services.push`` and kept in
``Account.sync_state["push"]`` (SQLite and PostgreSQL); what the receiver reports goes
through the runner's own callback (``jobs.tasks.queue_push_signal``) into a Huey queue
(memory storage, no consumer), whose tasks the tests read and run one by one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from huey import Huey
from huey.api import Task

from assistant.bootstrap import Service
from assistant.entrypoints.web.app import create_app
from assistant.services.pairs import add_account, add_pair
from assistant.services.push import DbDirectory, drop_push, ensure_push
from assistant.store.db import UnitOfWork
from assistant.store.tables import Account
from config.settings import QueueSettings, Settings, WebSettings
from connectors.graph.push import LIFETIME
from jobs import runtime, tasks
from jobs.queue import build_huey
from tests.support.google_server import GoogleCalendarServer, push
from tests.support.graph_server import GraphServer, subscriptions
from tests.support.push_receiver import ServedApp

MANAGER = "alex@example.com"
START = datetime(2030, 4, 2, 9, tzinfo=UTC)


@dataclass
class World:
    svc: Service
    huey: Huey
    url: str
    pair_id: int

    def add(self, name: str, provider: str, settings: dict[str, Any]) -> int:
        account = add_account(self.svc, pair=self.pair_id, name=name, provider=provider,
                              settings=settings)  # fmt: skip
        return account.id

    def add_row(self, name: str, provider: str, settings: dict[str, Any]) -> int:
        """An account written directly (add_account takes ``token_uri`` for a secret)."""
        with self.svc.uow.begin() as session:
            account = Account(pair_id=self.pair_id, name=name, provider=provider,
                              kind="calendar", settings=settings, writable=True,
                              created_at=datetime.now(UTC))  # fmt: skip
            session.add(account)
            session.flush()
            return account.id

    def stored(self, account_id: int) -> dict[str, Any]:
        with self.svc.uow.read() as session:
            account = session.get(Account, account_id)
            assert account is not None
            return dict(account.sync_state)

    def set_stored(self, account_id: int, **push: Any) -> None:
        with self.svc.uow.begin() as session:
            account = session.get(Account, account_id)
            assert account is not None
            account.sync_state = {
                **account.sync_state,
                "push": {**account.sync_state.get("push", {}), **push},
            }

    def tasks(self, name: str | None = None) -> list[Task]:
        return [t for t in self.huey.pending() if name is None or t.name == name]

    def wait_tasks(self, name: str, count: int = 1, timeout: float = 3.0) -> list[Task]:
        deadline = time.monotonic() + timeout
        while len(self.tasks(name)) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.tasks(name)

    def run(self, name: str) -> Any:
        """Take the first queued task called ``name`` and run it, as the consumer would."""
        queued = []
        while (task := self.huey.dequeue()) is not None:
            queued.append(task)
        chosen = next(t for t in queued if t.name == name)
        for task in queued:
            if task is not chosen:
                self.huey.enqueue(task)
        return self.huey.execute(chosen)


@pytest.fixture
def world(uow: UnitOfWork, tmp_path: Path) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path, queue=QueueSettings(backend="memory"), web=WebSettings())
    svc = Service(settings=settings, engine=uow.engine, uow=uow, channels={})
    huey = build_huey(settings)
    tasks.register(huey, periodic=False)
    runtime.install(svc)
    pair = add_pair(svc, name="alex", manager_email=MANAGER, assistant_email="sam@example.com")
    try:
        with ServedApp(create_app(svc, on_push=tasks.queue_push_signal)) as served:
            svc.settings.web.public_url = served.url  # loopback http: the test servers' only way
            yield World(svc, huey, served.url, pair.id)
    finally:
        runtime.install(None)


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphServer]:
    with GraphServer(tmp_path) as server:
        monkeypatch.setenv("TEST_PUSH_GRAPH_SECRET", server.client_secret)
        # The account settings have no CA file; trust the server's self-signed one (httpx
        # reads SSL_CERT_FILE, requests under msal REQUESTS_CA_BUNDLE).
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_file))
        yield server


@pytest.fixture
def google() -> Iterator[GoogleCalendarServer]:
    with GoogleCalendarServer(time_zone="Europe/Paris") as server:
        yield server


def graph_account(world: World, graph: GraphServer, name: str = "m365") -> int:
    return world.add(name, "graph", {
        "user": graph.user, "tenant": graph.tenant, "client_id": graph.client_id,
        "client_secret": {"env": "TEST_PUSH_GRAPH_SECRET"},
        "graph_url": graph.graph_url, "authority_host": graph.authority_host,
    })  # fmt: skip


def google_account(
    world: World, server: GoogleCalendarServer, monkeypatch: pytest.MonkeyPatch
) -> int:
    client_id, client_secret = server.add_client()
    monkeypatch.setenv("TEST_PUSH_GOOGLE_SECRET", client_secret)
    monkeypatch.setenv("TEST_PUSH_GOOGLE_REFRESH", server.issue_refresh_token(MANAGER, client_id))
    return world.add_row("gcal", "google", {
        "auth": "oauth", "client_id": client_id,
        "client_secret": {"env": "TEST_PUSH_GOOGLE_SECRET"},
        "refresh_token": {"env": "TEST_PUSH_GOOGLE_REFRESH"},
        "api_root": server.url, "token_uri": server.token_uri,
    })  # fmt: skip


def decoy(world: World) -> int:
    """Another calendar account of the pair: a signal must not name it."""
    return world.add("feed", "ics", {"location": "http://127.0.0.1:9/none.ics"})


def wait_deliveries(server: GoogleCalendarServer, count: int) -> list[int]:
    deadline = time.monotonic() + 3
    while len(push(server).deliveries) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return [d.status for d in push(server).deliveries]


def syncs(world: World) -> list[tuple[Any, ...]]:
    return [t.args for t in world.tasks("sync_account")]


# --------------------------------------------------------------------------- Graph


def test_a_graph_subscription_is_created_stored_and_its_changes_queue_the_accounts_sync(
    world: World, graph: GraphServer
) -> None:
    decoy(world)
    account_id = graph_account(world, graph)
    with world.svc.uow.begin() as session:
        row = session.get(Account, account_id)
        assert row is not None
        row.sync_state = {**row.sync_state, "window_end": "2030-08-01T00:00:00+00:00"}
    now = datetime.now(UTC)

    outcome = ensure_push(world.svc, account_id, now)

    state = subscriptions(graph)
    [sub] = state.items.values()
    assert outcome.action == "created" and outcome.subscription_id == sub.id
    assert [v.status for v in state.validations] == [200], "our app echoed the validation"
    stored = world.stored(account_id)
    assert stored["window_end"] == "2030-08-01T00:00:00+00:00", "the sync's keys are kept"
    push_entry = stored["push"]
    assert push_entry["id"] == sub.id and push_entry["secret"] == sub.client_state
    assert push_entry["address"] == f"{world.url}/push/graph"
    assert sub.notification_url == sub.lifecycle_url == f"{world.url}/push/graph"
    expires = datetime.fromisoformat(push_entry["expires"])
    assert abs(expires - (now + LIFETIME)) < timedelta(seconds=5)
    assert DbDirectory(world.svc.uow).graph_subscription(sub.id) == (account_id, sub.client_state)

    assert ensure_push(world.svc, account_id, now).action == "kept"
    assert [r.method for r in graph.graph_requests("/subscriptions")] == ["POST"]

    event_id = graph.create_event("Board", START, START + timedelta(hours=1))
    assert state.notify(event_id, "created") == [202]
    assert [t.args for t in world.wait_tasks("sync_account")] == [(account_id,)]


def test_renewal_near_expiry_updates_the_stored_graph_subscription(
    world: World, graph: GraphServer
) -> None:
    account_id = graph_account(world, graph)
    now = datetime.now(UTC)
    first = ensure_push(world.svc, account_id, now)
    secret = world.stored(account_id)["push"]["secret"]
    soon = now + timedelta(hours=3)  # the service was down: less than a day is left
    world.set_stored(account_id, expires=soon.isoformat())

    renewed = ensure_push(world.svc, account_id, now)

    assert renewed.action == "renewed" and renewed.subscription_id == first.subscription_id
    patches = [r.status for r in graph.graph_requests("/subscriptions") if r.method == "PATCH"]
    assert patches == [200]
    entry = world.stored(account_id)["push"]
    assert entry["id"] == first.subscription_id and entry["secret"] == secret
    assert datetime.fromisoformat(entry["expires"]) - now > timedelta(days=6)
    sub = subscriptions(graph).items[first.subscription_id]
    assert abs(sub.expiration - datetime.fromisoformat(entry["expires"])) < timedelta(seconds=1)


def test_a_forged_client_state_is_dropped_and_queues_nothing(
    world: World, graph: GraphServer
) -> None:
    account_id = graph_account(world, graph)
    sub_id = ensure_push(world.svc, account_id, datetime.now(UTC)).subscription_id
    state = subscriptions(graph)
    # acknowledged like a notification for an unknown subscription (tests/security), dropped
    assert state.notify("some-event", client_state="guessed") == [202]
    assert state.lifecycle(sub_id, "subscriptionRemoved", client_state="guessed") == 202
    forged = {"value": [{"subscriptionId": sub_id, "clientState": "x", "changeType": "updated"}]}
    assert httpx.post(f"{world.url}/push/graph", json=forged).status_code == 202
    time.sleep(0.1)
    assert world.tasks() == []
    assert world.stored(account_id)["push"]["id"] == sub_id


def test_reauthorization_required_renews_the_subscription(
    world: World, graph: GraphServer
) -> None:
    account_id = graph_account(world, graph)
    now = datetime.now(UTC)
    sub_id = ensure_push(world.svc, account_id, now).subscription_id
    before = world.stored(account_id)["push"]["expires"]

    assert subscriptions(graph).lifecycle(sub_id, "reauthorizationRequired") == 202
    [task] = world.wait_tasks("push_signal")
    assert task.args == ("graph", account_id, "reauthorizationRequired", sub_id)
    assert world.run("push_signal") == "renewed"

    patches = [r.status for r in graph.graph_requests("/subscriptions") if r.method == "PATCH"]
    assert patches == [200]
    assert subscriptions(graph).items[sub_id].reauthorized == 1
    entry = world.stored(account_id)["push"]
    assert entry["id"] == sub_id and entry["expires"] >= before
    assert world.tasks() == [], "nothing was lost: no sync needed"


def test_a_removed_subscription_is_created_anew_and_the_account_synced(
    world: World, graph: GraphServer
) -> None:
    account_id = graph_account(world, graph)
    old_id = ensure_push(world.svc, account_id, datetime.now(UTC)).subscription_id
    assert subscriptions(graph).lifecycle(old_id, "subscriptionRemoved") == 202
    [task] = world.wait_tasks("push_signal")
    assert task.args == ("graph", account_id, "subscriptionRemoved", old_id)
    assert world.run("push_signal") == "created"

    state = subscriptions(graph)
    [fresh] = state.items.values()
    assert fresh.id != old_id
    entry = world.stored(account_id)["push"]
    assert (entry["id"], entry["secret"]) == (fresh.id, fresh.client_state)
    assert syncs(world) == [(account_id,)], "changes made meanwhile are read"
    assert DbDirectory(world.svc.uow).graph_subscription(old_id) is None

    world.huey.storage.flush_queue()
    event_id = graph.create_event("Board", START, START + timedelta(hours=1))
    assert state.notify(event_id) == [202]
    assert [t.args for t in world.wait_tasks("sync_account")] == [(account_id,)]


def test_missed_notifications_queue_a_sync(world: World, graph: GraphServer) -> None:
    account_id = graph_account(world, graph)
    sub_id = ensure_push(world.svc, account_id, datetime.now(UTC)).subscription_id
    assert subscriptions(graph).lifecycle(sub_id, "missed") == 202
    assert [t.args for t in world.wait_tasks("sync_account")] == [(account_id,)]


def test_dropping_deletes_the_graph_subscription_and_forgets_it(
    world: World, graph: GraphServer
) -> None:
    account_id = graph_account(world, graph)
    ensure_push(world.svc, account_id, datetime.now(UTC))
    assert drop_push(world.svc, account_id).action == "dropped"
    assert subscriptions(graph).items == {}
    assert "push" not in world.stored(account_id)
    assert drop_push(world.svc, account_id).action == "none"


def test_without_a_public_url_ensure_drops(world: World, graph: GraphServer) -> None:
    account_id = graph_account(world, graph)
    ensure_push(world.svc, account_id, datetime.now(UTC))
    world.svc.settings.web.public_url = ""
    assert ensure_push(world.svc, account_id, datetime.now(UTC)).action == "dropped"
    assert subscriptions(graph).items == {}


def test_concurrent_ensures_leave_one_graph_subscription(
    world: World, graph: GraphServer
) -> None:
    account_id = graph_account(world, graph)
    outcomes = race(lambda: ensure_push(world.svc, account_id, datetime.now(UTC)).action)
    assert sorted(outcomes).count("created") >= 1
    [live] = subscriptions(graph).live()
    assert world.stored(account_id)["push"]["id"] == live.id


# -------------------------------------------------------------------------- Google


def test_a_google_channel_is_stored_confirmed_and_its_changes_queue_the_accounts_sync(
    world: World, google: GoogleCalendarServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy(world)
    account_id = google_account(world, google, monkeypatch)
    now = datetime.now(UTC)
    outcome = ensure_push(world.svc, account_id, now)

    state = push(google)
    [channel] = state.channels.values()
    assert outcome.action == "created" and outcome.subscription_id == channel.id
    entry = world.stored(account_id)["push"]
    assert (entry["id"], entry["secret"], entry["resource_id"]) == (
        channel.id, channel.token, channel.resource_id)  # fmt: skip
    assert entry["address"] == channel.address == f"{world.url}/push/google"
    assert "pending" not in entry
    assert abs(datetime.fromisoformat(entry["expires"]) - (now + timedelta(days=7))) < timedelta(
        seconds=5
    )
    assert wait_deliveries(google, 1) == [200], "registered before Google's sync message"
    time.sleep(0.05)
    assert world.tasks() == [], "a sync message is no change"

    assert state.notify(MANAGER) == [200]
    assert [t.args for t in world.wait_tasks("sync_account")] == [(account_id,)]


def test_google_renewal_leaves_one_live_channel(
    world: World, google: GoogleCalendarServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    account_id = google_account(world, google, monkeypatch)
    now = datetime.now(UTC)
    old_id = ensure_push(world.svc, account_id, now).subscription_id
    assert ensure_push(world.svc, account_id, now).action == "kept"
    world.set_stored(account_id, expires=(now + timedelta(hours=2)).isoformat())

    renewed = ensure_push(world.svc, account_id, now)

    state = push(google)
    assert renewed.action == "renewed" and renewed.subscription_id != old_id
    assert list(state.channels) == [renewed.subscription_id]
    assert state.stopped == [old_id]
    calls = [r.path.rsplit("/", 2)[-2:] for r in google.api_requests() if r.method == "POST"]
    assert calls == [["events", "watch"], ["events", "watch"], ["channels", "stop"]]
    entry = world.stored(account_id)["push"]
    assert entry["id"] == renewed.subscription_id and "stale" not in entry
    directory = DbDirectory(world.svc.uow)
    assert directory.google_channel(old_id) is None
    assert directory.google_channel(renewed.subscription_id) == (account_id, entry["secret"])

    wait_deliveries(google, 2)  # the two sync messages
    assert state.notify(MANAGER) == [200], "one channel, one message"
    assert [t.args for t in world.wait_tasks("sync_account")] == [(account_id,)]


def test_a_forged_channel_token_is_refused_and_queues_nothing(
    world: World, google: GoogleCalendarServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    account_id = google_account(world, google, monkeypatch)
    channel_id = ensure_push(world.svc, account_id, datetime.now(UTC)).subscription_id
    wait_deliveries(google, 1)
    assert push(google).notify(MANAGER, token="guessed") == [403]
    assert push(google).notify(MANAGER, token="") == [403]
    unknown = httpx.post(f"{world.url}/push/google", headers={
        "X-Goog-Channel-ID": "not-ours", "X-Goog-Channel-Token": "x",
        "X-Goog-Resource-State": "exists", "X-Goog-Resource-ID": "r",
    })  # fmt: skip
    assert unknown.status_code == 403  # like a wrong token: nobody learns which channels exist
    time.sleep(0.1)
    assert world.tasks() == []
    assert world.stored(account_id)["push"]["id"] == channel_id


def test_dropping_stops_the_google_channel(
    world: World, google: GoogleCalendarServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    account_id = google_account(world, google, monkeypatch)
    channel_id = ensure_push(world.svc, account_id, datetime.now(UTC)).subscription_id
    assert drop_push(world.svc, account_id).action == "dropped"
    assert push(google).channels == {} and push(google).stopped == [channel_id]
    assert "push" not in world.stored(account_id)


def test_concurrent_ensures_leave_one_google_channel(
    world: World, google: GoogleCalendarServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    account_id = google_account(world, google, monkeypatch)
    race(lambda: ensure_push(world.svc, account_id, datetime.now(UTC)).action)
    [live] = push(google).live()
    entry = world.stored(account_id)["push"]
    assert entry["id"] == live.id and "pending" not in entry


# ------------------------------------------------------------------------- upkeep


def test_tick_queues_ensure_only_with_an_https_public_url(world: World) -> None:
    now = datetime.now(UTC)
    fake = {"user": "u", "tenant": "t", "client_id": "c"}
    new = world.add("new", "graph", fake)
    fresh = world.add("fresh", "google", {"client_id": "c"})
    world.set_stored(fresh, id="c1", secret="s", address="https://assistant.example/push/google",
                     expires=(now + timedelta(days=3)).isoformat())  # fmt: skip
    ending = world.add("ending", "graph", fake)
    world.set_stored(ending, id="s1", secret="s", address="https://assistant.example/push/graph",
                     expires=(now + timedelta(hours=20)).isoformat())  # fmt: skip
    failing = world.add("failing", "graph", fake)
    world.set_stored(failing, failures=1, retry_at=(now + timedelta(minutes=1)).isoformat())
    world.add("dav", "caldav", {"url": "http://127.0.0.1:9/"})

    def tick() -> tuple[list[int], list[int]]:
        """(accounts queued for ensure_push, for drop_push) by one tick."""
        world.huey.storage.flush_queue()
        tasks.tick()
        return (sorted(t.args[0] for t in world.tasks("ensure_push")),
                sorted(t.args[0] for t in world.tasks("drop_push")))  # fmt: skip

    assert tick() == ([], []), "the loopback test URL: no upkeep (no provider reaches it)"
    world.svc.settings.web.public_url = "https://assistant.example/"
    assert tick() == ([new, ending], [])
    world.svc.settings.web.public_url = ""
    assert tick() == ([], [fresh, ending])


def test_signals_map_to_work(world: World) -> None:
    from assistant.services.push import PushSignal, handle_signal

    account_id = world.add("m365", "graph", {"user": "u", "tenant": "t", "client_id": "c"})
    world.set_stored(account_id, id="sub-1", secret="s")
    queued: list[int] = []
    for kind in ("change", "exists", "sync", "missed"):
        signal = PushSignal("graph", account_id, kind, "sub-1")  # type: ignore[arg-type]
        assert handle_signal(world.svc, signal, queued.append) == "sync"
    assert queued == [account_id] * 4
    old = PushSignal("graph", account_id, "subscriptionRemoved", "sub-0")  # replaced already
    assert handle_signal(world.svc, old, queued.append).startswith("sync")
    assert world.stored(account_id)["push"]["id"] == "sub-1"


def test_a_refused_subscription_is_tried_again_later_not_every_minute(
    world: World, graph: GraphServer
) -> None:
    from assistant.services.push import accounts_due
    from connectors.base import ConnectorError

    account_id = graph_account(world, graph)
    now = datetime.now(UTC)
    graph.fail_next(403)
    with pytest.raises(ConnectorError):
        ensure_push(world.svc, account_id, now)
    entry = world.stored(account_id)["push"]
    assert entry["failures"] == 1 and "id" not in entry
    assert datetime.fromisoformat(entry["retry_at"]) == now + timedelta(minutes=1)
    world.svc.settings.web.public_url = "https://assistant.example"
    assert accounts_due(world.svc, now) == ([], [])
    assert accounts_due(world.svc, now + timedelta(minutes=1)) == ([account_id], [])


# ------------------------------------------------------------------------ helpers


def race(work: Any, count: int = 2) -> list[Any]:
    """Run ``work`` in ``count`` threads at once; their results."""
    results: list[Any] = []
    barrier = threading.Barrier(count)

    def run() -> None:
        barrier.wait()
        results.append(work())

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == count
    return results
