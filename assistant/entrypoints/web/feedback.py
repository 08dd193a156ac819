"""The one-click feedback page reached from a checkpoint's signed link (no login).

One screen that works on a phone. The link itself is the authority (signed, expiring,
bound to one task, line and person); forms carry a double-submit CSRF token so another
site cannot post in the person's name. A form sent twice is stored once.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from assistant.domain import timefmt
from assistant.domain.delegation import CheckpointKind
from assistant.domain.feedback import PERCENT_RANGE, Confidence, FeedbackAnswer, parse_percent
from assistant.domain.notify import template_env
from assistant.domain.signing import ExpiredToken, TokenError
from assistant.entrypoints.web.guard import Ctx, HTTPProblem
from assistant.services.feedback import (
    correct_dead_line,
    feedback_of,
    open_link,
    record_answer,
    recorded_answer,
    web_dedupe_key,
)
from assistant.services.pairs import NotFoundError
from assistant.store.tables import DelegatedTask, Pair

if TYPE_CHECKING:
    from assistant.bootstrap import Service

COOKIE = "fb_csrf"

TEXT = {
    "en": {
        "title": "Feedback",
        "heading": "How is the delegated task going?",
        "delegate": "Delegated to",
        "deadline": "Deadline",
        "percent": "How much is done?",
        "on_track": "Is it on track?",
        "needs_help": "Support is needed",
        "on_time": "Was it done on time?",
        "quality": "Quality against the agreed parameters",
        "comment": "Anything else",
        "yes": "Yes",
        "no": "No",
        "send": "Send",
        "saved": "Thank you: the answer is saved with the task.",
        "thank": "Now thank the delegate: praise what went well.",
        "expired": "This link has expired. Ask for a new one from the task's page.",
        "invalid": "This link is not valid.",
        "csrf": "The form had expired. Open the link again and send it once more.",
        "gone": "The task no longer exists.",
        "bad_percent": "How much is done: a number from 0 to 100.",
        "recorded": "This answer is recorded; the link cannot change it.",
        "correct": "The manager can correct it, signed in to the web app.",
        "answered_at": "Answered",
        "red_line": [
            "Does the work match the agreed parameters?",
            "Is it on schedule for the deadline?",
            "What support is needed?",
            "Is there a better way to do it now?",
        ],
        "dead_line": [
            "How much is done?",
            "Was it on time?",
            "Quality against the agreed parameters?",
            "What deserves praise?",
        ],
    },
    "ru": {
        "title": "Обратная связь",
        "heading": "Как идёт делегированная задача?",
        "delegate": "Исполнитель",
        "deadline": "Срок",
        "percent": "Сколько сделано?",
        "on_track": "Идёт по плану?",
        "needs_help": "Нужна помощь",
        "on_time": "Сделано в срок?",
        "quality": "Качество относительно согласованных параметров",
        "comment": "Что ещё",
        "yes": "Да",
        "no": "Нет",
        "send": "Отправить",
        "saved": "Спасибо: ответ сохранён в задаче.",
        "thank": "Теперь поблагодарите исполнителя: отметьте, что получилось хорошо.",
        "expired": "Срок действия ссылки истёк. Новую можно получить на странице задачи.",
        "invalid": "Ссылка недействительна.",
        "csrf": "Форма устарела. Откройте ссылку ещё раз и отправьте снова.",
        "gone": "Задачи больше нет.",
        "bad_percent": "Сколько сделано: число от 0 до 100.",
        "recorded": "Этот ответ записан; по ссылке его изменить нельзя.",
        "correct": "Исправить его может руководитель, войдя в веб-приложение.",
        "answered_at": "Ответ дан",
        "red_line": [
            "Соответствует ли работа согласованным параметрам?",
            "Успевает ли к сроку?",
            "Какая нужна поддержка?",
            "Есть ли сейчас способ лучше?",
        ],
        "dead_line": [
            "Сколько сделано?",
            "Сделано ли в срок?",
            "Качество относительно параметров?",
            "За что похвалить?",
        ],
    },
}


def routes(svc: Service) -> list[Route]:
    async def page(request: Request) -> Response:
        token = request.path_params["token"]
        if request.method == "POST":
            return await _post(svc, request, token)
        return _get(svc, token)

    return [Route("/feedback/{token}", page, methods=["GET", "POST"])]


def correction_routes(svc: Service, g: Callable[..., Any]) -> list[Route]:
    """``POST /api/pairs/{pair_id}/tasks/{task_id}/dead-line``: the pair's manager, signed in,
    corrects the recorded Dead Line answer (JSON ``percent_done`` 0-100, ``on_time``,
    ``quality``, ``comment``); the earlier answer stays in the task's history.
    ``g`` is the API's guard (session, CSRF token, access to the pair)."""

    async def correct(request: Request, ctx: Ctx) -> Response:
        if ctx.pair.role != "manager":
            raise HTTPProblem(403, "only the pair's manager may correct a Dead Line answer")
        body = ctx.body if isinstance(ctx.body, dict) else {}
        task_id = int(request.path_params["task_id"])
        with svc.uow.read() as session:
            task = session.get(DelegatedTask, task_id)
            if task is None or task.pair_id != ctx.pair.pair_id:
                raise NotFoundError(f"no task {task_id}")
        on_time = body.get("on_time")
        if not isinstance(on_time, bool):
            raise ValueError("on_time must be true or false")
        texts = {k: body.get(k, "") for k in ("quality", "comment")}
        if not all(isinstance(v, str) for v in texts.values()):
            raise ValueError("quality and comment must be text")
        answer = FeedbackAnswer(
            percent_done=parse_percent(body.get("percent_done")), on_time=on_time,
            needs_help=False, on_track=None, quality=texts["quality"].strip() or None,
            comment=texts["comment"].strip(), confidence=Confidence.HIGH,
        )  # fmt: skip
        correct_dead_line(svc, task_id, answer, source="manager")
        return JSONResponse({"feedback": [f.to_json() for f in feedback_of(svc, task_id)]})

    p = "/api/pairs/{pair_id:int}/tasks/{task_id:int}/dead-line"
    return [Route(p, g(correct), methods=["POST"])]


def _render(
    lg: str, status: int = 200, cookie: str | None = None, **context_in: Any
) -> Response:
    t = TEXT[lg]
    context = {"error": None, "saved": False, "kind": "", "task_title": "", "recorded": None}
    context |= context_in
    html = template_env().get_template("feedback/page.html.j2").render(lg=lg, t=t, **context)
    response = HTMLResponse(html, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
    if cookie is not None:
        response.set_cookie(
            COOKIE, cookie, httponly=True, samesite="strict", max_age=3600, path="/feedback/"
        )
    return response


def _load(svc: Service, token: str) -> tuple[Any, DelegatedTask | None, Pair | None, str | None]:
    """(target, task, pair, error text key)."""
    try:
        target = open_link(svc.settings, token, svc.now())
    except ExpiredToken:
        return None, None, None, "expired"
    except TokenError:
        return None, None, None, "invalid"
    with svc.uow.read() as session:
        task = session.get(DelegatedTask, target.task_id)
        pair = session.get(Pair, task.pair_id) if task is not None else None
    if task is None or pair is None or task.state == "cancelled":
        return target, None, None, "gone"
    return target, task, pair, None


def _recorded(svc: Service, target: Any, pair: Pair) -> dict[str, Any] | None:
    """The Dead Line answer this link's person gave, shown read only (it is final)."""
    if target.kind != CheckpointKind.DEAD_LINE.value:
        return None
    with svc.uow.read() as session:
        row = recorded_answer(session, target.task_id, target.kind, target.respondent)
        if row is None:
            return None
        local = row.answered_at.astimezone(ZoneInfo(pair.timezone))
        return {"percent_done": row.percent_done, "on_time": row.on_time,
                "quality": row.quality, "comment": row.comment,
                "answered_at": f"{timefmt.day(local.date(), timefmt.lang(pair.locale))} "
                               f"{local:%H:%M}", "dedupe_key": row.dedupe_key}  # fmt: skip


def _show_recorded(lg: str, task: DelegatedTask, recorded: dict[str, Any], status: int) -> Response:
    return _render(lg, status, kind=CheckpointKind.DEAD_LINE.value, task_title=task.title,
                   delegate=task.delegate, recorded=recorded)  # fmt: skip


def _get(svc: Service, token: str) -> Response:
    target, task, pair, error = _load(svc, token)
    lg = timefmt.lang(pair.locale) if pair is not None else "en"
    if error is not None or task is None or pair is None:
        status = 410 if error in ("expired", "gone") else 403
        return _render(lg, status, error=TEXT[lg][error or "invalid"])
    recorded = _recorded(svc, target, pair)
    if recorded is not None:
        return _show_recorded(lg, task, recorded, 200)
    local = task.deadline.astimezone(ZoneInfo(pair.timezone))
    csrf = secrets.token_urlsafe(24)
    return _render(
        lg,
        cookie=csrf,
        csrf=csrf,
        kind=target.kind,
        task_title=task.title,
        delegate=task.delegate,
        deadline=f"{timefmt.day(local.date(), lg)} {local:%H:%M}",
        questions=TEXT[lg][target.kind],
    )


async def _post(svc: Service, request: Request, token: str) -> Response:
    target, task, pair, error = _load(svc, token)
    lg = timefmt.lang(pair.locale) if pair is not None else "en"
    if error is not None or task is None or pair is None:
        status = 410 if error in ("expired", "gone") else 403
        return _render(lg, status, error=TEXT[lg][error or "invalid"])
    form = await request.form()
    sent = str(form.get("csrf", ""))
    cookie = request.cookies.get(COOKIE, "")
    if not sent or not cookie or not hmac.compare_digest(sent, cookie):
        return _render(lg, 403, error=TEXT[lg]["csrf"])
    posted = "&".join(f"{k}={form.get(k)}" for k in sorted(form.keys()) if k != "csrf")
    dedupe_key = web_dedupe_key(token, posted)
    recorded = _recorded(svc, target, pair)
    if recorded is not None:  # final for the link: a replay or a second answer changes nothing
        if recorded["dedupe_key"] == dedupe_key:  # the same form sent twice
            return _render(lg, saved=True, kind=target.kind)
        return _show_recorded(lg, task, recorded, 409)
    try:
        answer = _answer(form, target.kind)
    except ValueError:
        return _render(lg, 400, error=TEXT[lg]["bad_percent"])
    row = record_answer(
        svc,
        task_id=task.id,
        kind=target.kind,
        source="web",
        respondent=target.respondent,
        answer=answer,
        dedupe_key=dedupe_key,
    )
    recorded = _recorded(svc, target, pair) if row is None else None
    if recorded is not None and recorded["dedupe_key"] != dedupe_key:  # another came first
        return _show_recorded(lg, task, recorded, 409)
    return _render(lg, saved=True, kind=target.kind)


def _answer(form: Any, kind: str) -> FeedbackAnswer:
    """The answer in the form; ValueError when how much is done is missing (Dead Line) or
    not a number from 0 to 100."""
    raw = str(form.get("percent_done", "")).strip()
    percent = parse_percent(raw) if raw else None
    if kind == CheckpointKind.DEAD_LINE.value and percent is None:
        raise ValueError(PERCENT_RANGE)

    def yes_no(name: str) -> bool | None:
        value = str(form.get(name, ""))
        return {"yes": True, "no": False}.get(value)

    return FeedbackAnswer(
        percent_done=percent,
        on_time=yes_no("on_time"),
        needs_help=str(form.get("needs_help", "")) == "yes",
        on_track=yes_no("on_track"),
        quality=str(form.get("quality", "")).strip() or None,
        comment=str(form.get("comment", "")).strip(),
        confidence=Confidence.HIGH,
    )
