"""The service's own inbox, end to end: a real Dovecot holds the service's mailbox (mail
put there with IMAP APPEND, as a mail client would), a real aiosmtpd receives what the
outbox sends, the store is real (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from imapclient import IMAPClient
from sqlalchemy import select, update

from assistant.adapters.channels.smtp import SmtpChannel
from assistant.bootstrap import Service
from assistant.domain.message_ids import message_id_for
from assistant.services import delegation, feedback, outbox
from assistant.services.inbound import TOKEN_FILE, process_inbox
from assistant.services.inbound_report import InboxReport
from assistant.services.pairs import add_pair
from assistant.store.db import UnitOfWork
from assistant.store.tables import Checkpoint, DelegatedTask, OutboxEntry, TaskFeedback
from config.settings import InboxSettings, SecretRef, Settings, SmtpSettings
from connectors.archive.mailbox import InboundMessage, MaildirSource, html_to_text
from tests.support.deps import deps_for
from tests.support.dovecot import Dovecot
from tests.support.smtp import Received, SmtpServer

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # a Monday; 09:00 in Berlin
BERLIN = ZoneInfo("Europe/Berlin")
SERVICE = "tasks@service.test"
MANAGER = "alex@example.com"
ASSISTANT = "sam@example.com"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Iterator[tuple[str, str, IMAPClient]]:
    """The service's mailbox (a login of its own) and a client that delivers into it."""
    user, password = dovecot.spare_user()
    client = dovecot.client(user, password)
    yield user, password, client
    client.logout()


@pytest.fixture
def svc(
    uow: UnitOfWork,
    tmp_path: Path,
    dovecot: Dovecot,
    smtp_server: SmtpServer,
    mailbox: tuple[str, str, IMAPClient],
) -> Service:
    user, password, _ = mailbox
    (tmp_path / "inbox-password").write_text(password)
    settings = Settings(
        data_dir=tmp_path,
        smtp=SmtpSettings(host=smtp_server.host, port=smtp_server.port, from_address=SERVICE),
        inbox=InboxSettings(
            provider="imap", address=SERVICE, host=dovecot.host, port=dovecot.port,
            security="none", username=user,
            password=SecretRef(file=tmp_path / "inbox-password"),
            trust_unauthenticated=True,  # these tests are about what mail says, not who sent it
        ),
    )  # fmt: skip
    clock = Clock()
    channel = SmtpChannel(smtp_server.host, smtp_server.port, SERVICE, clock=clock)
    service = Service(settings=settings, engine=uow.engine, uow=uow, clock=clock,
                      channels={"smtp": channel})  # fmt: skip
    add_pair(deps_for(uow, NOW), name="alex", manager_email=MANAGER, assistant_email=ASSISTANT,
             timezone="Europe/Berlin")  # fmt: skip
    return service


def deliver(
    mailbox: tuple[str, str, IMAPClient],
    *,
    sender: str,
    subject: str,
    body: str,
    in_reply_to: str = "",
    message_id: str = "",
    sent: datetime = NOW - timedelta(minutes=5),
    html: str = "",
    authentication_results: tuple[str, ...] = (),
) -> str:
    """APPEND one mail to the service's INBOX; its Message-ID (without brackets). The
    ``Authentication-Results`` go on top, as the receiving server adds them."""
    mail = EmailMessage()
    for verdict in authentication_results:
        mail["Authentication-Results"] = verdict
    mail["From"] = f"Someone <{sender}>"
    mail["To"] = SERVICE
    mail["Subject"] = subject
    mail["Date"] = format_datetime(sent)
    mail["Message-ID"] = message_id or make_msgid(domain="mail.example.com")
    if in_reply_to:
        mail["In-Reply-To"] = in_reply_to
        mail["References"] = in_reply_to
    mail.set_content(body)
    if html:
        mail.add_alternative(html, subtype="html")
    mailbox[2].append("INBOX", mail.as_bytes())
    return str(mail["Message-ID"]).strip("<>")


def run(svc: Service) -> InboxReport:
    report = process_inbox(svc, svc.now())
    outbox.drain(svc.uow, svc.channels, svc.now, svc.settings.outbox)
    return report


def tasks(svc: Service) -> list[DelegatedTask]:
    with svc.uow.read() as s:
        found = list(s.scalars(select(DelegatedTask).order_by(DelegatedTask.id)))
        for t in found:
            _ = t.checkpoints  # loaded while the session is open
        return found


def answers(svc: Service) -> list[TaskFeedback]:
    with svc.uow.read() as s:
        return list(s.scalars(select(TaskFeedback).order_by(TaskFeedback.id)))


def prompts_for(
    svc: Service, smtp: SmtpServer, kind: str, delegate: str = ""
) -> dict[str, Received]:
    """A task whose checkpoints are "written"; the prompt of line ``kind``, sent, by recipient."""
    tid = delegation.create_task(svc, pair="alex", title="Board pack", delegate=delegate,
                                 term_start=NOW, deadline=NOW + timedelta(days=4)).id  # fmt: skip
    with svc.uow.begin() as s:  # as if written to a calendar
        s.execute(update(Checkpoint).values(state="written"))
        cp = s.scalars(
            select(Checkpoint).where(Checkpoint.task_id == tid, Checkpoint.kind == kind)
        ).one()
        cp_id = cp.id
    before = len(smtp.messages)
    ids = feedback.send_prompt(svc, cp_id)
    outbox.drain(svc.uow, svc.channels, svc.now, svc.settings.outbox)
    got = smtp.wait_for(before + len(ids))[before:]
    return {r.rcpt_tos[0]: r for r in got}


def text_of(r: Received) -> str:
    part = r.message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


# ------------------------------------------------------------------------------- tasks


def test_a_task_email_makes_a_task_with_two_lines_and_a_confirmation(
    svc: Service, mailbox: tuple[str, str, IMAPClient], smtp_server: SmtpServer
) -> None:
    mid = deliver(mailbox, sender=MANAGER, subject="Board deck for the investors",
                  body="Please prepare the board deck by Friday 17:00.\n"
                       "Result: 12 slides\nMeasure: approved by the CFO\n")  # fmt: skip
    report = run(svc)
    [task] = tasks(svc)
    assert report.tasks == (task.id,) and report.ignored == 0
    assert task.title == "Board deck for the investors"
    assert task.deadline.astimezone(BERLIN) == datetime(2026, 11, 27, 17, 0, tzinfo=BERLIN)
    assert (task.delegator, task.delegate) == (MANAGER, ASSISTANT)  # the pair's assistant
    assert (task.result, task.measure) == ("12 slides", "approved by the CFO")
    assert sorted(c.kind for c in task.checkpoints) == ["dead_line", "red_line"]
    assert all(c.state == "planned" and c.start_at is not None for c in task.checkpoints)
    [confirmation] = smtp_server.wait_for(1)
    assert confirmation.rcpt_tos == [MANAGER]
    assert confirmation.message["In-Reply-To"] == f"<{mid}>", "threaded under the task email"
    assert confirmation.message["Subject"] == "Task created: Board deck for the investors"
    body = text_of(confirmation)
    assert "Deadline: Fri 27 Nov 17:00 (Europe/Berlin)" in body, body
    assert "Red Line: " in body and "Dead Line: " in body and "12 slides" in body
    # Read with EXAMINE and BODY.PEEK: the manager's mail stays unread.
    client = mailbox[2]
    client.select_folder("INBOX", readonly=True)
    assert all(b"\\Seen" not in flags for flags in client.get_flags(client.search()).values())


def test_a_task_email_in_russian(
    svc: Service, mailbox: tuple[str, str, IMAPClient], smtp_server: SmtpServer
) -> None:
    deliver(mailbox, sender=MANAGER, subject="Подготовить отчёт по продажам",
            body="Подготовь отчёт до 27 ноября 15:00, пожалуйста.\n"
                 "Исполнитель: kim@example.com\nРезультат: отчёт в PDF\n")  # fmt: skip
    run(svc)
    [task] = tasks(svc)
    assert task.deadline.astimezone(BERLIN) == datetime(2026, 11, 27, 15, 0, tzinfo=BERLIN)
    assert task.delegate == "kim@example.com"  # the one the email names
    assert len(task.checkpoints) == 2
    [confirmation] = smtp_server.wait_for(1)
    assert confirmation.message["Subject"] == "Задача создана: Подготовить отчёт по продажам"
    assert "Срок: " in text_of(confirmation) and "Красная линия" in text_of(confirmation)


def test_an_unclear_deadline_is_asked_back_and_the_answer_completes_the_task(
    svc: Service, mailbox: tuple[str, str, IMAPClient], smtp_server: SmtpServer
) -> None:
    mid = deliver(mailbox, sender=MANAGER, subject="Budget review",
                  body="Please do the budget review by next Friday.")  # fmt: skip
    report = run(svc)
    assert report.tasks == () and tasks(svc) == []
    [question] = smtp_server.wait_for(1)
    assert question.rcpt_tos == [MANAGER]
    assert question.message["In-Reply-To"] == f"<{mid}>"
    assert question.message["Subject"] == "Re: Budget review"
    assert "do you mean Fri 27 Nov 18:00 or Fri 4 Dec 18:00?" in text_of(question)
    assert "No task was created yet" in text_of(question)
    # The manager answers in the thread: the original email is read with that deadline.
    deliver(mailbox, sender=MANAGER, subject="Re: Budget review",
            body="4 December 18:00\n\n> do you mean Fri 27 Nov 18:00 or Fri 4 Dec 18:00?",
            in_reply_to=str(question.message["Message-ID"]), sent=NOW)  # fmt: skip
    run(svc)
    [task] = tasks(svc)
    assert task.title == "Budget review"
    assert task.deadline.astimezone(BERLIN) == datetime(2026, 12, 4, 18, 0, tzinfo=BERLIN)
    assert len(smtp_server.wait_for(2)) == 2


def test_mail_from_anyone_else_is_ignored_and_never_answered(
    svc: Service, mailbox: tuple[str, str, IMAPClient], smtp_server: SmtpServer
) -> None:
    deliver(mailbox, sender="stranger@example.net", subject="Wire money",
            body="Pay the invoice by Friday 17:00.")  # fmt: skip
    deliver(mailbox, sender=ASSISTANT, subject="Not a manager", body="Book it by Friday 17:00.")
    report = run(svc)
    assert (report.read, report.ignored, report.tasks, report.outbox_ids) == (2, 2, (), ())
    assert tasks(svc) == [] and answers(svc) == []
    with svc.uow.read() as s:
        assert s.scalars(select(OutboxEntry)).all() == []
    assert smtp_server.messages == []


def test_with_a_trusted_server_named_a_forged_from_creates_nothing(
    svc: Service, mailbox: tuple[str, str, IMAPClient], smtp_server: SmtpServer
) -> None:
    inbox = svc.settings.inbox.model_copy(update={"trusted_authserv_ids": ["mx.service.test"]})
    svc.settings = svc.settings.model_copy(update={"inbox": inbox})
    forged = ("mx.service.test; spf=fail smtp.mailfrom=example.com; dkim=none; "
              "dmarc=fail (p=reject) header.from=example.com")  # fmt: skip
    deliver(mailbox, sender=MANAGER, subject="Wire the money", body="Pay it by Friday 17:00.",
            authentication_results=(forged, "mx.service.test; dmarc=pass"))  # fmt: skip
    deliver(mailbox, sender=MANAGER, subject="No verdict at all", body="By Friday 17:00.")
    report = run(svc)
    assert (report.read, report.ignored, report.tasks, report.outbox_ids) == (2, 2, (), ())
    assert tasks(svc) == [] and smtp_server.messages == [], "nothing made, nothing answered"
    genuine = ("mx.service.test; dkim=pass header.d=example.com header.s=k1; "
               "dmarc=pass header.from=example.com")  # fmt: skip
    deliver(mailbox, sender=MANAGER, subject="Board deck", body="The board deck by Friday 17:00.",
            authentication_results=(genuine,))  # fmt: skip
    report = run(svc)
    [task] = tasks(svc)
    assert report.tasks == (task.id,) and task.title == "Board deck"
    assert len(smtp_server.wait_for(1)) == 1  # the confirmation


def test_the_same_message_twice_acts_once(
    svc: Service, mailbox: tuple[str, str, IMAPClient], smtp_server: SmtpServer
) -> None:
    mid = deliver(mailbox, sender=MANAGER, subject="Offsite venue",
                  body="Book the offsite venue by 4 December.")  # fmt: skip
    deliver(mailbox, sender=MANAGER, subject="Offsite venue",
            body="Book the offsite venue by 4 December.", message_id=f"<{mid}>")  # fmt: skip
    first = run(svc)
    assert (len(first.tasks), first.duplicates) == (1, 1)
    (svc.settings.data_dir / TOKEN_FILE).unlink()  # the token lost: everything read again
    again = run(svc)
    assert (again.read, again.tasks, again.duplicates) == (2, (), 2)
    assert len(tasks(svc)) == 1
    assert len(smtp_server.wait_for(1)) == 1
    assert run(svc).read == 0, "with the token, nothing new"


class Listed:
    """An inbox source over a list (the IMAP one is exercised by the tests above)."""

    def __init__(self, *messages: InboundMessage) -> None:
        self.messages = list(messages)

    def fetch_new_bodies(self, token: str | None) -> tuple[list[InboundMessage], str]:
        start = int(token or 0)
        return self.messages[start:], str(len(self.messages))


def inbound(mid: str, text: str, subject: str = "Plan", reply_to: str = "") -> InboundMessage:
    return InboundMessage(message_id=mid, from_addr=MANAGER, to=(SERVICE,), cc=(),
                          subject=subject, in_reply_to=reply_to, references=(),
                          sent_at=NOW - timedelta(minutes=1), text=text)  # fmt: skip


def test_a_deadline_gone_by_the_time_the_email_is_read_is_asked_back(svc: Service) -> None:
    # Sent on Friday morning, due that afternoon, read on Monday (the service was down).
    sent = datetime(2026, 11, 20, 9, 0, tzinfo=BERLIN)
    late = replace(inbound("p1@example.com", "Plan the offsite by 20 November 17:00."), sent_at=sent)
    source = Listed(late)
    report = process_inbox(svc, NOW, source)
    assert report.tasks == () and tasks(svc) == [] and len(report.outbox_ids) == 1
    with svc.uow.read() as s:
        question = s.get(OutboxEntry, report.outbox_ids[0])
        assert question is not None
        assert question.body_text.startswith(
            "The deadline I read for “Plan”, Fri 20 Nov 17:00, has already passed."
        ), question.body_text
        assert question.payload["deadline"] is None, "never proposed"
        reply_to = message_id_for(question.idempotency_key).strip("<>")
    # "Yes" cannot confirm a deadline that has passed; a new one makes the task.
    source.messages.append(inbound("p2@example.com", "yes", reply_to=reply_to))
    assert process_inbox(svc, NOW, source).tasks == () and tasks(svc) == []
    source.messages.append(inbound("p3@example.com", "Wednesday 25 November 17:00",
                                   reply_to=reply_to))  # fmt: skip
    report = process_inbox(svc, NOW, source)
    [task] = tasks(svc)
    assert task.deadline.astimezone(BERLIN) == datetime(2026, 11, 25, 17, 0, tzinfo=BERLIN)


def test_a_task_email_read_after_its_red_line_counts_its_term_from_now(svc: Service) -> None:
    # Sent on Wednesday, due Monday noon: its Red Line (half the working time, Thursday
    # afternoon) passed before the service read it on Monday at 09:00.
    sent = datetime(2026, 11, 18, 9, 0, tzinfo=BERLIN)
    text = "Prepare the board pack by Monday 23 November 12:00."
    source = Listed(replace(inbound("l1@example.com", text, subject="Board pack"), sent_at=sent))
    assert len(process_inbox(svc, NOW, source).tasks) == 1
    [task] = tasks(svc)
    assert task.term_start == NOW, "the term counts from when the email was read"
    red = next(c for c in task.checkpoints if c.kind == "red_line")
    assert NOW < red.line_at < task.deadline, red.line_at
    # Read in time, the term counts from when it was sent.
    text = "Prepare the board pack by Tuesday 24 November 12:00."
    source.messages.append(replace(inbound("l2@example.com", text, subject="Board pack 2"),
                                   sent_at=NOW - timedelta(hours=1)))  # fmt: skip
    again = process_inbox(svc, NOW, source)
    assert len(again.tasks) == 1, again
    assert tasks(svc)[1].term_start == NOW - timedelta(hours=1)


def test_a_yes_confirms_the_deadline_proposed(svc: Service) -> None:
    source = Listed(inbound("q1@example.com", "Plan the offsite, 4 December would be great."))
    report = process_inbox(svc, NOW, source)
    assert report.tasks == () and len(report.outbox_ids) == 1
    with svc.uow.read() as s:
        question = s.get(OutboxEntry, report.outbox_ids[0])
        assert question is not None
        assert question.body_text.startswith("Is Fri 4 Dec 18:00 the deadline for “Plan")
        key = question.idempotency_key
    reply_to = message_id_for(key).strip("<>")
    source.messages.append(
        inbound("q2@example.com", "Yes, thanks!\n\n> Is Fri 4 Dec", reply_to=reply_to)
    )
    source.messages.append(inbound("q3@example.com", "yes", reply_to=reply_to))  # said twice
    report = process_inbox(svc, NOW, source)
    assert (len(report.tasks), report.duplicates) == (1, 1), "one task per task email"
    [task] = tasks(svc)
    assert task.deadline.astimezone(BERLIN) == datetime(2026, 12, 4, 18, 0, tzinfo=BERLIN)
    # Automatic mail and our own are never acted on, even from the manager's address.
    auto = replace(inbound("a1@example.com", "Out of office until Friday 17:00"), auto_reply=True)
    old = replace(
        inbound("o1@example.com", "Plan it by Friday 17:00"), sent_at=NOW - timedelta(days=30)
    )
    source.messages += [auto, old]
    assert process_inbox(svc, NOW, source).ignored == 2
    assert len(tasks(svc)) == 1


# ----------------------------------------------------------------------------- answers


def test_a_red_line_reply_is_stored(
    svc: Service, mailbox: tuple[str, str, IMAPClient], smtp_server: SmtpServer
) -> None:
    prompt = prompts_for(svc, smtp_server, "red_line")[MANAGER]
    deliver(mailbox, sender=MANAGER, subject=f"Re: {prompt.message['Subject']}",
            body="80%, on track\n\nOn Mon, 23 Nov 2026 at 09:00, exec-assistant wrote:\n"
                 "> Is it on schedule?\n",
            in_reply_to=str(prompt.message["Message-ID"]))  # fmt: skip
    report = run(svc)
    [row] = answers(svc)
    assert report.answers == (row.id,)
    assert (row.kind, row.source, row.respondent) == ("red_line", "email", MANAGER)
    assert (row.percent_done, row.on_track, row.needs_help) == (80, True, False)
    assert row.comment == "80%, on track"
    with svc.uow.read() as s:
        assert s.get(DelegatedTask, row.task_id).state == "in_progress"  # type: ignore[union-attr]
    run(svc)
    assert len(answers(svc)) == 1


def test_the_delegate_asking_for_help_in_russian(
    svc: Service, mailbox: tuple[str, str, IMAPClient], smtp_server: SmtpServer
) -> None:
    prompt = prompts_for(svc, smtp_server, "red_line", delegate="kim@example.com")
    self_report = prompt["kim@example.com"]
    deliver(mailbox, sender="kim@example.com", subject="Re: отчёт", body="нужна помощь",
            in_reply_to=str(self_report.message["Message-ID"]))  # fmt: skip
    run(svc)
    [row] = answers(svc)
    assert (row.respondent, row.needs_help, row.kind) == ("kim@example.com", True, "red_line")


def test_a_dead_line_reply_from_the_manager_accepts_the_task(
    svc: Service, mailbox: tuple[str, str, IMAPClient], smtp_server: SmtpServer
) -> None:
    prompt = prompts_for(svc, smtp_server, "dead_line")[MANAGER]
    deliver(mailbox, sender=MANAGER, subject="Re: Dead Line",
            body="<p>done, 100%, on time</p>",
            html="<div>done, 100%, on time</div><blockquote>Is it 80% done?</blockquote>",
            in_reply_to=str(prompt.message["Message-ID"]))  # fmt: skip
    run(svc)
    [row] = answers(svc)
    assert (row.percent_done, row.on_time, row.kind) == (100, True, "dead_line")
    [task] = tasks(svc)
    assert task.state == "accepted"
    assert feedback.score(svc, "alex").good == 1


def test_an_unclear_reply_is_asked_back_not_stored(
    svc: Service, mailbox: tuple[str, str, IMAPClient], smtp_server: SmtpServer
) -> None:
    prompt = prompts_for(svc, smtp_server, "dead_line")[MANAGER]
    before = len(smtp_server.messages)
    mid = deliver(mailbox, sender=MANAGER, subject="Re: Dead Line", body="hmm, mostly there",
                  in_reply_to=str(prompt.message["Message-ID"]))  # fmt: skip
    run(svc)
    assert answers(svc) == []
    [ask] = smtp_server.wait_for(before + 1)[before:]
    assert ask.rcpt_tos == [MANAGER] and ask.message["In-Reply-To"] == f"<{mid}>"
    assert "/feedback/v1." in text_of(ask) and "Nothing was stored" in text_of(ask)
    # The answer to that question counts.
    deliver(mailbox, sender=MANAGER, subject="Re: Re: Dead Line", body="90%, on time",
            in_reply_to=str(ask.message["Message-ID"]))  # fmt: skip
    run(svc)
    [row] = answers(svc)
    assert (row.percent_done, row.on_time) == (90, True)
    # A reply to a prompt sent to someone else is not an answer (and not a task either).
    deliver(mailbox, sender="kim@example.com", subject="Re: Dead Line", body="100%",
            in_reply_to=str(prompt.message["Message-ID"]))  # fmt: skip
    assert run(svc).ignored == 1 and len(answers(svc)) == 1


# -------------------------------------------------------------------------- the Maildir


def test_a_maildir_inbox_gives_whole_messages(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    mail = EmailMessage()
    mail["From"] = MANAGER
    mail["Subject"] = "Plan"
    mail["Message-ID"] = "<p1@example.com>"
    mail["Date"] = format_datetime(NOW)
    mail.set_content("<p>Plan the offsite <b>by Friday</b></p><blockquote>old</blockquote>",
                     subtype="html")  # fmt: skip
    (root / "new" / "1.host").write_bytes(mail.as_bytes())
    source = MaildirSource(root, folders=["INBOX"])
    [msg], token = source.fetch_new_bodies(None)
    assert (msg.message_id, msg.from_addr, msg.text) == ("p1@example.com", MANAGER,
                                                          "Plan the offsite by Friday")  # fmt: skip
    assert source.fetch_new_bodies(token)[0] == []
    assert html_to_text("a<br>b&amp;c<script>x</script>") == "a\nb&c"
