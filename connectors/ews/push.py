"""Streaming notifications for the manager's calendar on Exchange (EWS), through exchangelib.

Exchange pushes over a connection we open, so no public endpoint is needed:

1. ``Subscribe`` with a ``StreamingSubscriptionRequest`` on the calendar folder (Created,
   Modified, Deleted, Moved and Copied events) gives a subscription id;
2. ``GetStreamingEvents`` with that id and a ``ConnectionTimeout`` (1 to 30 minutes) is
   a long-lived HTTP response: Exchange writes one SOAP document a notification, and a
   last one with ``ConnectionStatus`` ``Closed`` when the time is up;
3. the stream is opened again with the same subscription; events that happened while it
   was closed are queued on the server and come with the next stream. A subscription
   Exchange no longer knows (``ErrorInvalidSubscription``, ``ErrorSubscriptionNotFound``,
   ``ErrorExpiredSubscription``, ``ErrorMissedNotificationEvents``...: no stream for 30
   minutes, a server restart, a mailbox move) is created anew.

:class:`EwsStreamingWatcher` runs that loop in the calling thread. It does not read the
changed items: a notification only says *that* the calendar changed, and ``on_change()``
(the caller's: queue a sync of the account) fetches the changes with the sync state as
usual. ``on_change`` is called

* once per notification document that carries a calendar item event, and
* once after every new subscription, because whatever happened between the last sync and
  the subscription (or while an old subscription was lost) was never notified.

Failures never end the loop and never spin it: a dropped or refused connection waits with
exponential back-off (``backoff`` doubling to ``max_backoff``; a server's ErrorServerBusy
back-off or Retry-After is honoured), a stream that ends sooner than ``min_stream``
seconds counts as a failure too, and refused credentials wait ``max_backoff``. ``watch``
returns when ``stop_event`` is set: a helper thread shuts the stream's socket down so the
blocked read ends at once instead of at the next notification.

The stream holds one HTTP connection of exchangelib's session pool for its whole life;
the pool of the (shared, cached) protocol is widened to two connections so that a sync of
the same account in this process is never starved by it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from exchangelib import errors as ews_errors
from exchangelib.services import GetStreamingEvents, SubscribeToStreaming, Unsubscribe

from connectors.base import AuthExpired, ConnectorError, RateLimited
from connectors.ews.account import EwsSettings, translated
from connectors.ews.calendar import EwsCalendar

log = logging.getLogger(__name__)

EVENT_TYPES = ("CreatedEvent", "ModifiedEvent", "DeletedEvent", "MovedEvent", "CopiedEvent")
_CHANGE_EVENTS = frozenset(EVENT_TYPES)
# Answers that mean "this subscription is gone: subscribe again".
_LOST = (
    ews_errors.ErrorInvalidSubscription,
    ews_errors.ErrorSubscriptionNotFound,
    ews_errors.ErrorExpiredSubscription,
    ews_errors.ErrorSubscriptionUnsubsribed,
    ews_errors.ErrorMissedNotificationEvents,
    ews_errors.ErrorProxiedSubscriptionCallFailure,
)


class SubscriptionLost(ConnectorError):
    """Exchange no longer knows the streaming subscription: create a new one."""


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """How one GetStreamingEvents connection ended (for logs and tests)."""

    notifications: int
    closed_by_server: bool  # a ConnectionStatus Closed document came last


class EwsStreamingWatcher:
    """Watch the calendar of ``settings.mailbox`` with an EWS streaming subscription.

    ``connection_timeout`` is the ConnectionTimeout of each stream in minutes (1-30).
    Counters (``subscriptions``, ``streams``, ``notifications``) are for tests and logs.
    """

    def __init__(
        self,
        settings: EwsSettings,
        *,
        connection_timeout: int = 10,
        timeout: float = 30,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        min_stream: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= connection_timeout <= 30:
            raise ValueError("connection_timeout is 1 to 30 minutes")
        self.connection_timeout = connection_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.min_stream = min_stream
        self.subscriptions = 0
        self.streams = 0
        self.notifications = 0
        self.subscription_id: str | None = None
        self._calendar = EwsCalendar(settings, timeout=timeout)
        self._clock = clock

    # ------------------------------------------------------------------ the loop

    def watch(self, on_change: Callable[[], None], stop_event: threading.Event) -> None:
        """Call ``on_change()`` on every calendar change until ``stop_event`` is set."""
        delay = self.backoff
        while not stop_event.is_set():
            started = self._clock()
            wait: float | None = None
            try:
                if self.subscription_id is None:
                    self.subscription_id = self._subscribe()
                    on_change()  # catch up on whatever no subscription saw
                end = self._stream(self.subscription_id, on_change, stop_event)
                log.debug("EWS stream ended: %s", end)
                if self._clock() - started < self.min_stream:
                    wait = delay  # a stream that ends at once must not make us spin
            except SubscriptionLost as exc:
                log.info("EWS streaming subscription lost (%s): subscribing again", exc)
                self.subscription_id = None
                if self._clock() - started < self.min_stream:
                    wait = delay
            except RateLimited as exc:
                wait = max(exc.retry_after or 0.0, delay)
                log.warning("EWS streaming throttled: again in %.1fs", wait)
            except AuthExpired as exc:
                wait = self.max_backoff
                log.error("EWS streaming refused: %s", exc)
            except ConnectorError as exc:
                wait = delay
                log.warning("EWS streaming: %s; again in %.1fs", exc, wait)
            if wait is None:
                delay = self.backoff
                continue
            delay = min(delay * 2, self.max_backoff)
            stop_event.wait(wait)
        self.close()

    def close(self) -> None:
        """Unsubscribe (best effort): Exchange would drop it 30 minutes later anyway."""
        sid, self.subscription_id = self.subscription_id, None
        if sid is None:
            return
        with suppress(Exception):
            Unsubscribe(account=self._account()).get(subscription_id=sid)

    # ------------------------------------------------------------------ the calls

    def _subscribe(self) -> str:
        with self._errors("Subscribe"):
            folder = self._calendar._calendar()
            sid = SubscribeToStreaming(account=self._account()).get(
                folders=[folder], event_types=EVENT_TYPES
            )
        self.subscriptions += 1
        return str(sid)

    def _stream(
        self, sid: str, on_change: Callable[[], None], stop_event: threading.Event
    ) -> StreamEnd:
        """One GetStreamingEvents connection, to its end (or until ``stop_event``)."""
        service = GetStreamingEvents(account=self._account())
        done = threading.Event()
        closer = threading.Thread(
            target=_close_on_stop, args=(service, stop_event, done), daemon=True,
            name="ews-stream-closer",
        )  # fmt: skip
        closer.start()
        self.streams += 1
        count = 0
        try:
            with self._errors("GetStreamingEvents"):
                for notification in _notifications(service, sid, self.connection_timeout):
                    if stop_event.is_set():
                        break
                    if isinstance(notification, Exception):
                        raise notification
                    if any(_is_change(e) for e in notification.events or ()):
                        count += 1
                        self.notifications += 1
                        on_change()
        except ConnectorError:
            if stop_event.is_set():
                return StreamEnd(count, False)
            raise
        finally:
            done.set()
            with suppress(Exception):
                service.stop_streaming()
        return StreamEnd(count, service.connection_status == GetStreamingEvents.CLOSED)

    def _account(self) -> Any:
        account = self._calendar._mailbox()
        protocol = account.protocol
        if protocol.max_connections < 2:  # one for the stream, one for syncs meanwhile
            protocol.max_connections = 2
        return account

    def _errors(self, what: str) -> translated:
        """Translate exchangelib errors; a lost subscription is its own error."""
        return translated(f"EWS {what}", _lost)


def _lost(exc: BaseException, what: str) -> ConnectorError | None:
    if isinstance(exc, _LOST):
        return SubscriptionLost(f"{what}: {type(exc).__name__}")
    return None


def _notifications(service: Any, sid: str, minutes: int) -> Iterator[Any]:
    result: Iterator[Any] = service.call(subscription_ids=[sid], connection_timeout=minutes)
    return result


def _is_change(event: Any) -> bool:
    """A Created/Modified/Deleted/Moved/Copied event about an item (not the folder)."""
    return type(event).__name__ in _CHANGE_EVENTS and getattr(event, "item_id", None) is not None


def _close_on_stop(service: Any, stop_event: threading.Event, done: threading.Event) -> None:
    """Shut the stream's socket down when ``stop_event`` is set, so the read ends now."""
    while not done.is_set():
        if not stop_event.wait(0.25):
            continue
        sock = _socket_of(service)
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            return
        done.wait(0.02)  # the response has not come yet: look again


def _socket_of(service: Any) -> socket.socket | None:
    response = getattr(service, "_streaming_response", None)
    raw = getattr(response, "raw", None)
    connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None
