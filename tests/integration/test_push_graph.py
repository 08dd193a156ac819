"""Graph change notifications end to end over real HTTP: our subscriptions client against
the protocol-level Graph server (tests/support/graph_server, HTTPS), which validates and
notifies our receiver app (assistant/entrypoints/web/push.py) served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from assistant.entrypoints.web.push import MemoryDirectory, push_routes
from assistant.services.push import PushSignal
from connectors.base import ConnectorError
from connectors.graph.calendar import GraphCalendar
from connectors.graph.push import MAX_LIFETIME, GraphSubscription, GraphSubscriptions
from tests.support.graph_server import GraphServer, subscriptions
from tests.support.push_receiver import ServedApp

ACCOUNT = 7
START = datetime(2030, 4, 2, 9, tzinfo=UTC)


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
    app = Starlette(routes=push_routes(directory, signals.append))
    with ServedApp(app) as served:
        yield Receiver(directory, signals, served.url)


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[GraphServer]:
    with GraphServer(tmp_path) as server:
        yield server


@pytest.fixture
def calendar(graph: GraphServer) -> Iterator[GraphCalendar]:
    connector = GraphCalendar(
        graph.user, tenant=graph.tenant, client_id=graph.client_id,
        client_secret=graph.client_secret, graph_url=graph.graph_url,
        authority_host=graph.authority_host, verify=graph.ca_file, backoff=0.0, timeout=5.0,
    )  # fmt: skip
    yield connector
    connector.close()


def manager(calendar: GraphCalendar, receiver: Receiver, **kw: timedelta) -> GraphSubscriptions:
    url = f"{receiver.url}/push/graph"
    return GraphSubscriptions(calendar, url, url, **kw)


def subscribe(subs: GraphSubscriptions, receiver: Receiver, now: datetime) -> GraphSubscription:
    sub = subs.create(now)
    receiver.directory.add_graph(sub.id, ACCOUNT, sub.client_state)
    return sub


def test_creating_a_subscription_passes_graphs_validation_and_changes_reach_the_callback(
    graph: GraphServer, calendar: GraphCalendar, receiver: Receiver
) -> None:
    now = datetime.now(UTC)
    sub = subscribe(manager(calendar, receiver), receiver, now)
    state = subscriptions(graph)
    assert [v.status for v in state.validations] == [200], "one validation, echoed"
    stored = state.items[sub.id]
    assert stored.client_state == sub.client_state and len(sub.client_state) >= 32
    assert stored.resource == f"/users/{graph.user}/events"
    assert stored.lifecycle_url == f"{receiver.url}/push/graph"
    assert stored.expiration - now <= MAX_LIFETIME
    assert sub.expires - now > timedelta(days=6)

    event_id = graph.create_event("Board", START, START + timedelta(hours=1))
    assert state.notify(event_id, "created") == [202]
    assert receiver.wait_signals(1) == [PushSignal("graph", ACCOUNT, "change", sub.id)]


def test_the_validation_token_is_echoed_as_plain_text(receiver: Receiver) -> None:
    token = "Validation: Testing client application reachability <b>&</b>"
    reply = httpx.post(f"{receiver.url}/push/graph", params={"validationToken": token})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    assert reply.text == token
    assert receiver.signals == []


def test_an_endpoint_that_fails_validation_gets_no_subscription(
    graph: GraphServer, calendar: GraphCalendar, receiver: Receiver
) -> None:
    subs = GraphSubscriptions(calendar, f"{receiver.url}/nowhere")
    with pytest.raises(ConnectorError, match="400"):
        subs.create(datetime.now(UTC))
    state = subscriptions(graph)
    assert [v.status for v in state.validations] == [404]
    assert state.items == {}


def test_a_wrong_client_state_is_dropped_and_reports_nothing(
    graph: GraphServer, calendar: GraphCalendar, receiver: Receiver
) -> None:
    sub = subscribe(manager(calendar, receiver), receiver, datetime.now(UTC))
    state = subscriptions(graph)
    # acknowledged like a notification for an unknown subscription (tests/security), dropped
    assert state.notify("some-event", client_state="guessed") == [202]
    assert state.lifecycle(sub.id, "missed", client_state="") == 202
    time.sleep(0.1)
    assert receiver.signals == []


def test_notifications_for_subscriptions_we_do_not_know_are_acknowledged_and_ignored(
    graph: GraphServer, calendar: GraphCalendar, receiver: Receiver
) -> None:
    sub = subscribe(manager(calendar, receiver), receiver, datetime.now(UTC))
    receiver.directory.remove_graph(sub.id)  # deleted on our side; Graph still delivers
    assert subscriptions(graph).notify("some-event") == [202]
    time.sleep(0.1)
    assert receiver.signals == []


def test_lifecycle_events_are_reported(
    graph: GraphServer, calendar: GraphCalendar, receiver: Receiver
) -> None:
    sub = subscribe(manager(calendar, receiver), receiver, datetime.now(UTC))
    state = subscriptions(graph)
    for number, event in enumerate(("reauthorizationRequired", "missed", "subscriptionRemoved")):
        assert state.lifecycle(sub.id, event) == 202
        signals = receiver.wait_signals(number + 1)
        assert signals[-1] == PushSignal("graph", ACCOUNT, event, sub.id)  # type: ignore[arg-type]
    assert sub.id not in state.items, "subscriptionRemoved: Graph dropped it"


def test_renewal_happens_before_expiry_and_not_earlier(
    graph: GraphServer, calendar: GraphCalendar, receiver: Receiver
) -> None:
    now = datetime.now(UTC)
    subs = manager(calendar, receiver, lifetime=timedelta(hours=2), renew_before=timedelta(hours=1))
    sub = subscribe(subs, receiver, now)
    assert sub.expires == pytest.approx(now + timedelta(hours=2), abs=timedelta(seconds=1))
    patches = lambda: [s for s in graph.graph_requests("/subscriptions") if s.method == "PATCH"]  # noqa: E731

    assert subs.ensure(sub, now + timedelta(minutes=50)) is sub
    assert patches() == []

    later = now + timedelta(minutes=61)
    renewed = subs.ensure(sub, later)
    assert [p.status for p in patches()] == [200]
    assert renewed.id == sub.id and renewed.client_state == sub.client_state
    assert renewed.expires > sub.expires
    stored = subscriptions(graph).items[sub.id]
    assert abs(stored.expiration - (later + timedelta(hours=2))) < timedelta(seconds=1)
    assert stored.reauthorized == 1, "a PATCH reauthorizes as well"


def test_a_subscription_graph_dropped_is_created_anew(
    graph: GraphServer, calendar: GraphCalendar, receiver: Receiver
) -> None:
    now = datetime.now(UTC)
    subs = manager(calendar, receiver, lifetime=timedelta(hours=2), renew_before=timedelta(hours=1))
    sub = subscribe(subs, receiver, now)
    subscriptions(graph).expire(sub.id)  # Graph's clock ran out (we were down)
    fresh = subs.ensure(sub, now + timedelta(minutes=70))
    assert fresh.id != sub.id
    assert fresh.client_state != sub.client_state
    statuses = [(s.method, s.status) for s in graph.graph_requests("/subscriptions")]
    assert statuses == [("POST", 201), ("PATCH", 404), ("POST", 201)]


def test_deleting_a_subscription(
    graph: GraphServer, calendar: GraphCalendar, receiver: Receiver
) -> None:
    subs = manager(calendar, receiver)
    sub = subscribe(subs, receiver, datetime.now(UTC))
    assert subs.delete(sub) is True
    assert subscriptions(graph).items == {}
    assert subs.delete(sub) is False


def test_graph_refuses_a_subscription_beyond_its_limit(
    graph: GraphServer, calendar: GraphCalendar, receiver: Receiver
) -> None:
    with pytest.raises(ValueError, match="at most"):
        manager(calendar, receiver, lifetime=MAX_LIFETIME + timedelta(minutes=1))
    subs = manager(calendar, receiver, lifetime=MAX_LIFETIME)
    with pytest.raises(ConnectorError, match="400"):  # our clock is ahead of Graph's
        subs.create(datetime.now(UTC) + timedelta(hours=1))
