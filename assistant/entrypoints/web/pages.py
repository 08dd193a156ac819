"""The server-rendered pages (Jinja2 templates under assistant/entrypoints/web/templates/)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from assistant.domain.charts import TimelineTask, timeline_svg, trend_svg
from assistant.domain.priorities import RULE_KINDS
from assistant.entrypoints.web import actions, csrf, views, week
from assistant.entrypoints.web.api import csv_response, first_day
from assistant.entrypoints.web.auth import (
    SESSION_COOKIE,
    Viewer,
    check_password,
    end_session,
    send_login_link,
    set_cookie,
    set_locale,
    start_session,
    use_login_link,
    viewer_of,
)
from assistant.entrypoints.web.guard import Ctx, HTTPProblem, guarded
from assistant.entrypoints.web.i18n import GOOD_NOTES, NOTES, translator
from assistant.entrypoints.web.labels import labeler, time_writer
from assistant.entrypoints.web.login_guard import LoginGuard
from assistant.services.pair_settings import (
    CHANNELS,
    DAYS,
    format_hours,
    pair_settings,
    parse_hours,
)
from assistant.services.priorities import list_rules
from assistant.services.users import visible_pairs
from assistant.store.tables import User

if TYPE_CHECKING:
    from assistant.bootstrap import Service

TEMPLATES = Path(__file__).resolve().parent / "templates"


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["weekday"] = week.weekday  # day headings: "Tue 24 Nov" / "вт 24 ноября"
    return Jinja2Templates(env=env)


def _client(request: Request) -> str:
    """The client's address as the server saw it (behind a proxy: run uvicorn with
    ``--proxy-headers`` and ``--forwarded-allow-ips`` so that this is the real one)."""
    return request.client.host if request.client else ""


def _safe_next(target: str) -> str:
    """Only local paths: never redirect a login to another site."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or "\\" in target:
        return "/"
    if target.startswith("//"):
        return "/"
    return target


class Pages:
    def __init__(self, svc: Service, on_task_created: actions.TaskCreated | None) -> None:
        self.svc = svc
        self.templates = make_templates()
        self.on_task_created = on_task_created

    # ------------------------------------------------------------------- rendering

    @staticmethod
    def page_locale(request: Request, viewer: Viewer | None) -> str:
        """The language of the page: the viewer's, or ``?lang=`` before signing in."""
        return viewer.locale if viewer else request.query_params.get("lang", "en")

    def render(
        self,
        request: Request,
        viewer: Viewer | None,
        name: str,
        status: int = 200,
        ctx: Ctx | None = None,
        **data: Any,
    ) -> Response:
        locale = self.page_locale(request, viewer)
        zone = ctx.access.timezone if ctx and ctx.access else "UTC"
        context = {
            "t": translator(locale),
            "label": labeler(locale),
            "when": time_writer(locale, zone),
            "locale": locale,
            "viewer": viewer,
            "access": ctx.access if ctx else None,
            "csrf": viewer.csrf_token if viewer else "",
            "path": request.url.path,
            # The pair's accounts that fail: a banner on every page of the pair.
            "unhealthy": (
                views.unhealthy(self.svc, ctx.access.pair_id, locale)
                if ctx is not None and ctx.access is not None
                else []
            ),
            **data,
        }
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    def error_page(
        self, request: Request, viewer: Viewer | None, status: int, message: str
    ) -> Response:
        return self.render(request, viewer, "error.html", status=status, message=message)

    def g(self, handler: Any, *, pair: bool = True, edit: bool = False) -> Any:
        return guarded(
            self.svc, handler, api=False, error_page=self.error_page, pair=pair, edit=edit
        )

    def back(self, ctx: Ctx, page: str) -> Response:
        return RedirectResponse(f"/pairs/{ctx.pair.pair_id}/{page}", status_code=303)

    # ----------------------------------------------------------------- logging in

    async def login_form(self, request: Request) -> Response:
        viewer = viewer_of(self.svc, request)
        if viewer is not None:
            return RedirectResponse(_safe_next(request.query_params.get("next", "/")), 303)
        return self._login_page(request, "", 200)

    def _login_page(self, request: Request, message: str, status: int, **extra: Any) -> Response:
        token = csrf.new_token()
        response = self.render(
            request,
            None,
            extra.pop("template", "login.html"),
            status=status,
            message=message,
            login_csrf=token,
            next=_safe_next(request.query_params.get("next", "/")),
            **extra,
        )
        set_cookie(self.svc, response, csrf.PRELOGIN_COOKIE, token, 3600)
        return response

    async def _prelogin_form(self, request: Request) -> tuple[Any, bool]:
        form = await request.form()
        ok = csrf.matches(request.cookies.get(csrf.PRELOGIN_COOKIE), form.get(csrf.FIELD))
        return form, ok

    async def login(self, request: Request) -> Response:
        form, ok = await self._prelogin_form(request)
        t = translator(request.query_params.get("lang", "en"))
        if not ok:
            return self._login_page(request, t("csrf"), 403)
        email, client = str(form.get("email", "")), _client(request)
        guard, now = LoginGuard(self.svc.uow), self.svc.now()
        attempt = guard.start_password(email, client, now)
        if attempt.wait > 0:
            minutes = max(1, math.ceil(attempt.wait / 60))
            response = self._login_page(request, t("too_many_logins").format(minutes=minutes), 429)
            response.headers["Retry-After"] = str(math.ceil(attempt.wait))
            return response
        user_id = check_password(self.svc, email, str(form.get("password", "")))
        if user_id is None:  # the attempt stays counted as a refusal
            return self._login_page(request, t("wrong_login"), 401)
        guard.succeeded(email, attempt)
        return self._logged_in(user_id, str(form.get("next", "/")))

    def _logged_in(self, user_id: int, target: str) -> Response:
        token, max_age = start_session(self.svc, user_id)
        response = RedirectResponse(_safe_next(target), status_code=303)
        set_cookie(self.svc, response, SESSION_COOKIE, token, max_age)
        response.delete_cookie(csrf.PRELOGIN_COOKIE, path="/")
        return response

    async def logout(self, request: Request, ctx: Ctx) -> Response:
        end_session(self.svc, request)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def ask_link(self, request: Request) -> Response:
        form, ok = await self._prelogin_form(request)
        t = translator(request.query_params.get("lang", "en"))
        if not ok:
            return self._login_page(request, t("csrf"), 403)
        base = self.svc.settings.web.public_url or str(request.base_url)
        email = str(form.get("email", ""))
        if LoginGuard(self.svc.uow).take_link(email, _client(request), self.svc.now()):
            send_login_link(self.svc, email, base)
        return self._login_page(request, t("link_sent"), 200)  # the same, sent or not

    async def link_form(self, request: Request) -> Response:
        return self._login_page(
            request, "", 200, template="link.html", token=request.path_params["token"]
        )

    async def use_link(self, request: Request) -> Response:
        form, ok = await self._prelogin_form(request)
        t = translator("en")
        if not ok:
            return self._login_page(request, t("csrf"), 403)
        user_id = use_login_link(self.svc, str(request.path_params["token"]))
        if user_id is None:
            return self._login_page(request, t("link_bad"), 400)
        return self._logged_in(user_id, str(form.get("next", "/")))

    async def locale(self, request: Request, ctx: Ctx) -> Response:
        assert ctx.form is not None
        set_locale(self.svc, ctx.viewer.user_id, str(ctx.form.get("locale", "en")))
        return RedirectResponse(_safe_next(str(ctx.form.get("next", "/"))), status_code=303)

    async def password_form(self, request: Request, ctx: Ctx) -> Response:
        changed = request.query_params.get("changed") == "1"
        return self.render(request, ctx.viewer, "password.html", changed=changed, message="")

    async def change_password(self, request: Request, ctx: Ctx) -> Response:
        assert ctx.form is not None
        try:
            actions.change_password(
                self.svc,
                ctx.viewer,
                _client(request),
                str(ctx.form.get("current_password", "")),
                str(ctx.form.get("new_password", "")),
            )
        except HTTPProblem as exc:
            return self.render(
                request,
                ctx.viewer,
                "password.html",
                status=exc.status,
                changed=False,
                message=exc.message,
            )
        return RedirectResponse("/me/password?changed=1", status_code=303)

    # --------------------------------------------------------------------- pages

    async def home(self, request: Request, ctx: Ctx) -> Response:
        with self.svc.uow.read() as session:
            user = session.get(User, ctx.viewer.user_id)
            pairs = [
                {"id": p.id, "name": p.name, "manager": p.manager_name or p.manager_email}
                for p in (visible_pairs(session, user) if user is not None else [])
            ]
        return self.render(request, ctx.viewer, "home.html", ctx=ctx, pairs=pairs)

    async def pair_home(self, request: Request, ctx: Ctx) -> Response:
        return self.back(ctx, "agenda")

    async def agenda(self, request: Request, ctx: Ctx) -> Response:
        week = request.query_params.get("view") == "week"
        today = self.svc.now().astimezone(ZoneInfo(ctx.pair.timezone)).date()
        first = first_day(request, today)
        if week:
            first -= timedelta(days=first.weekday())
        days = 7 if week else 1
        data = views.agenda(self.svc, ctx.pair, first, days)
        return self.render(
            request,
            ctx.viewer,
            "agenda.html",
            ctx=ctx,
            data=data,
            week=week,
            prev=(first - timedelta(days=days)).isoformat(),
            next=(first + timedelta(days=days)).isoformat(),
        )

    async def changes(self, request: Request, ctx: Ctx) -> Response:
        data = views.changes(self.svc, ctx.pair)
        return self.render(request, ctx.viewer, "changes.html", ctx=ctx, data=data)

    async def retry(self, request: Request, ctx: Ctx) -> Response:
        actions.retry(self.svc, ctx.pair, int(request.path_params["entry_id"]))
        return self.back(ctx, "changes")

    async def priorities(self, request: Request, ctx: Ctx) -> Response:
        rules = list_rules(self.svc, ctx.pair.ref)
        return self.render(
            request, ctx.viewer, "priorities.html", ctx=ctx, rules=rules, kinds=RULE_KINDS
        )

    async def add_priority(self, request: Request, ctx: Ctx) -> Response:
        assert ctx.form is not None
        actions.add_priority(self.svc, ctx.pair, dict(ctx.form))
        return self.back(ctx, "priorities")

    async def remove_priority(self, request: Request, ctx: Ctx) -> Response:
        actions.remove_priority(self.svc, ctx.pair, int(request.path_params["rule_id"]))
        return self.back(ctx, "priorities")

    async def latency(self, request: Request, ctx: Ctx) -> Response:
        data = views.latency(self.svc, ctx.pair)
        weeks = [
            {"week": w["week"], "median_minutes": w["median_working_minutes"],
             "answered": w["answered"]}
            for w in data["trend"]
        ]  # fmt: skip
        svg = trend_svg(weeks, data["sla_minutes"], locale=self.page_locale(request, ctx.viewer))
        chart = Markup(svg)  # noqa: S704 - our own SVG, values escaped
        return self.render(request, ctx.viewer, "latency.html", ctx=ctx, data=data, chart=chart)

    async def latency_csv(self, request: Request, ctx: Ctx) -> Response:
        return csv_response(
            views.latency_csv(views.latency(self.svc, ctx.pair)), ctx.pair.pair_name
        )

    async def tasks(
        self,
        request: Request,
        ctx: Ctx,
        *,
        form_error: str = "",
        form: dict[str, str] | None = None,
        ask_confirm: bool = False,
    ) -> Response:
        """The tasks page; after a refused form, the form again with ``form_error`` (400)
        and, for a term that starts in the past, the box that confirms it."""
        data = views.tasks(self.svc, ctx.pair)
        locale = self.page_locale(request, ctx.viewer)
        rows = _timeline(data["tasks"])
        svg = timeline_svg(rows, ctx.pair.timezone, locale=locale, today=self.svc.now())
        chart = Markup(svg)  # noqa: S704 - our own SVG, values escaped
        return self.render(request, ctx.viewer, "tasks.html", status=400 if form_error else 200,
                           ctx=ctx, data=data, chart=chart, form_error=form_error,
                           form=form or {}, ask_confirm=ask_confirm)  # fmt: skip

    async def create_task(self, request: Request, ctx: Ctx) -> Response:
        from assistant.domain.delegation import PastDeadline, PastStart

        assert ctx.form is not None
        posted = {k: str(v) for k, v in ctx.form.items() if k != "csrf_token"}
        try:
            task_id = actions.create_task(self.svc, ctx.pair, posted, self.on_task_created)
        except (PastDeadline, PastStart) as exc:
            return await self.tasks(request, ctx, form_error=str(exc), form=posted,
                                    ask_confirm=isinstance(exc, PastStart))  # fmt: skip
        return RedirectResponse(f"/pairs/{ctx.pair.pair_id}/tasks/{task_id}", status_code=303)

    async def task(self, request: Request, ctx: Ctx) -> Response:
        data = views.task(self.svc, ctx.pair, int(request.path_params["task_id"]))
        return self.render(request, ctx.viewer, "task.html", ctx=ctx, task=data)

    async def accounts(
        self,
        request: Request,
        ctx: Ctx,
        *,
        form_error: str = "",
        form: dict[str, str] | None = None,
    ) -> Response:
        """The accounts page; after a refused form, the form again with ``form_error`` (400).

        The add form shows the fields of the provider chosen (``?provider=``, or the refused
        form's); without a choice, only the choice."""
        from assistant.entrypoints.web.account_forms import FLOWS, fields_of, sign_in_missing
        from assistant.services.accounts import FORM_PROVIDERS

        rows = views.accounts(self.svc, ctx.pair, ctx.viewer.locale)
        for row in rows:
            row["password_form"] = row["provider"] in FORM_PROVIDERS
        note = request.query_params.get("note", "")
        form = form or {}
        chosen = form.get("provider") or request.query_params.get("provider", "")
        chosen = chosen if chosen in FORM_PROVIDERS else ""
        return self.render(
            request,
            ctx.viewer,
            "accounts.html",
            status=400 if form_error else 200,
            ctx=ctx,
            accounts=rows,
            form_error=form_error,
            form=form,
            note=note if note in NOTES else "",
            note_ok=note in GOOD_NOTES,
            may_edit=ctx.pair.may_edit,
            connect=[
                {"flow": flow, "missing": sign_in_missing(self.svc, request, flow)}
                for flow in FLOWS
            ],
            providers=list(FORM_PROVIDERS),
            chosen=chosen,
            fields=fields_of(chosen) if chosen else [],
        )

    async def accounts_js(self, request: Request) -> Response:
        """The accounts page's few lines of script (the CSP allows scripts from here only)."""
        script = (Path(__file__).parent / "templates" / "accounts.js").read_text()
        return Response(script, media_type="text/javascript")

    async def settings(self, request: Request, ctx: Ctx) -> Response:
        data = pair_settings(self.svc, ctx.pair.pair_id)
        return self.render(
            request,
            ctx.viewer,
            "settings.html",
            ctx=ctx,
            s=data,
            days=DAYS,
            hours=format_hours(data.working_hours),
            channels=CHANNELS,
            saved=request.query_params.get("saved") == "1",
        )

    async def save_settings(self, request: Request, ctx: Ctx) -> Response:
        f = ctx.form
        assert f is not None
        data: dict[str, Any] = {
            "timezone": f.get("timezone", ""),
            "assistant_timezone": f.get("assistant_timezone", ""),
            "working_hours": parse_hours({d: str(f.get(f"hours_{d}", "")) for d in DAYS}),
            "sla_minutes": f.get("sla_minutes", ""),
            "quiet_hours": {
                "start": f.get("quiet_start", ""),
                "end": f.get("quiet_end", ""),
                "high_breaks_through": f.get("high_breaks_through") == "on",
            },
            "digest_time": f.get("digest_time", ""),
            "holidays_country": f.get("holidays_country", ""),
            "notify_channels": f.getlist("channels"),
            "locale": f.get("locale", "en"),
        }
        if ctx.pair.role == "manager":
            data["share_private_details"] = f.get("share_private_details") == "on"
        actions.save_settings(self.svc, ctx.pair, data)
        return RedirectResponse(f"/pairs/{ctx.pair.pair_id}/settings?saved=1", status_code=303)

    # -------------------------------------------------------------------- routes

    def routes(self) -> list[BaseRoute]:
        g = self.g
        p = "/pairs/{pair_id:int}"
        return [
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/login/link", self.ask_link, methods=["POST"]),
            Route("/login/link/{token}", self.link_form, methods=["GET"]),
            Route("/login/link/{token}", self.use_link, methods=["POST"]),
            Route("/logout", g(self.logout, pair=False), methods=["POST"]),
            Route("/me/locale", g(self.locale, pair=False), methods=["POST"]),
            Route("/me/password", g(self.password_form, pair=False), methods=["GET"]),
            Route("/me/password", g(self.change_password, pair=False), methods=["POST"]),
            Route("/", g(self.home, pair=False), methods=["GET"]),
            Route(p, g(self.pair_home), methods=["GET"]),
            Route(f"{p}/agenda", g(self.agenda), methods=["GET"]),
            Route(f"{p}/changes", g(self.changes), methods=["GET"]),
            Route(f"{p}/outbox/{{entry_id:int}}/retry", g(self.retry), methods=["POST"]),
            Route(f"{p}/priorities", g(self.priorities), methods=["GET"]),
            Route(f"{p}/priorities", g(self.add_priority, edit=True), methods=["POST"]),
            Route(
                f"{p}/priorities/{{rule_id:int}}/remove",
                g(self.remove_priority, edit=True),
                methods=["POST"],
            ),
            Route(f"{p}/latency", g(self.latency), methods=["GET"]),
            Route(f"{p}/latency.csv", g(self.latency_csv), methods=["GET"]),
            Route(f"{p}/tasks", g(self.tasks), methods=["GET"]),
            Route(f"{p}/tasks", g(self.create_task, edit=True), methods=["POST"]),
            Route(f"{p}/tasks/{{task_id:int}}", g(self.task), methods=["GET"]),
            Route(f"{p}/accounts", g(self.accounts), methods=["GET"]),
            Route("/static/accounts.js", self.accounts_js, methods=["GET"]),
            Route(f"{p}/settings", g(self.settings), methods=["GET"]),
            Route(f"{p}/settings", g(self.save_settings, edit=True), methods=["POST"]),
        ]


def _timeline(tasks: list[dict[str, Any]]) -> list[TimelineTask]:
    """The open tasks of the tasks page (``views.tasks``) as timeline rows."""

    def at(text: str | None) -> datetime | None:
        return datetime.fromisoformat(text) if text else None

    rows = []
    for t in tasks:
        start, deadline = at(t["term_start"]), at(t["deadline"])
        if t["state"] == "cancelled" or start is None or deadline is None:
            continue
        lines = {c["kind"]: at(c["start"] or c["line_at"]) for c in t["checkpoints"]}
        rows.append(TimelineTask(t["title"], start, deadline, lines.get("red_line"),
                                 lines.get("dead_line")))  # fmt: skip
    return rows
