"""The inbox's tasks from managers' mail.

A new message from a pair's manager is a task (``parse_task_email``), created with its two
checkpoints and confirmed by mail in ONE transaction, or, when the words leave the task
unclear, a question back and nothing created. A reply to that question completes the
original email (its deadline), then the same. A task email answered in several replies still
makes one task: the confirmation is keyed by the first email of the thread. The run that
routes each message here is ``assistant.services.inbound``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from assistant.domain import timefmt
from assistant.domain.delegation import CheckpointKind, term_read_late
from assistant.domain.feedback import Confidence, reply_text
from assistant.domain.task_mail import TaskDraft, ask_past_deadline, parse_task_email
from assistant.services import delegation, outbox
from assistant.services.hours import pair_hours
from assistant.services.inbound_answers import (
    _LINE_NAMES,
    _count,
    _digest,
    _ignore,
    _lang,
    _re,
)
from assistant.services.pairs import NotFoundError, check_email
from assistant.store.tables import DelegatedTask, OutboxEntry, Pair
from connectors.archive.mailbox import InboundMessage

if TYPE_CHECKING:
    from assistant.services.deps import Deps
    from assistant.services.inbound_report import InboxTally

QUESTION = "inbox-question:"  # our question about an unclear task email
CONFIRM = "inbox-task:"  # the confirmation of a task made from an email
MAX_KEPT_TEXT = 20_000  # of a task email, kept in the question's payload
_YES = re.compile(
    r"^\s*(?:yes|yep|yeah|correct|right|confirmed?|ok|okay|да|верно|подтверждаю|ага|так)"
    r"[\s.!,]*(?:thanks|thank you|спасибо)?[\s.!]*$",
    re.I,
)


# ------------------------------------------------------------------------------- tasks


def _manager_pair(session: Session, sender: str, m: InboundMessage) -> Pair | None:
    pairs = list(
        session.scalars(
            select(Pair).where(func.lower(Pair.manager_email) == sender).order_by(Pair.id)
        )
    )
    if len(pairs) > 1:  # one manager, several assistants: the one the mail was sent to
        named = {a.lower() for a in (*m.to, *m.cc)}
        pairs.sort(key=lambda p: p.assistant_email.lower() not in named)
    return pairs[0] if pairs else None


def _task_email(
    deps: Deps, m: InboundMessage, sender: str, now: datetime, report: InboxTally
) -> None:
    with deps.uow.read() as session:
        pair = _manager_pair(session, sender, m)
        if pair is None:
            _ignore(m, "not from a manager", report)
            return
        pair_id, zone, locale = pair.id, pair.timezone, pair.locale
    original = {"subject": m.subject, "text": reply_text(m.text)[:MAX_KEPT_TEXT],
                "sent_at": m.sent_at.isoformat(), "origin": m.message_id}  # fmt: skip
    draft = _parse(deps, original, m.text, m.sent_at, zone, locale, sender)
    _act_on_draft(deps, m, sender, pair_id, zone, draft, original, now, report)


def _task_follow_up(
    deps: Deps,
    m: InboundMessage,
    sender: str,
    payload: Mapping[str, Any],
    now: datetime,
    report: InboxTally,
) -> None:
    """The manager answered our question about a task email: read the email again with
    the answer as its deadline (or, for a "yes", with the deadline we proposed)."""
    with deps.uow.read() as session:
        pair = session.get(Pair, int(payload["pair_id"]))
        if pair is None:
            raise NotFoundError("the pair of that task email is gone")
        zone, locale = pair.timezone, pair.locale
    said = next((s.strip() for s in reply_text(m.text).splitlines() if s.strip()), "")
    original = {k: payload[k] for k in ("subject", "text", "sent_at", "origin")}
    first_sent = datetime.fromisoformat(str(payload["sent_at"]))
    proposed = payload.get("deadline")
    if _YES.match(said) and proposed:
        draft = _parse(deps, original, original["text"], first_sent, zone, locale, sender)
        draft = replace(draft, deadline=datetime.fromisoformat(proposed), question=None,
                        confidence=Confidence.HIGH)  # fmt: skip
        if not draft.title:
            draft = replace(draft, question=payload.get("question") or "?")
    else:
        subject = original["subject"] if payload.get("title") else said
        body = f"Deadline: {said}\n{original['text']}" if payload.get("title") else original["text"]
        draft = _parse(
            deps, {**original, "subject": subject}, body, m.sent_at, zone, locale, sender
        )
        if draft.question is None and draft.deadline is not None:
            draft = replace(draft, term_start=min(draft.term_start, first_sent))
    _act_on_draft(deps, m, sender, int(payload["pair_id"]), zone, draft, original, now, report)


def _parse(
    deps: Deps,
    original: dict[str, Any],
    body: str,
    sent_at: datetime,
    zone: str,
    locale: str,
    sender: str,
) -> TaskDraft:
    lang = _lang(locale, f"{original['subject']}\n{body}")
    ignore = [sender, deps.settings.inbox.address, deps.settings.smtp.from_address]
    return parse_task_email(
        str(original["subject"]),
        body,
        sent_at,
        zone,
        locale if timefmt.lang(locale) == lang else lang,
        ignore_addresses=[a for a in ignore if a],
    )


def _act_on_draft(
    deps: Deps,
    m: InboundMessage,
    sender: str,
    pair_id: int,
    zone: str,
    draft: TaskDraft,
    original: dict[str, Any],
    now: datetime,
    report: InboxTally,
) -> None:
    lang = _lang("", f"{original['subject']}\n{original['text']}")
    if draft.deadline is not None and draft.deadline <= now:
        # Gone by the time we read it (or by the time the manager said "yes" to it): asked
        # back, never proposed, so no answer can make a task with it.
        asked = ask_past_deadline(draft.title, draft.deadline, zone, lang)
        question = asked if draft.title else draft.question
        draft = replace(draft, deadline=None, question=question, confidence=Confidence.LOW)
    if draft.question is not None:
        with deps.uow.begin() as session:
            entry = outbox.enqueue(
                session,
                key=f"{QUESTION}{_digest(m.message_id)}:smtp",
                channel="smtp",
                recipient=sender,
                subject=_re(m.subject or original["subject"]),
                body_text=_question_text(lang, draft.question),
                payload={
                    "kind": "task_question", "pair_id": pair_id, "question": draft.question,
                    "deadline": draft.deadline.isoformat() if draft.deadline else None,
                    "title": bool(draft.title), "in_reply_to": m.message_id, **original,
                },
                pair_id=pair_id,
                now=now,
            )  # fmt: skip
        _count(entry, report)
        return
    assert draft.deadline is not None
    task_id = _create_confirmed(deps, sender, pair_id, draft, original, m, now, lang)
    if task_id is None:
        report.duplicates += 1
    else:
        report.tasks.append(task_id)


class _AlreadyDone(Exception):
    """The confirmation key exists: this email made its task already (roll back)."""


def _create_confirmed(
    deps: Deps,
    sender: str,
    pair_id: int,
    draft: TaskDraft,
    original: dict[str, Any],
    m: InboundMessage,
    now: datetime,
    lang: str,
) -> int | None:
    """The task, its checkpoint rows and the confirmation, in one transaction.

    ``delegation.create_task`` commits on its own, so a crash between it and the
    confirmation would make a second task on the next read; hence its steps here, under
    the confirmation's key. (delegation.py should offer this as a session-level function.)
    """
    assert draft.deadline is not None
    key = f"{CONFIRM}{_digest(str(original['origin']))}:smtp"
    if draft.deadline <= draft.term_start:
        raise ValueError("the deadline must be after the start of the term")
    try:
        with deps.uow.begin() as session:
            if session.scalars(
                select(OutboxEntry.id).where(OutboxEntry.idempotency_key == key)
            ).first():
                raise _AlreadyDone
            pair = session.get(Pair, pair_id)
            if pair is None:
                raise NotFoundError(f"no pair {pair_id}")
            s = deps.settings.delegation
            hours = pair_hours(pair, draft.term_start.year - 1, draft.deadline.year + 1)
            term_start = term_read_late(
                draft.term_start, draft.deadline, now, s.red_line_fraction, hours
            )
            task = DelegatedTask(
                pair_id=pair.id, title=draft.title.strip(), result=draft.result,
                measure=draft.measure, resources=draft.resources, why=draft.why,
                delegator=pair.manager_email,
                delegate=check_email(draft.delegate, "delegate") if draft.delegate
                else pair.assistant_email,
                term_start=term_start, deadline=draft.deadline, state="briefed",
                created_at=now, updated_at=now,
            )  # fmt: skip
            session.add(task)
            session.flush()
            delegation.ensure_checkpoints(session, task, pair, deps)
            session.flush()
            subject, body = _confirmation_text(lang, task, pair, draft)
            entry = outbox.enqueue(
                session,
                key=key,
                channel="smtp",
                recipient=sender,
                subject=subject,
                body_text=body,
                payload={"kind": "task_confirmation", "task_id": task.id,
                         "in_reply_to": m.message_id},
                pair_id=pair.id,
                now=now,
            )  # fmt: skip
            if entry is None:  # another run won the race: undo ours
                raise _AlreadyDone
            return task.id
    except _AlreadyDone:
        return None


def _confirmation_text(
    lang: str, task: DelegatedTask, pair: Pair, draft: TaskDraft
) -> tuple[str, str]:
    tz = ZoneInfo(pair.timezone)

    def when(t: datetime) -> str:
        local = t.astimezone(tz)
        return f"{timefmt.day(local.date(), lang)} {local:%H:%M}"

    ru = lang == "ru"
    lines = [
        f"«{task.title}» — исполнитель {task.delegate}." if ru
        else f"“{task.title}” is delegated to {task.delegate}.",
        "",
        f"{'Срок' if ru else 'Deadline'}: {when(task.deadline)} ({pair.timezone})",
    ]  # fmt: skip
    for cp in sorted(task.checkpoints, key=lambda c: c.line_at):
        name = _LINE_NAMES[lang][CheckpointKind(cp.kind)]
        if cp.start_at is not None:
            lines.append(f"{name}: {when(cp.start_at)}")
        else:
            none = "нет свободного времени" if ru else "no free slot"
            lines.append(f"{name}: {when(cp.line_at)} ({cp.note or none})")
    smart = [("Результат" if ru else "Result", task.result),
             ("Критерий" if ru else "Measure", task.measure),
             ("Ресурсы" if ru else "Resources", task.resources),
             ("Зачем" if ru else "Why", task.why)]  # fmt: skip
    filled = [f"{label}: {value}" for label, value in smart if value]
    if filled:
        lines += ["", *filled]
    if draft.deadline_text:
        lines += ["", f"Срок прочитан из слов «{draft.deadline_text}»." if ru
                  else f"The deadline was read from “{draft.deadline_text}”."]  # fmt: skip
    if ru:
        lines += ["", f"Изменить: `assistant task update {task.id}` или страница задачи.",
                  "", "-- ", "Отправлено сервисом exec-assistant."]  # fmt: skip
        return f"Задача создана: {task.title}", "\n".join(lines) + "\n"
    lines += ["", f"To change it: `assistant task update {task.id}` or the task's page.",
              "", "-- ", "Sent by exec-assistant."]  # fmt: skip
    return f"Task created: {task.title}", "\n".join(lines) + "\n"


def _question_text(lang: str, question: str) -> str:
    if lang == "ru":
        return (
            f"{question}\n\nЗадача пока не создана. Ответьте на это письмо — "
            "я дочитаю исходное письмо с вашим ответом.\n\n-- \nОтправлено сервисом "
            "exec-assistant.\n"
        )
    return (
        f"{question}\n\nNo task was created yet. Reply to this message and I will read "
        "your original email again with the answer.\n\n-- \nSent by exec-assistant.\n"
    )
