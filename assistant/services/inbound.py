"""The service's own inbox: new tasks from managers, answers to checkpoint prompts.

Each new message (read with its text, never marked seen) is one of:

* a reply to one of our checkpoint prompts, or to our question about an unclear answer,
  from the person that prompt went to (its ``In-Reply-To``/``References`` carry the
  Message-ID the SMTP channel derived from the outbox key): the answer is read
  (``parse_answer``) and stored (``record_answer``, ``source="email"``); an answer read with
  low confidence is not stored, the sender is asked back with what was understood and the
  feedback link;
* a reply to our question about a task email, from that manager: the answer completes the
  original email (its deadline), then as below;
* a new message from a pair's manager: a task (``parse_task_email``), created with its two
  checkpoints and confirmed by mail in ONE transaction, or, when the words leave the task
  unclear, a question back and nothing created;
* anything else (strangers, automatic mail, replies to our other notifications, mail older
  than ``inbox.max_age_days``, and mail the receiving server did not authenticate, see
  ``assistant.domain.mail_auth``): logged and dropped, never answered (no backscatter). Without
  ``inbox.trusted_authserv_ids`` no mail is authenticated, so none is acted on unless the
  operator sets ``inbox.trust_unauthenticated`` (warned at start: a forged From then
  creates tasks).

Nothing twice: every effect is keyed by the message's Message-ID (outbox keys
``inbox-task:``/``inbox-question:``/``inbox-ask:``, feedback ``dedupe_key``), so a message
read again (a crash before the token was saved, a UIDVALIDITY reset, two runs at once) does
nothing more. A task email answered in several replies still makes one task: the
confirmation is keyed by the first email of the thread.

The change token lives in ``data_dir/inbox.token`` (written atomically). There is no table
for service-wide state, an ``Account`` row needs a pair, and the token is only an
optimisation: losing it costs one re-read of the folder, which the Message-ID keys make
harmless (and ``max_age_days`` keeps short).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from assistant.adapters import outbox
from assistant.adapters.channels.smtp import MESSAGE_ID_DOMAIN, message_id_for
from assistant.adapters.store.tables import DelegatedTask, OutboxEntry, Pair, TaskFeedback
from assistant.domain import timefmt
from assistant.domain.delegation import CheckpointKind
from assistant.domain.feedback import Confidence, FeedbackAnswer, parse_answer, reply_text
from assistant.domain.mail_auth import authenticated
from assistant.domain.task_mail import TaskDraft, parse_task_email
from assistant.domain.text import one_line
from assistant.services import delegation
from assistant.services.feedback import feedback_link, record_answer
from assistant.services.pairs import NotFoundError, check_email
from connectors.archive.mailbox import InboundMessage
from connectors.base import ParseLimits, TokenExpired

if TYPE_CHECKING:
    from assistant.bootstrap import Service
    from config.settings import InboxSettings, Settings

log = logging.getLogger(__name__)

TOKEN_FILE = "inbox.token"  # noqa: S105 - a file name, not a secret
LOCK_FILE = "inbox.lock"
PROMPT = "prompt:"  # assistant.services.feedback.send_prompt's keys
ASK = "inbox-ask:"  # our question about an unclear answer
QUESTION = "inbox-question:"  # our question about an unclear task email
CONFIRM = "inbox-task:"  # the confirmation of a task made from an email
MAX_KEPT_TEXT = 20_000  # of a task email, kept in the question's payload
_YES = re.compile(
    r"^\s*(?:yes|yep|yeah|correct|right|confirmed?|ok|okay|да|верно|подтверждаю|ага|так)"
    r"[\s.!,]*(?:thanks|thank you|спасибо)?[\s.!]*$",
    re.I,
)


class InboxSource(Protocol):
    """Where the inbox's messages come from (``ImapMailbox``, ``MaildirSource``)."""

    def fetch_new_bodies(self, token: str | None) -> tuple[list[InboundMessage], str]: ...


@dataclass
class InboxReport:
    read: int = 0
    answers: list[int] = field(default_factory=list)  # TaskFeedback ids
    tasks: list[int] = field(default_factory=list)  # DelegatedTask ids, new
    outbox_ids: list[int] = field(default_factory=list)
    ignored: int = 0
    duplicates: int = 0
    busy: bool = False  # another run held the lock; nothing done

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------- the source


def open_inbox(settings: Settings) -> InboxSource | None:
    """The configured inbox, or None when ``inbox.provider`` is empty."""
    conf = settings.inbox
    if conf.provider == "imap":
        from connectors.imap.mailbox import ImapMailbox

        assert conf.password is not None  # checked at start-up
        mailbox = ImapMailbox(
            conf.host,
            conf.username,
            conf.password.resolve().get_secret_value(),
            port=conf.port,
            security=conf.security,
            timeout=conf.timeout_seconds,
            limits=ParseLimits.of(settings.limits),
        )
        return _Folder(mailbox, conf.folder)
    if conf.provider == "maildir":
        from connectors.archive.mailbox import MaildirSource

        assert conf.path is not None
        limits = ParseLimits.of(settings.limits)
        return MaildirSource(conf.path, folders=[conf.folder], limits=limits)
    return None


@dataclass
class _Folder:
    """An IMAP mailbox read at one folder, closed after each read."""

    mailbox: Any
    folder: str

    def fetch_new_bodies(self, token: str | None) -> tuple[list[InboundMessage], str]:
        try:
            found: tuple[list[InboundMessage], str] = self.mailbox.fetch_new_bodies(
                token, self.folder
            )
            return found
        finally:
            self.mailbox.close()


def read_token(settings: Settings) -> str | None:
    path = settings.data_dir / TOKEN_FILE
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def write_token(settings: Settings, token: str) -> None:
    """Replace the token file atomically: a crash leaves the old token or the new one."""
    folder = settings.data_dir
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".inbox.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / TOKEN_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[bool]:
    """One run at a time on this machine (two at once would be harmless, only wasteful)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- the run


def process_inbox(svc: Service, now: datetime, source: InboxSource | None = None) -> InboxReport:
    """Read what arrived since the stored token and act on each message; then store the
    next token. An error (database, connector) leaves the token where it was, so the next
    run reads the same messages again, and the Message-ID keys make that harmless."""
    report = InboxReport()
    source = source or open_inbox(svc.settings)
    if source is None:
        return report
    warn_inbox_trust(svc.settings.inbox)
    with _lock(svc.settings.data_dir) as mine:
        if not mine:
            report.busy = True
            return report
        token = read_token(svc.settings)
        try:
            messages, next_token = source.fetch_new_bodies(token)
        except TokenExpired as exc:
            log.warning("inbox token no longer valid (%s): reading the folder again", exc)
            messages, next_token = source.fetch_new_bodies(None)
        report.read = len(messages)
        for message in messages:
            handle_message(svc, message, now, report)
        write_token(svc.settings, next_token)
    return report


_warned: list[bool] = []


def warn_inbox_trust(conf: InboxSettings) -> None:
    """Say once per process (at start, and at the first inbox run) how far a From is
    trusted when that is not as far as a trusted server vouches for it."""
    if _warned or not conf.provider or conf.trusted_authserv_ids:
        return
    _warned.append(True)
    if conf.trust_unauthenticated:
        log.warning(
            "inbox: inbox.trust_unauthenticated is set: the From address of incoming mail is "
            "trusted as it stands, so anyone can forge a manager's mail and create tasks; set "
            "inbox.trusted_authserv_ids to act only on mail the receiving server authenticated"
        )
    else:
        log.warning(
            "inbox: no inbox.trusted_authserv_ids: incoming mail cannot be authenticated and "
            "none is acted on (set inbox.trusted_authserv_ids, or inbox.trust_unauthenticated)"
        )


def sender_unauthenticated(conf: InboxSettings, m: InboundMessage, sender: str) -> str:
    """Why the sender of ``m`` may not be trusted, or "" when it may."""
    if not conf.trusted_authserv_ids:
        return "" if conf.trust_unauthenticated else "unauthenticated mail is refused"
    verdict = authenticated(m.authentication_results, sender, conf.trusted_authserv_ids)
    return "" if verdict.ok else f"the sender is not authenticated ({verdict.why})"


def handle_message(svc: Service, m: InboundMessage, now: datetime, report: InboxReport) -> None:
    """Act on one message (see the module's docstring); idempotent per Message-ID."""
    sender = m.from_addr.lower()
    ours = {a.lower() for a in (svc.settings.inbox.address, svc.settings.smtp.from_address) if a}
    why_not = ""
    if not sender:
        why_not = "no sender"
    elif sender in ours:
        why_not = "our own mail"
    elif m.auto_reply:
        why_not = "an automatic message"
    elif m.sent_at < now - timedelta(days=svc.settings.inbox.max_age_days):
        why_not = "older than inbox.max_age_days"
    else:  # not answered when refused: a reply to a forged From is backscatter
        why_not = sender_unauthenticated(svc.settings.inbox, m, sender)
    if why_not:
        _ignore(m, why_not, report)
        return
    refs = _refs(m)
    answered = _answered_entry(svc, sender, refs) if refs else None
    try:
        if answered is not None and answered[0].startswith((PROMPT, ASK)):
            _answer(svc, m, sender, answered[1], now, report)
        elif answered is not None and answered[0].startswith(QUESTION):
            _task_follow_up(svc, m, sender, answered[1], now, report)
        elif any(r.endswith("@" + MESSAGE_ID_DOMAIN) for r in refs):
            _ignore(m, "a reply to another of our messages", report)
        else:
            _task_email(svc, m, sender, now, report)
    except (ValueError, NotFoundError) as exc:  # the message, not the system, is at fault
        log.warning("inbox: message %s from %s not used: %s", m.message_id, sender, exc)
        report.ignored += 1
    except SQLAlchemyError:
        raise  # the database: the token stays, the message is read again next time
    except Exception:  # a bug on one odd message must not block the inbox behind it
        log.exception("inbox: message %s from %s failed; skipped", m.message_id, sender)
        report.ignored += 1


def _ignore(m: InboundMessage, why: str, report: InboxReport) -> None:
    log.info("inbox: message %s from %s ignored: %s", m.message_id, m.from_addr or "-", why)
    report.ignored += 1


def _refs(m: InboundMessage) -> list[str]:
    found = [m.in_reply_to, *reversed(m.references)]  # the nearest parent first
    return list(dict.fromkeys(r for r in found if r))


def _digest(message_id: str) -> str:
    return hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _answered_entry(
    svc: Service, sender: str, refs: Sequence[str]
) -> tuple[str, dict[str, Any]] | None:
    """(key, payload) of our prompt or question, sent to ``sender``, that ``refs`` name.

    The Message-ID is a hash of the outbox key (``assistant.adapters.channels.smtp``), so it is
    computed for each candidate: the entries sent to this sender, with our prefixes.
    """
    wanted = {r.strip("<>") for r in refs if r.endswith("@" + MESSAGE_ID_DOMAIN)}
    if not wanted:
        return None
    with svc.uow.read() as session:
        rows = session.execute(
            select(OutboxEntry.idempotency_key, OutboxEntry.payload).where(
                func.lower(OutboxEntry.recipient) == sender,
                OutboxEntry.channel == "smtp",
                or_(*(OutboxEntry.idempotency_key.startswith(p) for p in (PROMPT, ASK, QUESTION))),
            )
        ).all()
    by_id = {message_id_for(key).strip("<>"): (key, dict(payload or {})) for key, payload in rows}
    for ref in refs:  # the nearest parent wins
        if ref in wanted and ref in by_id:
            return by_id[ref]
    return None


# ----------------------------------------------------------------------------- answers


def _answer(
    svc: Service,
    m: InboundMessage,
    sender: str,
    payload: dict[str, Any],
    now: datetime,
    report: InboxReport,
) -> None:
    task_id, line = int(payload["task_id"]), str(payload["line"])
    kind = CheckpointKind(line)
    answer = parse_answer(reply_text(m.text), kind=kind)
    d = _digest(m.message_id)
    if answer.confidence is Confidence.HIGH:
        row = record_answer(
            svc, task_id=task_id, kind=line, source="email", respondent=sender,
            answer=answer, dedupe_key=f"email:{d}",
        )  # fmt: skip
        if row is None:
            report.duplicates += 1
        else:
            report.answers.append(row)
        return
    with svc.uow.begin() as session:
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
        link = feedback_link(svc.settings, task.id, task.deadline, line, sender)
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
    svc: Service, m: InboundMessage, sender: str, now: datetime, report: InboxReport
) -> None:
    with svc.uow.read() as session:
        pair = _manager_pair(session, sender, m)
        if pair is None:
            _ignore(m, "not from a manager", report)
            return
        pair_id, zone, locale = pair.id, pair.timezone, pair.locale
    original = {"subject": m.subject, "text": reply_text(m.text)[:MAX_KEPT_TEXT],
                "sent_at": m.sent_at.isoformat(), "origin": m.message_id}  # fmt: skip
    draft = _parse(svc, original, m.text, m.sent_at, zone, locale, sender)
    _act_on_draft(svc, m, sender, pair_id, draft, original, now, report)


def _task_follow_up(
    svc: Service,
    m: InboundMessage,
    sender: str,
    payload: dict[str, Any],
    now: datetime,
    report: InboxReport,
) -> None:
    """The manager answered our question about a task email: read the email again with
    the answer as its deadline (or, for a "yes", with the deadline we proposed)."""
    with svc.uow.read() as session:
        pair = session.get(Pair, int(payload["pair_id"]))
        if pair is None:
            raise NotFoundError("the pair of that task email is gone")
        zone, locale = pair.timezone, pair.locale
    said = next((s.strip() for s in reply_text(m.text).splitlines() if s.strip()), "")
    original = {k: payload[k] for k in ("subject", "text", "sent_at", "origin")}
    first_sent = datetime.fromisoformat(str(payload["sent_at"]))
    proposed = payload.get("deadline")
    if _YES.match(said) and proposed:
        draft = _parse(svc, original, original["text"], first_sent, zone, locale, sender)
        draft = replace(draft, deadline=datetime.fromisoformat(proposed), question=None,
                        confidence=Confidence.HIGH)  # fmt: skip
        if not draft.title:
            draft = replace(draft, question=payload.get("question") or "?")
    else:
        subject = original["subject"] if payload.get("title") else said
        body = f"Deadline: {said}\n{original['text']}" if payload.get("title") else original["text"]
        draft = _parse(svc, {**original, "subject": subject}, body, m.sent_at, zone, locale, sender)
        if draft.question is None and draft.deadline is not None:
            draft = replace(draft, term_start=min(draft.term_start, first_sent))
    _act_on_draft(svc, m, sender, int(payload["pair_id"]), draft, original, now, report)


def _parse(
    svc: Service,
    original: dict[str, Any],
    body: str,
    sent_at: datetime,
    zone: str,
    locale: str,
    sender: str,
) -> TaskDraft:
    lang = _lang(locale, f"{original['subject']}\n{body}")
    ignore = [sender, svc.settings.inbox.address, svc.settings.smtp.from_address]
    return parse_task_email(
        str(original["subject"]),
        body,
        sent_at,
        zone,
        locale if timefmt.lang(locale) == lang else lang,
        ignore_addresses=[a for a in ignore if a],
    )


def _act_on_draft(
    svc: Service,
    m: InboundMessage,
    sender: str,
    pair_id: int,
    draft: TaskDraft,
    original: dict[str, Any],
    now: datetime,
    report: InboxReport,
) -> None:
    lang = _lang("", f"{original['subject']}\n{original['text']}")
    if draft.question is not None:
        with svc.uow.begin() as session:
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
    task_id = _create_confirmed(svc, sender, pair_id, draft, original, m, now, lang)
    if task_id is None:
        report.duplicates += 1
    else:
        report.tasks.append(task_id)


class _AlreadyDone(Exception):
    """The confirmation key exists: this email made its task already (roll back)."""


def _create_confirmed(
    svc: Service,
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
        with svc.uow.begin() as session:
            if session.scalars(
                select(OutboxEntry.id).where(OutboxEntry.idempotency_key == key)
            ).first():
                raise _AlreadyDone
            pair = session.get(Pair, pair_id)
            if pair is None:
                raise NotFoundError(f"no pair {pair_id}")
            task = DelegatedTask(
                pair_id=pair.id, title=draft.title.strip(), result=draft.result,
                measure=draft.measure, resources=draft.resources, why=draft.why,
                delegator=pair.manager_email,
                delegate=check_email(draft.delegate, "delegate") if draft.delegate
                else pair.assistant_email,
                term_start=draft.term_start, deadline=draft.deadline, state="briefed",
                created_at=now, updated_at=now,
            )  # fmt: skip
            session.add(task)
            session.flush()
            delegation.ensure_checkpoints(session, task, pair, svc)
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


def _count(entry: OutboxEntry | None, report: InboxReport) -> None:
    if entry is None:
        report.duplicates += 1
    else:
        report.outbox_ids.append(entry.id)
