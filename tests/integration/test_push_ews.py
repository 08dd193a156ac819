"""EWS streaming notifications through real exchangelib over real HTTP, against the
streaming section of tests/support/ews_server (Subscribe, a chunked GetStreamingEvents,
Unsubscribe)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from connectors.ews.account import EwsSettings
from connectors.ews.push import EwsStreamingWatcher
from tests.support.ews_server import EwsServer, streaming

START = datetime(2026, 12, 1, 9, tzinfo=UTC)


class Watching:
    """A watcher running in a thread, counting its on_change calls."""

    def __init__(self, watcher: EwsStreamingWatcher) -> None:
        self.watcher = watcher
        self.calls: list[float] = []
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=watcher.watch, args=(self.on_change, self.stop))

    def on_change(self) -> None:
        with self.cond:
            self.calls.append(time.monotonic())
            self.cond.notify_all()

    def wait_calls(self, count: int, timeout: float = 5.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.calls) >= count, timeout)

    def count(self) -> int:
        with self.cond:
            return len(self.calls)


@pytest.fixture
def server() -> Iterator[EwsServer]:
    with EwsServer() as srv:
        yield srv


def watcher_for(server: EwsServer, **kw: float) -> EwsStreamingWatcher:
    settings = EwsSettings(
        mailbox=server.mailbox.address, service_endpoint=server.url,
        username=server.username, password=server.password,
    )  # fmt: skip
    options = {"timeout": 5.0, "backoff": 0.05, "max_backoff": 0.4, "min_stream": 0.2} | kw
    return EwsStreamingWatcher(settings, connection_timeout=1, **options)  # type: ignore[arg-type]


@pytest.fixture
def watching(server: EwsServer) -> Iterator[Watching]:
    running = Watching(watcher_for(server))
    running.thread.start()
    yield running
    running.stop.set()
    running.thread.join(5)
    assert not running.thread.is_alive(), "the watcher did not stop"


def ready(server: EwsServer, watching: Watching, streams: int = 1) -> int:
    """Wait for the subscription's catch-up call and an open stream; the calls so far."""
    assert watching.wait_calls(1), "no catch-up call after subscribing"
    assert streaming(server).wait_opened(streams), "no stream opened"
    time.sleep(0.1)  # the request is in; its reader is waiting
    return watching.count()


def add_event(server: EwsServer, uid: str, hours: int = 0) -> None:
    server.mailbox.add(uid, f"Meeting {uid}", START + timedelta(hours=hours),
                       START + timedelta(hours=hours + 1))  # fmt: skip


def test_a_change_reaches_on_change_within_two_seconds(
    server: EwsServer, watching: Watching
) -> None:
    before = ready(server, watching)
    started = time.monotonic()
    add_event(server, "board")
    assert watching.wait_calls(before + 1, timeout=2.0), "the change did not arrive in 2 s"
    assert watching.calls[before] - started < 2.0
    edits_before = watching.count()
    with server.mailbox.edit("board") as item:
        item.location = "Room 2"
    assert watching.wait_calls(edits_before + 1, timeout=2.0)
    removed_before = watching.count()
    server.mailbox.remove(server.mailbox.by_uid("board").item_id)
    assert watching.wait_calls(removed_before + 1, timeout=2.0)
    assert watching.watcher.subscriptions == 1
    ops = server.operations()
    assert ops.count("Subscribe") == 1
    assert "GetStreamingEvents" in ops


def test_stopping_ends_a_blocked_stream_at_once(server: EwsServer) -> None:
    streaming(server).heartbeat = 60.0  # nothing arrives on the stream for a minute
    running = Watching(watcher_for(server))
    running.thread.start()
    ready(server, running)
    started = time.monotonic()
    running.stop.set()
    running.thread.join(3)
    assert not running.thread.is_alive()
    assert time.monotonic() - started < 1.5
    assert server.operations()[-1] == "Unsubscribe"
    assert streaming(server).valid_ids() == []


def test_the_stream_ends_after_its_connection_timeout_and_the_watcher_reconnects(
    server: EwsServer,
) -> None:
    state = streaming(server)
    state.connection_timeout = 0.4  # seconds, instead of the minute asked for
    running = Watching(watcher_for(server))
    running.thread.start()
    try:
        ready(server, running)
        assert state.wait_opened(3, timeout=5), "the watcher did not reconnect"
        assert running.watcher.subscriptions == 1, "the same subscription is streamed again"
        before = running.count()
        add_event(server, "after-reconnects")
        assert running.wait_calls(before + 1, timeout=2.0)
        assert server.errors == []
    finally:
        running.stop.set()
        running.thread.join(5)


def test_a_dropped_connection_is_reopened_and_events_meanwhile_are_delivered(
    server: EwsServer, watching: Watching
) -> None:
    state = streaming(server)
    before = ready(server, watching)
    state.drop_streams()
    add_event(server, "while-dropped")  # queued on the subscription
    assert state.wait_opened(2), "no new stream after the drop"
    assert watching.wait_calls(before + 1, timeout=2.0)
    assert watching.watcher.subscriptions == 1
    assert watching.watcher.streams >= 2


def test_an_invalid_subscription_is_created_anew(server: EwsServer, watching: Watching) -> None:
    state = streaming(server)
    ready(server, watching)
    first = state.valid_ids()
    state.invalidate("ErrorInvalidSubscription")
    deadline = time.monotonic() + 5
    while watching.watcher.subscriptions < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert watching.watcher.subscriptions == 2
    assert watching.wait_calls(2), "a new subscription is followed by a catch-up call"
    assert state.wait_opened(2)
    second = state.valid_ids()
    assert second and second != first
    time.sleep(0.1)
    before = watching.count()
    add_event(server, "after-resubscribe")
    assert watching.wait_calls(before + 1, timeout=2.0)


def test_an_expired_subscription_on_reconnect_is_created_anew(server: EwsServer) -> None:
    state = streaming(server)
    state.connection_timeout = 0.3
    running = Watching(watcher_for(server))
    running.thread.start()
    try:
        ready(server, running)
        with state.lock:  # forgotten while no stream is open: noticed on the next one
            for sub in state.subscriptions.values():
                sub.valid = False
            state.lost_code = "ErrorSubscriptionNotFound"
        deadline = time.monotonic() + 5
        while running.watcher.subscriptions < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert running.watcher.subscriptions == 2
    finally:
        running.stop.set()
        running.thread.join(5)


def test_a_failing_server_is_retried_with_back_off_not_in_a_loop(server: EwsServer) -> None:
    running = Watching(watcher_for(server, backoff=0.1, max_backoff=0.4))
    server.fail_next(503, times=10_000)
    running.thread.start()
    time.sleep(1.5)
    running.stop.set()
    running.thread.join(3)
    assert not running.thread.is_alive()
    # waits of 0.1, 0.2, 0.4, 0.4, ... : a handful of attempts in 1.5 s, not hundreds
    assert 2 <= len(server.requests) <= 10, server.requests
    assert running.count() == 0


def test_a_busy_server_is_honoured(server: EwsServer, watching: Watching) -> None:
    ready(server, watching)
    server.server_busy(800)  # the reconnect is refused with BackOffMilliseconds=800
    streaming(server).invalidate()
    started = time.monotonic()
    deadline = started + 5
    while watching.watcher.subscriptions < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watching.watcher.subscriptions == 2
    assert time.monotonic() - started >= 0.75, "the server's back-off hint was honoured"
