"""Turning detected changes into the one clear message the assistant receives.

The wording lives in Jinja2 templates per locale (``templates/notify``); this module
prepares plain values for them: what changed, before → after, the time in the
manager's zone and, when it differs, the assistant's. Private events show as busy time
only unless the manager allows details: what may be shown is ``assistant.domain.privacy``'s
answer, for the changed event, its before and after, and the events it conflicts with.
Titles and places are shown on one line (``assistant.domain.text.one_line``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

import jinja2

from assistant.domain import privacy, timefmt
from assistant.domain.changes import Change, ChangeKind
from assistant.domain.conflicts import Conflict
from assistant.domain.model import EventData
from assistant.domain.text import one_line

LABELS = {
    "en": {
        ChangeKind.CREATED: "New",
        ChangeKind.CANCELLED: "Cancelled",
        ChangeKind.DELETED: "Removed",
        ChangeKind.MOVED: "Moved",
        ChangeKind.RELOCATED: "New place",
        ChangeKind.LINK_CHANGED: "New meeting link",
        ChangeKind.RETITLED: "Renamed",
        ChangeKind.RESPONSE_CHANGED: "Manager's answer",
        ChangeKind.ATTENDEES_CHANGED: "Attendees changed",
        ChangeKind.BUSY_CHANGED: "Free/busy changed",
        ChangeKind.DESCRIPTION_CHANGED: "Description changed",
        "time": "Time",
        "place": "Place",
        "link": "Link",
        "title": "Title",
        "answer": "Answer",
        "attendees": "Attendees",
        "shows_as": "Shows as",
        "busy": "busy",
        "free": "free",
        "none": "—",
        "your_time": "your time",
        "added": "added",
        "removed": "removed",
        "high": "High priority",
        "by_you": "made by you",
        "overlap": "Conflict: overlaps {other}, {when}",
        "travel": "Conflict: only {gap} min to get from {a} to {b} ({other}, {when})",
    },
    "ru": {
        ChangeKind.CREATED: "Новая встреча",
        ChangeKind.CANCELLED: "Отменена",
        ChangeKind.DELETED: "Удалена",
        ChangeKind.MOVED: "Перенесена",
        ChangeKind.RELOCATED: "Другое место",
        ChangeKind.LINK_CHANGED: "Новая ссылка на встречу",
        ChangeKind.RETITLED: "Переименована",
        ChangeKind.RESPONSE_CHANGED: "Ответ руководителя",
        ChangeKind.ATTENDEES_CHANGED: "Изменились участники",
        ChangeKind.BUSY_CHANGED: "Изменилась занятость",
        ChangeKind.DESCRIPTION_CHANGED: "Изменилось описание",
        "time": "Время",
        "place": "Место",
        "link": "Ссылка",
        "title": "Название",
        "answer": "Ответ",
        "attendees": "Участники",
        "shows_as": "Показывается как",
        "busy": "занят",
        "free": "свободен",
        "none": "—",
        "your_time": "ваше время",
        "added": "добавлены",
        "removed": "убраны",
        "high": "Высокий приоритет",
        "by_you": "изменено вами",
        "overlap": "Конфликт: пересекается с «{other}», {when}",
        "travel": "Конфликт: на дорогу из «{a}» в «{b}» только {gap} мин («{other}», {when})",
    },
}
_RESPONSE_WORDS = {
    "en": {"accepted": "accepted", "declined": "declined", "tentative": "tentative",
           "needs-action": "no answer yet", "delegated": "delegated", "": "—"},
    "ru": {"accepted": "принял", "declined": "отклонил", "tentative": "под вопросом",
           "needs-action": "ещё не ответил", "delegated": "делегировал", "": "—"},
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Audience:
    """Who reads the message and how they see the manager's calendar."""

    locale: str = "en"
    manager_zone: str = "UTC"
    assistant_zone: str = ""
    manager_name: str = ""
    manager_emails: frozenset[str] = frozenset()
    share_private_details: bool = False


@dataclass(frozen=True, slots=True)
class Note:
    """What the service knows about a change beyond the change itself."""

    priority: str = "normal"  # high | normal | low
    reasons: tuple[str, ...] = ()  # the priority rules that matched
    conflicts: tuple[Conflict, ...] = ()
    by_assistant: bool = False


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    subject: str
    text: str
    html: str


@dataclass
class ChangeItem:
    label: str
    title: str
    when: str
    when_local: str
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    private: bool = False
    high: bool = False
    reasons: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    by_you: bool = False


@cache
def template_env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("assistant.domain", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def render_changes(
    changes: Sequence[Change],
    audience: Audience,
    notes: Mapping[tuple[str, str], Note] | None = None,
) -> RenderedMessage:
    """One message for a batch of changes (already sorted by event time).

    High-priority changes come first; conflicts are spelled out under their change.
    """
    lg = timefmt.lang(audience.locale)
    notes = notes or {}
    items = []
    for c in changes:
        item = change_item(c, audience, lg)
        annotate_item(item, notes.get(c.event.key), audience, lg)
        items.append(item)
    items.sort(key=lambda it: not it.high)  # stable: time order within each group
    context = {
        "items": items,
        "count": len(items),
        "manager": audience.manager_name,
        "zone": timefmt.zone_label(audience.manager_zone),
        "any_high": any(it.high for it in items),
        "any_conflict": any(it.conflicts for it in items),
    }
    env = template_env()
    subject = one_line(env.get_template(f"notify/changes.{lg}.subject.j2").render(context))
    text = env.get_template(f"notify/changes.{lg}.txt.j2").render(context)
    html = env.get_template(f"notify/changes.{lg}.html.j2").render(context)
    return RenderedMessage(subject=subject, text=text, html=html)


def change_item(change: Change, aud: Audience, lg: str) -> ChangeItem:
    words = LABELS[lg]
    sees = aud.share_private_details
    hidden = privacy.hides(change.event.private, sees)
    event = privacy.visible(change.event, sees, lg)
    title = privacy.title(change.event.summary, change.event.private, sees, lg, str(words["none"]))
    label = " · ".join(str(words[k]) for k in sorted(change.kinds, key=list(ChangeKind).index))
    item = ChangeItem(
        label=label,
        title=title,
        when=_when(event, aud.manager_zone, lg),
        when_local=_local_when(event, aud, lg),
        private=hidden,
    )
    if change.before is None or change.after is None:
        return item
    before = privacy.visible(change.before, sees, lg)
    after = privacy.visible(change.after, sees, lg)
    kinds = change.kinds
    if ChangeKind.MOVED in kinds:
        item.rows.append((str(words["time"]), _when(before, aud.manager_zone, lg),
                          _when(after, aud.manager_zone, lg)))  # fmt: skip
    if hidden:
        return item
    none = str(words["none"])
    if ChangeKind.RELOCATED in kinds:
        item.rows.append((str(words["place"]), one_line(before.location) or none,
                          one_line(after.location) or none))  # fmt: skip
    if ChangeKind.LINK_CHANGED in kinds:
        item.rows.append((str(words["link"]), one_line(before.online_meeting_url) or none,
                          one_line(after.online_meeting_url) or none))  # fmt: skip
    if ChangeKind.RETITLED in kinds:
        item.rows.append((str(words["title"]), one_line(before.summary) or none,
                          one_line(after.summary) or none))  # fmt: skip
    if ChangeKind.RESPONSE_CHANGED in kinds:
        answers = (_response(before, aud, lg), _response(after, aud, lg))
        item.rows.append((str(words["answer"]), *answers))
    if ChangeKind.ATTENDEES_CHANGED in kinds:
        was = {a.email for a in before.attendees}
        now = {a.email for a in after.attendees}
        added, removed = sorted(now - was), sorted(was - now)
        parts = []
        if added:
            parts.append(f"{words['added']}: {', '.join(added)}")
        if removed:
            parts.append(f"{words['removed']}: {', '.join(removed)}")
        item.rows.append((str(words["attendees"]), "", "; ".join(parts)))
    if ChangeKind.BUSY_CHANGED in kinds:
        item.rows.append((str(words["shows_as"]), str(words["busy" if before.busy else "free"]),
                          str(words["busy" if after.busy else "free"])))  # fmt: skip
    return item


def annotate_item(item: ChangeItem, note: Note | None, aud: Audience, lg: str) -> None:
    if note is None:
        return
    words = LABELS[lg]
    item.high = note.priority == "high"
    # the rules that matched a private event would tell what it says ("mentions ...")
    item.reasons = list(note.reasons) if item.high and not item.private else []
    item.by_you = note.by_assistant
    sees = aud.share_private_details
    for c in note.conflicts:
        other = c.other
        name = privacy.title(other.summary, other.private, sees, lg, str(words["none"]))
        when = _when(other, aud.manager_zone, lg)
        if c.kind == "overlap":
            item.conflicts.append(str(words["overlap"]).format(other=name, when=when))
        else:
            first, second = (other, c.event) if other.start < c.event.start else (c.event, other)
            item.conflicts.append(
                str(words["travel"]).format(
                    gap=round(c.gap_minutes or 0), a=privacy.place(first, sees) or "…",
                    b=privacy.place(second, sees) or "…", other=name, when=when,
                )
            )  # fmt: skip


def _when(event: EventData, zone: str, lg: str) -> str:
    if event.all_day and event.start_date and event.end_date:
        return timefmt.date_span(event.start_date, event.end_date, lg)
    return timefmt.span(event.start, event.end, zone, lg)


def _local_when(event: EventData, aud: Audience, lg: str) -> str:
    if event.all_day or not aud.assistant_zone or aud.assistant_zone == aud.manager_zone:
        return ""
    text = timefmt.span(event.start, event.end, aud.assistant_zone, lg)
    return f"{LABELS[lg]['your_time']}: {text}"


def _response(event: EventData, aud: Audience, lg: str) -> str:
    for a in event.attendees:
        if a.email in aud.manager_emails:
            return _RESPONSE_WORDS[lg].get(a.response.value, a.response.value)
    return _RESPONSE_WORDS[lg][""]
