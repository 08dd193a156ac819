"""The web app: pages for the pair, a JSON API under /api/, and /health.

``create_app(svc)`` is the entry point ``assistant run`` serves. ``on_task_created`` (a
task id → None callback, e.g. the ``write_checkpoints`` job) lets the runner write a new
task's checkpoint events in the background; without it they stay planned until then.
``on_push`` (a :class:`~assistant.entrypoints.web.push.PushSignal` → None callback, e.g. one that
queues the account's sync) receives what ``/push/graph`` and ``/push/google`` report;
without it those answer 503, so the provider delivers again later.

Before any route, ``SameSiteAndBounded`` refuses state-changing requests from other sites
(403; see ``csrf``) and bodies over ``web.max_body_bytes`` (413). ``/health`` answers
``{"status": "ok"}`` (200) or ``{"status": "not ok"}`` (503) to anyone; the counts of
accounts and notifications by state only to a signed-in user.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.entrypoints.web import api, csrf, feedback, ics
from assistant.entrypoints.web.actions import TaskCreated
from assistant.entrypoints.web.auth import viewer_of
from assistant.entrypoints.web.connect import Connect
from assistant.entrypoints.web.pages import Pages
from assistant.entrypoints.web.push import OnSignal, push_routes
from assistant.entrypoints.web.week_page import WeekPages
from assistant.services.accounts import install_keyring
from assistant.services.push import DbDirectory, PushSignal
from assistant.store.tables import Account, OutboxEntry, Pair

if TYPE_CHECKING:
    from assistant.bootstrap import Service

log = logging.getLogger(__name__)

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        b"script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    ),
]


class SecurityHeaders:
    """Headers every response carries; pages are never cached (they hold private data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in [*SECURITY_HEADERS, (b"cache-control", b"no-store")]:
                    if name not in present:  # a route's own stricter value stands
                        headers.append((name, value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _TooLarge(Exception):
    pass


class SameSiteAndBounded:
    """Before any route: unsafe requests must come from this site (``csrf.cross_site_reason``,
    403) and no request body may pass ``web.max_body_bytes`` (413, counted while it is
    read, whatever reads it: forms, JSON, webhooks)."""

    def __init__(self, app: ASGIApp, svc: Service) -> None:
        self.app = app
        self.svc = svc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        web = self.svc.settings.web
        headers = Headers(scope=scope)
        path: str = scope["path"]
        own = csrf.own_origin(web.public_url, scope.get("scheme", "http"), headers.get("host", ""))
        reason = csrf.cross_site_reason(scope["method"], path, headers, own)
        if reason is not None:
            log.info(  # no header values: they are the caller's
                "refused a %s as cross-site: %s (behind a proxy, web.public_url must be "
                "the site's URL)",
                scope["method"],
                reason,
            )
            await _refuse(scope, receive, send, path, 403, reason)
            return
        limit = web.max_body_bytes
        declared = headers.get("content-length", "")
        too_large = f"the body is larger than {limit} bytes"
        if declared.isdigit() and int(declared) > limit:
            await _refuse(scope, receive, send, path, 413, too_large)
            return
        size = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    raise _TooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except _TooLarge:
            if started:
                raise
            await _refuse(scope, receive, send, path, 413, too_large)


async def _refuse(
    scope: Scope, receive: Receive, send: Send, path: str, status: int, message: str
) -> None:
    response: Response
    if path.startswith("/api/"):
        response = JSONResponse({"error": message}, status_code=status)
    else:
        response = PlainTextResponse(message, status_code=status)
    await response(scope, receive, send)


def _push_unhandled(signal: PushSignal) -> None:
    raise RuntimeError("no push handler: the provider will deliver again")


def create_app(
    svc: Service,
    on_task_created: TaskCreated | None = None,
    on_push: OnSignal | None = None,
) -> Starlette:
    def status() -> dict[str, Any]:
        try:
            with svc.uow.read() as session:
                session.execute(text("SELECT 1"))
                # Counts only, and only to a signed-in user: they name nobody's accounts.
                accounts = [
                    {"state": state}
                    for (state,) in session.execute(select(Account.state).order_by(Account.id))
                ]
                counts = dict(
                    session.execute(
                        select(OutboxEntry.state, func.count()).group_by(OutboxEntry.state)
                    ).all()
                )
                pairs = session.scalar(select(func.count()).select_from(Pair)) or 0
        except SQLAlchemyError as exc:
            return {"status": "error", "database": f"unreachable: {type(exc).__name__}"}
        degraded = any(a["state"] == "error" for a in accounts) or counts.get("dead", 0) > 0
        by_state: dict[str, int] = {}
        for a in accounts:
            by_state[a["state"]] = by_state.get(a["state"], 0) + 1
        return {
            "status": "degraded" if degraded else "ok",
            "database": "ok",
            "pairs": pairs,
            "accounts": by_state,
            "outbox": counts,
        }

    async def health(request: Request) -> Response:
        body = status()
        if body["status"] == "error":
            return JSONResponse({"status": "not ok"}, status_code=503)
        if viewer_of(svc, request) is None:  # anonymous: a monitor needs no more than this
            return JSONResponse({"status": "ok"})
        return JSONResponse(body)

    # Secrets the app stores (OAuth tokens, typed passwords) are encrypted with its key.
    install_keyring(svc.settings)
    pages = Pages(svc, on_task_created)
    routes = [
        Route("/health", health, methods=["GET"]),
        *feedback.routes(svc),
        *ics.routes(svc),
        *api.routes(svc, pages.error_page, on_task_created),
        *pages.routes(),
        *Connect(pages).routes(),
        *WeekPages(pages).routes(),
        # No login: each notification is checked against its subscription's clientState
        # or its channel's token (assistant/services/push.py keeps them).
        *push_routes(
            DbDirectory(svc.uow),
            on_push or _push_unhandled,
            max_bytes=svc.settings.web.max_body_bytes,
            max_depth=svc.settings.web.max_json_depth,
        ),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders), Middleware(SameSiteAndBounded, svc=svc)],
    )
