"""The JSON API under /api/: the same data and rules as the pages.

Authentication is the session cookie (log in through ``POST /api/login``); every unsafe
method needs the session's CSRF token in the ``X-CSRF-Token`` header (``GET /api/me``
returns it), a body sent as ``Content-Type: application/json`` (415 otherwise) and no
``Origin`` of another site.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import date
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from assistant.entrypoints.web import actions, feedback, views
from assistant.entrypoints.web.auth import (
    SESSION_COOKIE,
    check_password,
    end_session,
    set_cookie,
    start_session,
)
from assistant.entrypoints.web.bodies import BodyRefused, json_object, read_json
from assistant.entrypoints.web.guard import Ctx, ErrorPage, HTTPProblem, guarded
from assistant.entrypoints.web.login_guard import LoginGuard
from assistant.entrypoints.web.openapi import openapi
from assistant.services.pair_settings import pair_settings
from assistant.services.priorities import list_rules
from assistant.services.users import visible_pairs
from assistant.store.tables import User

if TYPE_CHECKING:
    from assistant.bootstrap import Service


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPProblem(400, f"{name} must be a whole number") from None
    if not lo <= value <= hi:
        raise HTTPProblem(400, f"{name} must be between {lo} and {hi}")
    return value


def first_day(request: Request, today: date) -> date:
    raw = request.query_params.get("date")
    if not raw:
        return today
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise HTTPProblem(400, "date must look like 2026-11-24") from None


def routes(
    svc: Service, error_page: ErrorPage, on_task_created: actions.TaskCreated | None
) -> list[BaseRoute]:
    def g(handler: Any, *, pair: bool = True, edit: bool = False) -> Any:
        return guarded(svc, handler, api=True, error_page=error_page, pair=pair, edit=edit)

    async def login(request: Request) -> Response:
        web = svc.settings.web
        try:  # JSON only: a cross-site text/plain form must not sign anyone in
            data = json_object(await read_json(request, web.max_body_bytes, web.max_json_depth))
        except BodyRefused as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        email = str(data.get("email", ""))
        client = request.client.host if request.client else ""
        guard, now = LoginGuard(svc.uow), svc.now()
        attempt = guard.start_password(email, client, now)
        if attempt.wait > 0:
            seconds = math.ceil(attempt.wait)
            return JSONResponse(
                {"error": "too many attempts", "retry_after_seconds": seconds},
                status_code=429,
                headers={"Retry-After": str(seconds)},
            )
        user_id = check_password(svc, email, str(data.get("password", "")))
        if user_id is None:  # the attempt stays counted as a refusal
            return JSONResponse({"error": "wrong email or password"}, status_code=401)
        guard.succeeded(email, attempt)
        token, max_age = start_session(svc, user_id)
        response = JSONResponse({"ok": True})
        set_cookie(svc, response, SESSION_COOKIE, token, max_age)
        return response

    async def logout(request: Request, ctx: Ctx) -> Response:
        end_session(svc, request)
        response = JSONResponse({"ok": True})
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def me(request: Request, ctx: Ctx) -> Response:
        v = ctx.viewer
        return JSONResponse(
            {
                "id": v.user_id,
                "email": v.email,
                "name": v.name,
                "role": v.role,
                "locale": v.locale,
                "csrf_token": v.csrf_token,
            }
        )

    async def change_password(request: Request, ctx: Ctx) -> Response:
        data = ctx.body or {}
        client = request.client.host if request.client else ""
        actions.change_password(
            svc,
            ctx.viewer,
            client,
            str(data.get("current_password", "")),
            str(data.get("new_password", "")),
        )
        return JSONResponse({"ok": True})

    async def pairs(request: Request, ctx: Ctx) -> Response:
        with svc.uow.read() as session:
            user = session.get(User, ctx.viewer.user_id)
            rows = visible_pairs(session, user) if user is not None else []
            out = [{"id": p.id, "name": p.name, "timezone": p.timezone} for p in rows]
        return JSONResponse(out)

    async def agenda(request: Request, ctx: Ctx) -> Response:
        zone = ZoneInfo(ctx.pair.timezone)
        first = first_day(request, svc.now().astimezone(zone).date())
        days = _int_param(request, "days", 1, 1, 31)
        return JSONResponse(views.agenda(svc, ctx.pair, first, days))

    async def changes(request: Request, ctx: Ctx) -> Response:
        return JSONResponse(views.changes(svc, ctx.pair, _int_param(request, "limit", 100, 1, 500)))

    async def retry(request: Request, ctx: Ctx) -> Response:
        actions.retry(svc, ctx.pair, int(request.path_params["entry_id"]))
        return JSONResponse({"ok": True})

    async def priorities(request: Request, ctx: Ctx) -> Response:
        return JSONResponse(
            {
                "may_edit": ctx.pair.may_edit,
                "rules": [asdict(r) for r in list_rules(svc, ctx.pair.ref)],
            }
        )

    async def add_priority(request: Request, ctx: Ctx) -> Response:
        rule_id = actions.add_priority(svc, ctx.pair, dict(ctx.body or {}))
        return JSONResponse({"id": rule_id}, status_code=201)

    async def remove_priority(request: Request, ctx: Ctx) -> Response:
        actions.remove_priority(svc, ctx.pair, int(request.path_params["rule_id"]))
        return JSONResponse({"ok": True})

    async def latency(request: Request, ctx: Ctx) -> Response:
        data = views.latency(svc, ctx.pair)
        data.pop("records")
        return JSONResponse(data)

    async def latency_csv(request: Request, ctx: Ctx) -> Response:
        return csv_response(views.latency_csv(views.latency(svc, ctx.pair)), ctx.pair.pair_name)

    async def tasks(request: Request, ctx: Ctx) -> Response:
        return JSONResponse(views.tasks(svc, ctx.pair))

    async def create_task(request: Request, ctx: Ctx) -> Response:
        task_id = actions.create_task(svc, ctx.pair, dict(ctx.body or {}), on_task_created)
        return JSONResponse(views.task(svc, ctx.pair, task_id), status_code=201)

    async def task(request: Request, ctx: Ctx) -> Response:
        return JSONResponse(views.task(svc, ctx.pair, int(request.path_params["task_id"])))

    async def accounts(request: Request, ctx: Ctx) -> Response:
        return JSONResponse(views.accounts(svc, ctx.pair))

    async def settings(request: Request, ctx: Ctx) -> Response:
        return JSONResponse(
            pair_settings(svc, ctx.pair.pair_id).to_json() | {"may_edit": ctx.pair.may_edit}
        )

    async def save_settings(request: Request, ctx: Ctx) -> Response:
        return JSONResponse(actions.save_settings(svc, ctx.pair, dict(ctx.body or {})).to_json())

    async def spec(request: Request) -> Response:
        return JSONResponse(openapi())

    p = "/api/pairs/{pair_id:int}"
    return [
        Route("/api/openapi.json", spec, methods=["GET"]),
        Route("/api/login", login, methods=["POST"]),
        Route("/api/logout", g(logout, pair=False), methods=["POST"]),
        Route("/api/me", g(me, pair=False), methods=["GET"]),
        Route("/api/me/password", g(change_password, pair=False), methods=["POST"]),
        Route("/api/pairs", g(pairs, pair=False), methods=["GET"]),
        Route(f"{p}/agenda", g(agenda), methods=["GET"]),
        Route(f"{p}/changes", g(changes), methods=["GET"]),
        Route(f"{p}/outbox/{{entry_id:int}}/retry", g(retry), methods=["POST"]),
        Route(f"{p}/priorities", g(priorities), methods=["GET"]),
        Route(f"{p}/priorities", g(add_priority, edit=True), methods=["POST"]),
        Route(f"{p}/priorities/{{rule_id:int}}", g(remove_priority, edit=True), methods=["DELETE"]),
        Route(f"{p}/latency", g(latency), methods=["GET"]),
        Route(f"{p}/latency.csv", g(latency_csv), methods=["GET"]),
        Route(f"{p}/tasks", g(tasks), methods=["GET"]),
        Route(f"{p}/tasks", g(create_task, edit=True), methods=["POST"]),
        Route(f"{p}/tasks/{{task_id:int}}", g(task), methods=["GET"]),
        *feedback.correction_routes(svc, g),
        Route(f"{p}/accounts", g(accounts), methods=["GET"]),
        Route(f"{p}/settings", g(settings), methods=["GET"]),
        Route(f"{p}/settings", g(save_settings, edit=True), methods=["PUT"]),
    ]


def csv_response(text: str, pair_name: str) -> Response:
    # a header value: ASCII only (a pair named "Алекс" must not make the download a 500)
    safe = "".join(ch for ch in pair_name if (ch.isascii() and ch.isalnum()) or ch in "-_")
    safe = safe or "pair"
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="latency-{safe}.csv"'},
    )
