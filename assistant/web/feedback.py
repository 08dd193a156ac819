"""The one-click feedback page reached from a checkpoint's signed link (no login).

One screen that works on a phone. The link itself is the authority (signed, expiring,
bound to one task, line and person); forms carry a double-submit CSRF token so another
site cannot post in the person's name. A form sent twice is stored once.
"""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from assistant import timefmt
from assistant.delegation import CheckpointKind
from assistant.feedback import Confidence, FeedbackAnswer
from assistant.notify import template_env
from assistant.services.feedback import open_link, record_answer, web_dedupe_key
from assistant.signing import ExpiredToken, TokenError
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


def _render(lg: str, status: int = 200, cookie: str | None = None, **context: Any) -> Response:
    t = TEXT[lg]
    context = {"error": None, "saved": False, "kind": "", "task_title": ""} | context
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


def _get(svc: Service, token: str) -> Response:
    target, task, pair, error = _load(svc, token)
    lg = timefmt.lang(pair.locale) if pair is not None else "en"
    if error is not None or task is None or pair is None:
        status = 410 if error in ("expired", "gone") else 403
        return _render(lg, status, error=TEXT[lg][error or "invalid"])
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
    answer = _answer(form, target.kind)
    if answer is None:
        return _render(lg, 400, error=TEXT[lg]["invalid"])
    posted = "&".join(f"{k}={form.get(k)}" for k in sorted(form.keys()) if k != "csrf")
    record_answer(
        svc,
        task_id=task.id,
        kind=target.kind,
        source="web",
        respondent=target.respondent,
        answer=answer,
        dedupe_key=web_dedupe_key(token, posted),
    )
    return _render(lg, saved=True, kind=target.kind)


def _answer(form: Any, kind: str) -> FeedbackAnswer | None:
    raw = str(form.get("percent_done", "")).strip()
    percent: int | None = None
    if raw:
        try:
            percent = int(float(raw))
        except ValueError:
            return None
        if not 0 <= percent <= 100:
            return None
    if kind == CheckpointKind.DEAD_LINE.value and percent is None:
        return None

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
