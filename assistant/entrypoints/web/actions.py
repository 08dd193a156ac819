"""What the pages and the API change, behind the same access checks (see ``guard``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from assistant.entrypoints.web.guard import HTTPProblem
from assistant.entrypoints.web.i18n import translator
from assistant.entrypoints.web.login_guard import LoginGuard
from assistant.entrypoints.web.views import outbox_entry_of
from assistant.services import delegation, priorities, queries
from assistant.services.pair_settings import PairSettings, update_pair_settings
from assistant.services.users import MIN_PASSWORD, PairAccess
from assistant.services.users import change_password as change_user_password

if TYPE_CHECKING:
    from assistant.bootstrap import Service
    from assistant.entrypoints.web.auth import Viewer

TaskCreated = Callable[[int], None]


def parse_local(text: str, zone: str, what: str) -> datetime:
    """An ISO date-time; without an offset it is read in the pair's zone."""
    try:
        t = datetime.fromisoformat(text.strip())
    except (AttributeError, ValueError):
        raise ValueError(f"{what}: give a date and time like 2026-12-10T17:00") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=ZoneInfo(zone))


def retry(svc: Service, access: PairAccess, entry_id: int) -> None:
    outbox_entry_of(svc, access, entry_id)  # NotFoundError for another pair's entry
    queries.retry_entry(svc, entry_id)


def add_priority(svc: Service, access: PairAccess, data: dict[str, Any]) -> int:
    return priorities.add_rule(
        svc,
        pair=access.ref,
        kind=str(data.get("kind", "")),
        pattern=str(data.get("pattern", "")),
        level=str(data.get("level", "normal")),
        note=str(data.get("note", "")),
    )


def remove_priority(svc: Service, access: PairAccess, rule_id: int) -> None:
    priorities.remove_rule(svc, rule_id, pair=access.ref)


def create_task(
    svc: Service, access: PairAccess, data: dict[str, Any], on_created: TaskCreated | None
) -> int:
    """A task from the form or the API body; a term starting in the past needs
    ``confirm_past_start`` (a ticked box, or true) — ``PastStart`` otherwise; a deadline in
    the past is refused (``PastDeadline``)."""
    zone = access.timezone
    start_text = str(data.get("term_start") or "").strip()
    task = delegation.create_task(
        svc,
        pair=access.ref,
        title=str(data.get("title", "")),
        delegate=str(data.get("delegate", "")).strip(),
        term_start=parse_local(start_text, zone, "term start") if start_text else None,
        deadline=parse_local(str(data.get("deadline", "")), zone, "deadline"),
        result=str(data.get("result", "")),
        measure=str(data.get("measure", "")),
        resources=str(data.get("resources", "")),
        why=str(data.get("why", "")),
        past_start_confirmed=_ticked(data.get("confirm_past_start")),
    )
    if on_created is not None:
        on_created(task.id)
    return task.id


def _ticked(value: object) -> bool:
    """A checkbox's "on" (or "true", "1", "yes") or a JSON true."""
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in ("on", "true", "1", "yes")


def save_settings(svc: Service, access: PairAccess, data: dict[str, Any]) -> PairSettings:
    if "share_private_details" in data and access.role != "manager":
        data = {k: v for k, v in data.items() if k != "share_private_details"}
    return update_pair_settings(svc, access.pair_id, data)


def change_password(svc: Service, viewer: Viewer, client: str, current: str, new: str) -> None:
    """The signed-in user sets a new password, giving the current one; their other
    sessions end (this one stays). A wrong current password counts as a refused login
    (``LoginGuard``): HTTPProblem 429 when the address is locked, 400 when wrong."""
    t = translator(viewer.locale)
    if len(new) < MIN_PASSWORD:
        raise HTTPProblem(400, t("password_short").format(n=MIN_PASSWORD))
    guard, now = LoginGuard(svc.uow), svc.now()
    attempt = guard.start_password(viewer.email, client, now)
    if attempt.wait > 0:
        minutes = max(1, -(-int(attempt.wait) // 60))
        raise HTTPProblem(429, t("too_many_logins").format(minutes=minutes))
    try:
        change_user_password(svc, viewer.user_id, current, new, keep_session=viewer.session_id)
    except ValueError:  # the attempt stays counted as a refusal
        raise HTTPProblem(400, t("wrong_password")) from None
    guard.succeeded(viewer.email, attempt)
