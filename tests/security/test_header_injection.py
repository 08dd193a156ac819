"""A title is text, never a header: line breaks and control characters in event and task
titles reach the assistant's mail as one line, and the notice is delivered, not dead.

Real store, a real ICS calendar synced, the real outbox drained through the SMTP channel
to the tests' SMTP server (``tests/support/smtp.py``)."""

from __future__ import annotations

import unicodedata
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from assistant.adapters.channels.smtp import SmtpChannel
from assistant.bootstrap import Service
from assistant.domain.text import one_line, shown
from assistant.services import delegation, feedback, outbox
from assistant.services.pairs import add_pair
from assistant.store.db import UnitOfWork
from assistant.store.tables import Checkpoint, OutboxEntry
from config.settings import OutboxSettings, Settings
from tests.integration import test_notifications
from tests.integration.test_notifications import BOARD, CEO, GYM, LUNCH, NOW, World, vevent
from tests.support.deps import deps_for
from tests.support.smtp import SmtpServer

world = test_notifications.world  # a pair over a real ICS calendar, synced

BREAKS = {
    "newline": "\n",
    "crlf": "\r\n",
    "vertical-tab": "\v",
    "form-feed": "\f",
    "file-separator": "\x1c",
    "next-line": "\x85",
    "line-separator": "\u2028",
    "paragraph-separator": "\u2029",
    "nul": "\x00",
}
BIDI = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "gnp.exe" reads as "exe.png"
def ics_text(value: str) -> str:
    """``value`` as an iCalendar TEXT value (RFC 5545 escapes; other characters raw)."""
    return (
        value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
        .replace("\r\n", "\\n").replace("\n", "\\n")
    )  # fmt: skip


def one_line_header(value: str) -> None:
    assert value == value.strip() and "  " not in value
    assert not any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value), repr(value)


def drain(uow: UnitOfWork, smtp_server: SmtpServer) -> list[OutboxEntry]:
    channel = SmtpChannel(smtp_server.host, smtp_server.port, "assistant@service.test")
    outbox.drain(uow, {"smtp": channel}, lambda: NOW + timedelta(hours=1), OutboxSettings())
    with uow.read() as s:
        return list(s.scalars(select(OutboxEntry).order_by(OutboxEntry.id)))


@pytest.mark.parametrize("brk", BREAKS.values(), ids=BREAKS.keys())
def test_an_event_title_with_a_line_break_is_delivered_on_one_line(
    world: World, smtp_server: SmtpServer, brk: str
) -> None:
    title = f"Budget{brk}Bcc: mallory@evil.example"
    extra = f"SUMMARY:{ics_text(title)}\n"
    event = vevent("budget", "20261126T150000", "20261126T160000", "x", "Room 4").replace(
        "SUMMARY:x\n", extra
    )
    world.write(BOARD, LUNCH, CEO, GYM, event)
    world.sync(NOW + timedelta(minutes=1))
    world.dispatch(NOW + timedelta(minutes=2))
    [entry] = drain(world.uow, smtp_server)
    assert (entry.state, entry.last_error) == ("sent", "")
    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["sam@example.com"], "no recipient smuggled in"
    assert mail.message["Bcc"] is None
    subject = str(mail.message["Subject"])
    one_line_header(subject)
    assert "Budget Bcc: mallory@evil.example" in subject
    body = mail.message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "Budget Bcc: mallory@evil.example" in text and "Room 4" not in subject
    assert "\x00" not in text


def test_bidi_overrides_are_dropped_from_subject_and_body(
    world: World, smtp_server: SmtpServer
) -> None:
    title = f"Invoice {BIDI}fdp.exe"
    event = vevent("inv", "20261126T150000", "20261126T160000", ics_text(title), "Room 4")
    world.write(BOARD, LUNCH, CEO, GYM, event)
    world.sync(NOW + timedelta(minutes=1))
    world.dispatch(NOW + timedelta(minutes=2))
    [entry] = drain(world.uow, smtp_server)
    assert entry.state == "sent"
    [mail] = smtp_server.wait_for(1)
    assert "Invoice fdp.exe" in str(mail.message["Subject"])
    for part in ("plain", "html"):
        body = mail.message.get_body((part,))
        assert body is not None
        content = body.get_content()
        assert BIDI not in content and "Invoice fdp.exe" in content


@pytest.fixture
def svc(uow: UnitOfWork, tmp_path: Path) -> Service:
    service = Service(settings=Settings(data_dir=tmp_path), engine=uow.engine, uow=uow,
                      clock=lambda: NOW)  # fmt: skip
    add_pair(deps_for(uow, NOW), name="alex", manager_email="alex@example.com", assistant_email="sam@example.com",
             timezone="Europe/Berlin")  # fmt: skip
    return service


@pytest.mark.parametrize("brk", ["\r\n", "\n", "\u2028", "\x00"], ids=["crlf", "lf", "ls", "nul"])
def test_a_task_title_with_a_line_break_still_gets_both_red_line_prompts(
    svc: Service, smtp_server: SmtpServer, brk: str
) -> None:
    title = f"Board pack{brk}Bcc: mallory@evil.example"
    tid = delegation.create_task(svc, pair="alex", title=title, delegate="kim@example.com",
                                 term_start=NOW, deadline=NOW + timedelta(days=4)).id  # fmt: skip
    with svc.uow.begin() as s:  # as if written to a calendar
        s.execute(
            update(Checkpoint).where(Checkpoint.start_at.is_not(None)).values(state="written")
        )
        red = s.scalars(select(Checkpoint).where(Checkpoint.task_id == tid,
                                                 Checkpoint.kind == "red_line")).one()  # fmt: skip
        red_id, start = red.id, red.start_at
    assert start is not None
    assert len(feedback.send_prompt(svc, red_id, start.isoformat())) == 2
    entries = drain(svc.uow, smtp_server)
    assert [(e.state, e.last_error) for e in entries] == [("sent", "")] * 2
    mails = smtp_server.wait_for(2)
    assert sorted(r for m in mails for r in m.rcpt_tos) == ["alex@example.com", "kim@example.com"]
    for mail in mails:
        subject = str(mail.message["Subject"])
        one_line_header(subject)
        assert subject == "Red Line: Board pack Bcc: mallory@evil.example"
        assert mail.message["Bcc"] is None
        text = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "Does the work match the agreed parameters" in text
        assert "Board pack" in text and "\x00" not in text


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        ("Budget\nBcc: x@y", "Budget Bcc: x@y"),
        ("a\r\n\tb", "a b"),
        ("a\v\f\x1c\x1d\x1e\x85\u2028\u2029b", "a b"),
        ("nul\x00here", "nul here"),
        (f"{BIDI}evil\u2066x\u2069\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u2067\u2068", "evilx"),
        ("lone \udcff surrogate", "lone \ufffd surrogate"),
        ("  spaced   out  ", "spaced out"),
        ("Ünïcødé — привет", "Ünïcødé — привет"),
    ],
)
def test_one_line(raw: str, line: str) -> None:
    assert one_line(raw) == line
    assert one_line(raw, max_len=4) == (line if len(line) <= 4 else line[:3].rstrip() + "…")


def test_shown_keeps_lines_but_not_direction_tricks() -> None:
    assert shown(f"one\r\ntwo\u2028three{BIDI}\x00") == "one\ntwo\nthree "


@pytest.mark.parametrize(
    "brk", ["\r\n", "\u2028", "\x85", "\x00"], ids=["crlf", "ls", "nel", "nul"]
)
def test_a_task_emails_subject_is_a_one_line_title(brk: str) -> None:
    """A Subject decoded from RFC 2047 words (``=?utf-8?q?Board=0D=0Apack?=``) may carry
    any character; the task title it becomes is one line."""
    from assistant.domain.task_mail import parse_task_email

    draft = parse_task_email(f"Board{brk}pack{BIDI}", "By Friday 17:00 please.", NOW,
                             "Europe/Berlin", "en")  # fmt: skip
    assert draft.title == "Board pack" and draft.deadline is not None
