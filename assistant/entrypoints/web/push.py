"""Webhook receivers for provider push: ``POST /push/graph`` and ``POST /push/google``.

They only answer the provider and say which account changed; syncing is the callback's
business (queue ``sync_account``: the sync reads the changes with the account's token,
so a notification carries nothing we need, and a duplicate costs one cheap request).

* ``/push/graph`` is the notificationUrl *and* the lifecycleNotificationUrl of our Graph
  subscriptions. It echoes ``?validationToken=`` (text/plain, 200) at once, checks every
  notification's clientState against its subscription's secret, and calls back with
  ``change`` or a lifecycle event (``reauthorizationRequired``: renew the subscription;
  ``subscriptionRemoved``: create a new one and sync; ``missed``: sync).
* ``/push/google`` receives watch-channel messages; the channel token is checked, a
  ``sync`` message (a new channel saying hello) calls nothing, ``exists`` and
  ``not_exists`` call back with ``change``.

An unknown subscription or channel is answered exactly like a wrong secret, so that the
answers tell a caller nothing about which ids exist: Graph gets 202 for both (it retries
other answers for hours, and an endpoint that fails often is throttled for every
subscription; what is not ours or not genuine is dropped), Google gets 403 for both (it
does not retry 4xx). Bodies are read within ``max_bytes`` (413) and Graph's JSON within
``max_depth`` levels (400), by the same reader as the API (``assistant.entrypoints.web.bodies``).
These routes take requests from other sites by design (``csrf.CROSS_SITE_ALLOWED``).

``directory`` resolves a subscription or channel id to (account id, secret); it may read
the database, so lookups and the callback run in the thread pool. When the callback
fails, the answer is 503 so that the provider delivers again (Graph retries for hours,
Google with back-off): nothing is lost, and a repeat only costs a sync.

The app does not mount these itself: ``push_routes(directory, on_signal)`` gives the
routes to add to the service's Starlette app.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from typing import Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assistant.entrypoints.web.bodies import BodyRefused, parse_json, read_body
from assistant.services.push import PushSignal
from connectors.google.push import handle_google_notification
from connectors.graph.push import graph_subscription_ids, handle_graph_notification
from connectors.push import PushReply

log = logging.getLogger(__name__)

MAX_BODY = 1_000_000  # bytes; Graph batches notifications, but not that many
MAX_DEPTH = 32  # Graph's notifications nest 3 levels

class PushDirectory(Protocol):
    def graph_subscription(self, subscription_id: str) -> tuple[int, str] | None:
        """(account id, clientState) of one of our Graph subscriptions, or None."""
        ...

    def google_channel(self, channel_id: str) -> tuple[int, str] | None:
        """(account id, channel token) of one of our Google channels, or None."""
        ...


class MemoryDirectory:
    """A PushDirectory in memory (one process; tests, or a cache in front of the store)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._graph: dict[str, tuple[int, str]] = {}
        self._google: dict[str, tuple[int, str]] = {}

    def add_graph(self, subscription_id: str, account_id: int, client_state: str) -> None:
        with self._lock:
            self._graph[subscription_id] = (account_id, client_state)

    def remove_graph(self, subscription_id: str) -> None:
        with self._lock:
            self._graph.pop(subscription_id, None)

    def add_google(self, channel_id: str, account_id: int, token: str) -> None:
        with self._lock:
            self._google[channel_id] = (account_id, token)

    def remove_google(self, channel_id: str) -> None:
        with self._lock:
            self._google.pop(channel_id, None)

    def graph_subscription(self, subscription_id: str) -> tuple[int, str] | None:
        with self._lock:
            return self._graph.get(subscription_id)

    def google_channel(self, channel_id: str) -> tuple[int, str] | None:
        with self._lock:
            return self._google.get(channel_id)


OnSignal = Callable[[PushSignal], None]


def push_routes(
    directory: PushDirectory,
    on_signal: OnSignal,
    *,
    max_bytes: int = MAX_BODY,
    max_depth: int = MAX_DEPTH,
) -> list[Route]:
    """``/push/graph`` and ``/push/google``, calling ``on_signal`` for each signal."""

    def graph_work(body: bytes, query: dict[str, str]) -> PushReply:
        accounts: dict[str, int] = {}
        client_states: dict[str, str] = {}
        for sub_id in graph_subscription_ids(body):
            found = directory.graph_subscription(sub_id)
            if found is not None:
                accounts[sub_id], client_states[sub_id] = found
        reply, signals = handle_graph_notification(body, query, client_states)
        for sub_id, kind in signals:
            on_signal(PushSignal("graph", accounts[sub_id], kind, sub_id))
        if reply.status == 403:  # only forged ones: answered like unknown ones
            return PushReply(202)
        return reply

    def google_work(headers: dict[str, str]) -> PushReply:
        channel_id = headers.get("x-goog-channel-id", "")
        found = directory.google_channel(channel_id) if channel_id else None
        # An unknown channel is checked against a token nobody has: refused like a wrong one.
        tokens = {channel_id: found[1] if found is not None else secrets.token_urlsafe(32)}
        reply, signals = handle_google_notification(headers, tokens)
        for channel, kind in signals:
            if kind != "sync" and found is not None:
                on_signal(PushSignal("google", found[0], "change", channel))
        return reply

    async def graph(request: Request) -> Response:
        query = dict(request.query_params)
        token = query.get("validationToken")
        if token is not None:  # answered at once: Graph waits 10 s at most
            reply, _ = handle_graph_notification(b"", {"validationToken": token}, {})
            return _response(reply)
        try:
            body = await read_body(request, max_bytes)
            parse_json(body, max_depth)  # the connector parses it again, bounded now
        except BodyRefused as exc:
            return Response(exc.message, status_code=exc.status, media_type="text/plain")
        try:
            reply = await run_in_threadpool(graph_work, body, query)
        except Exception:
            log.exception("Graph push: the callback failed; Graph will deliver again")
            return Response(b"try again", status_code=503, media_type="text/plain")
        return _response(reply)

    async def google(request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            await read_body(request, max_bytes)  # Google sends none; nothing to parse
        except BodyRefused as exc:
            return Response(exc.message, status_code=exc.status, media_type="text/plain")
        try:
            reply = await run_in_threadpool(google_work, headers)
        except Exception:
            log.exception("Google push: the callback failed; Google will deliver again")
            return Response(b"try again", status_code=503, media_type="text/plain")
        return _response(reply)

    return [
        Route("/push/graph", graph, methods=["POST"], name="push_graph"),
        Route("/push/google", google, methods=["POST"], name="push_google"),
    ]


def _response(reply: PushReply) -> Response:
    return Response(reply.body, status_code=reply.status, media_type=reply.content_type)
