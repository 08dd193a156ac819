"""Stored values shown to people, in their language: states, kinds, levels, weekdays, times.

The store keeps short English codes (``dead``, ``in_progress``, ``person``); a page never
shows one as it is. ``label(group, value)`` names it in the viewer's locale (an unknown
value is shown as it is, never an error), ``when(value)`` writes a time as
"Tue 8 Dec 14:00" in the pair's zone. Change kinds come from the message renderer's own
words (``domain.notify.LABELS``), so a page and an email name a change alike.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from assistant.domain.changes import ChangeKind
from assistant.domain.notify import LABELS as CHANGE_LABELS
from assistant.domain.priorities import WEEKDAYS
from assistant.domain.timefmt import day, lang, weekday_name

VALUES: dict[str, dict[str, dict[str, str]]] = {
    "en": {
        "level": {"high": "high", "normal": "normal", "low": "low"},
        "rule_kind": {
            "person": "person", "domain": "domain", "keyword": "keyword",
            "category": "category", "calendar": "calendar", "protected": "protected time",
        },
        "outbox_state": {
            "pending": "waiting", "sending": "sending", "sent": "sent", "dead": "not delivered",
        },
        "change_state": {
            "pending": "waiting", "sent": "notified", "digest": "for the digest",
            "undone": "undone in time", "suppressed": "made by the assistant",
        },
        "account_state": {"new": "new", "ok": "working", "error": "failing"},
        "account_kind": {"calendar": "calendar", "mail": "mail"},
        "task_state": {
            "briefed": "briefed", "understood": "understood", "in_progress": "in progress",
            "accepted": "accepted", "praised": "praised", "cancelled": "cancelled",
        },
    },
    "ru": {
        "level": {"high": "высокий", "normal": "обычный", "low": "низкий"},
        "rule_kind": {
            "person": "человек", "domain": "домен", "keyword": "слово",
            "category": "категория", "calendar": "календарь", "protected": "защищённое время",
        },
        "outbox_state": {
            "pending": "ждёт отправки", "sending": "отправляется", "sent": "отправлено",
            "dead": "не доставлено",
        },
        "change_state": {
            "pending": "ждёт", "sent": "сообщено", "digest": "в сводку",
            "undone": "отменено вовремя", "suppressed": "сделано ассистентом",
        },
        "account_state": {"new": "новая", "ok": "работает", "error": "ошибка"},
        "account_kind": {"calendar": "календарь", "mail": "почта"},
        "task_state": {
            "briefed": "поставлена", "understood": "понята", "in_progress": "в работе",
            "accepted": "принята", "praised": "отмечена", "cancelled": "отменена",
        },
    },
}  # fmt: skip


def labeler(locale: str) -> Callable[[str, object], str]:
    """``label(group, value)`` in ``locale``; change kinds as the messages name them."""
    lg = lang(locale)
    values = VALUES[lg]
    changes = CHANGE_LABELS[lg]

    def label(group: str, value: object) -> str:
        text = "" if value is None else str(value)
        if group == "weekday" and text in WEEKDAYS:  # the names the messages use
            return weekday_name(WEEKDAYS.index(text), locale)
        if group == "change_kind":
            try:
                return str(changes[ChangeKind(text)])
            except (ValueError, KeyError):
                return text
        return values.get(group, {}).get(text, text)

    return label


def time_writer(locale: str, zone: str) -> Callable[[object], str]:
    """``when(value)``: an ISO string or a datetime as "Tue 8 Dec 14:00" in ``zone``;
    empty for nothing, a date-only value as "Tue 8 Dec"."""
    tz = ZoneInfo(zone or "UTC")

    def when(value: object) -> str:
        if value is None or value == "":
            return "—"
        moment = value
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                return value
        if isinstance(moment, datetime):
            if moment.tzinfo is not None:
                moment = moment.astimezone(tz)
            return f"{day(moment.date(), locale)} {moment:%H:%M}"
        return str(value)

    return when
