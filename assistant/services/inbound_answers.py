"""The inbox's answers to checkpoint prompts, and the words both kinds of reply share.

A reply to one of our checkpoint prompts (or to our question about an unclear answer) is
read (``parse_answer``) and stored (``record_answer``, ``source="email"``), keyed by the
reply's Message-ID; an answer read with low confidence is not stored, the sender is asked
back with what was understood and the feedback link. The run that routes each message here
is ``assistant.services.inbound``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from assistant.domain import timefmt
from assistant.domain.delegation import CheckpointKind
from assistant.domain.feedback import Confidence, FeedbackAnswer, parse_answer, reply_text
from assistant.domain.text import one_line
from assistant.services import outbox
from assistant.services.feedback import feedback_link, record_answer
from assistant.services.pairs import NotFoundError
from assistant.store.tables import DelegatedTask, OutboxEntry, Pair, TaskFeedback
from connectors.archive.mailbox import InboundMessage

if TYPE_CHECKING:
    from assistant.services.deps import Deps
    from assistant.services.inbound_report import InboxTally

log = logging.getLogger("assistant.services.inbound")  # the inbox's one logger

PROMPT = "prompt:"  # assistant.services.feedback.send_prompt's keys
ASK = "inbox-ask:"  # our question about an unclear answer


def _ignore(m: InboundMessage, why: str, report: InboxTally) -> None:
    log.info("inbox: message %s from %s ignored: %s", m.message_id, m.from_addr or "-", why)
    report.ignored += 1


def _digest(message_id: str) -> str:
    return hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()[:32]


# ----------------------------------------------------------------------------- answers


def _answer(
    deps: Deps,
    m: InboundMessage,
    sender: str,
    payload: Mapping[str, Any],
    now: datetime,
    report: InboxTally,
) -> None:
    task_id, line = int(payload["task_id"]), str(payload["line"])
    kind = CheckpointKind(line)
    answer = parse_answer(reply_text(m.text), kind=kind)
    d = _digest(m.message_id)
    if answer.confidence is Confidence.HIGH:
        row = record_answer(
            deps, task_id=task_id, kind=line, source="email", respondent=sender,
            answer=answer, dedupe_key=f"email:{d}",
        )  # fmt: skip
        if row is None:
            report.duplicates += 1
        else:
            report.answers.append(row)
        return
    with deps.uow.begin() as session:
        if session.scalars(
            select(TaskFeedback.id).where(TaskFeedback.dedupe_key == f"email:{d}")
        ).first():
            report.duplicates += 1
            return
        task = session.get(DelegatedTask, task_id)
        if task is None:
            raise NotFoundError(f"no task {task_id}")
        pair = session.get(Pair, task.pair_id)
        assert pair is not None
        lang = _lang(pair.locale, m.text)
        link = feedback_link(deps.settings, task.id, task.deadline, line, sender)
        entry = outbox.enqueue(
            session,
            key=f"{ASK}{d}:smtp",
            channel="smtp",
            recipient=sender,
            subject=_re(m.subject),
            body_text=_unclear_answer_text(lang, task.title, kind, answer, link),
            payload={"kind": "feedback_question", "task_id": task.id, "line": line,
                     "in_reply_to": m.message_id},
            pair_id=pair.id,
            now=now,
        )  # fmt: skip
    _count(entry, report)


_LINE_NAMES = {
    "en": {CheckpointKind.RED_LINE: "Red Line", CheckpointKind.DEAD_LINE: "Dead Line"},
    "ru": {CheckpointKind.RED_LINE: "Красная линия", CheckpointKind.DEAD_LINE: "Мёртвая линия"},
}


def _understood(lang: str, a: FeedbackAnswer) -> list[str]:
    ru = lang == "ru"

    def yes_no(v: bool) -> str:
        return ("да" if v else "нет") if ru else ("yes" if v else "no")

    out = []
    if a.percent_done is not None:
        out.append(f"{'готово' if ru else 'done'}: {a.percent_done}%")
    if a.on_track is not None:
        out.append(f"{'по плану' if ru else 'on track'}: {yes_no(a.on_track)}")
    if a.on_time is not None:
        out.append(f"{'в срок' if ru else 'on time'}: {yes_no(a.on_time)}")
    if a.needs_help:
        out.append("нужна помощь" if ru else "help needed")
    if a.quality:
        out.append(f"{'качество' if ru else 'quality'}: {a.quality}")
    return out


def _unclear_answer_text(
    lang: str, title: str, kind: CheckpointKind, answer: FeedbackAnswer, link: str
) -> str:
    understood = "; ".join(_understood(lang, answer))
    line = _LINE_NAMES[lang][kind]
    quoted = "\n".join(f"> {s}" for s in (answer.comment or "").splitlines()[:12])
    if lang == "ru":
        return (
            f"Я не уверен, что правильно понял ваш ответ по задаче «{title}» ({line}):\n\n"
            f"{quoted}\n\nПонял так: {understood or 'ничего определённого'}.\n\n"
            "Ответ не сохранён. Ответьте, пожалуйста, по ссылке (один клик):\n"
            f"{link}\n\nили ответом на это письмо, например: «80%, по плану», "
            "«нужна помощь», «готово, 100%, в срок».\n\n-- \nОтправлено сервисом exec-assistant.\n"
        )
    return (
        f"I am not sure I read your answer on “{title}” ({line}) right:\n\n{quoted}\n\n"
        f"What I understood: {understood or 'nothing definite'}.\n\n"
        f"Nothing was stored. Please answer through this link (one click):\n{link}\n\n"
        "or reply to this message, for example “80%, on track”, “need help” or "
        "“done, 100%, on time”.\n\n-- \nSent by exec-assistant.\n"
    )


# ----------------------------------------------------------------------------- helpers


def _lang(locale: str, text: str) -> str:
    """The language to write back in: the message's own, else the pair's."""
    cyrillic = len(re.findall(r"[а-яё]", text, re.I))
    latin = len(re.findall(r"[a-z]", text, re.I))
    if cyrillic == latin == 0:
        return timefmt.lang(locale or "en")
    return "ru" if cyrillic > latin else "en"


def _re(subject: str) -> str:
    subject = one_line(subject)
    if re.match(r"^(?:re|ответ|отв)\s*:", subject, re.I):
        return subject
    return f"Re: {subject}" if subject else "Re:"


def _count(entry: OutboxEntry | None, report: InboxTally) -> None:
    if entry is None:
        report.duplicates += 1
    else:
        report.outbox_ids.append(entry.id)
