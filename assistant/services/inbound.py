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
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from assistant.domain.mail_auth import authenticated
from assistant.domain.message_ids import MESSAGE_ID_DOMAIN, message_id_for
from assistant.services.inbound_answers import ASK as ASK
from assistant.services.inbound_answers import PROMPT as PROMPT
from assistant.services.inbound_answers import _answer, _ignore
from assistant.services.inbound_report import InboxReport, InboxTally
from assistant.services.inbound_tasks import CONFIRM as CONFIRM
from assistant.services.inbound_tasks import MAX_KEPT_TEXT as MAX_KEPT_TEXT
from assistant.services.inbound_tasks import QUESTION, _task_email, _task_follow_up
from assistant.services.pairs import NotFoundError
from assistant.store.tables import OutboxEntry
from connectors.archive.mailbox import InboundMessage
from connectors.base import ParseLimits, TokenExpired

if TYPE_CHECKING:
    from assistant.services.deps import Deps
    from config.settings import InboxSettings, Settings

log = logging.getLogger(__name__)

TOKEN_FILE = "inbox.token"  # noqa: S105 - a file name, not a secret
LOCK_FILE = "inbox.lock"


class InboxSource(Protocol):
    """Where the inbox's messages come from (``ImapMailbox``, ``MaildirSource``)."""

    def fetch_new_bodies(self, token: str | None) -> tuple[list[InboundMessage], str]: ...


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


def process_inbox(deps: Deps, now: datetime, source: InboxSource | None = None) -> InboxReport:
    """Read what arrived since the stored token and act on each message; then store the
    next token. An error (database, connector) leaves the token where it was, so the next
    run reads the same messages again, and the Message-ID keys make that harmless."""
    source = source or open_inbox(deps.settings)
    if source is None:
        return InboxReport()
    warn_inbox_trust(deps.settings.inbox)
    tally = InboxTally()
    with _lock(deps.settings.data_dir) as mine:
        if not mine:
            return InboxReport(busy=True)
        token = read_token(deps.settings)
        try:
            messages, next_token = source.fetch_new_bodies(token)
        except TokenExpired as exc:
            log.warning("inbox token no longer valid (%s): reading the folder again", exc)
            messages, next_token = source.fetch_new_bodies(None)
        tally.read = len(messages)
        for message in messages:
            handle_message(deps, message, now, tally)
        write_token(deps.settings, next_token)
    return tally.report()


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


def handle_message(deps: Deps, m: InboundMessage, now: datetime, report: InboxTally) -> None:
    """Act on one message (see the module's docstring); idempotent per Message-ID."""
    sender = m.from_addr.lower()
    ours = {a.lower() for a in (deps.settings.inbox.address, deps.settings.smtp.from_address) if a}
    why_not = ""
    if not sender:
        why_not = "no sender"
    elif sender in ours:
        why_not = "our own mail"
    elif m.auto_reply:
        why_not = "an automatic message"
    elif m.sent_at < now - timedelta(days=deps.settings.inbox.max_age_days):
        why_not = "older than inbox.max_age_days"
    else:  # not answered when refused: a reply to a forged From is backscatter
        why_not = sender_unauthenticated(deps.settings.inbox, m, sender)
    if why_not:
        _ignore(m, why_not, report)
        return
    refs = _refs(m)
    answered = _answered_entry(deps, sender, refs) if refs else None
    try:
        if answered is not None and answered.key.startswith((PROMPT, ASK)):
            _answer(deps, m, sender, answered.payload, now, report)
        elif answered is not None and answered.key.startswith(QUESTION):
            _task_follow_up(deps, m, sender, answered.payload, now, report)
        elif any(r.endswith("@" + MESSAGE_ID_DOMAIN) for r in refs):
            _ignore(m, "a reply to another of our messages", report)
        else:
            _task_email(deps, m, sender, now, report)
    except (ValueError, NotFoundError) as exc:  # the message, not the system, is at fault
        log.warning("inbox: message %s from %s not used: %s", m.message_id, sender, exc)
        report.ignored += 1
    except SQLAlchemyError:
        raise  # the database: the token stays, the message is read again next time
    except Exception:  # a bug on one odd message must not block the inbox behind it
        log.exception("inbox: message %s from %s failed; skipped", m.message_id, sender)
        report.ignored += 1


def _refs(m: InboundMessage) -> list[str]:
    found = [m.in_reply_to, *reversed(m.references)]  # the nearest parent first
    return list(dict.fromkeys(r for r in found if r))


@dataclass(frozen=True, slots=True)
class _Answered:
    """Our message a reply answers: its outbox key and the payload stored with it."""

    key: str
    payload: Mapping[str, Any]


def _answered_entry(deps: Deps, sender: str, refs: Sequence[str]) -> _Answered | None:
    """Our prompt or question, sent to ``sender``, that ``refs`` name.

    The Message-ID is a hash of the outbox key (``assistant.adapters.channels.smtp``), so it is
    computed for each candidate: the entries sent to this sender, with our prefixes.
    """
    wanted = {r.strip("<>") for r in refs if r.endswith("@" + MESSAGE_ID_DOMAIN)}
    if not wanted:
        return None
    with deps.uow.read() as session:
        rows = session.execute(
            select(OutboxEntry.idempotency_key, OutboxEntry.payload).where(
                func.lower(OutboxEntry.recipient) == sender,
                OutboxEntry.channel == "smtp",
                or_(*(OutboxEntry.idempotency_key.startswith(p) for p in (PROMPT, ASK, QUESTION))),
            )
        ).all()
    by_id = {
        message_id_for(key).strip("<>"): _Answered(key, dict(payload or {}))
        for key, payload in rows
    }
    for ref in refs:  # the nearest parent wins
        if ref in wanted and ref in by_id:
            return by_id[ref]
    return None
