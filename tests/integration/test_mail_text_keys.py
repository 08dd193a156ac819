"""Mail imported from an account keeps what its text says (issue 14, points 2 and 3): the
stored path (``latency_of_pair``, the pair's latency index) tells copies from other
messages sent in the same second, and pairs a reply with a blank subject that quotes the
assistant's text (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from mailbox import Maildir
from pathlib import Path

import pytest
from sqlalchemy import select

from assistant.bootstrap import Service
from assistant.domain.latency.quotes import BODY_KEY, QUOTE_KEYS, TEXT_KEY
from assistant.services.mail import import_mail, latency_of_pair, to_message
from assistant.services.pairs import add_account
from assistant.store.db import UnitOfWork
from assistant.store.tables import Message
from connectors.archive.mailbox import MaildirSource
from tests.support.mail_keys import CAR, CONTRACT, TUESDAY, pair_service


def mail(box: Maildir, mid: str, frm: str, to: str, at: datetime, subject: str, body: str,
         *, cc: str = "", reply_to: str = "") -> None:  # fmt: skip
    msg = EmailMessage()
    msg["From"], msg["To"] = f"{frm}@example.com", f"{to}@example.com"
    if cc:
        msg["Cc"] = f"{cc}@example.com"
    msg["Subject"], msg["Date"], msg["Message-ID"] = subject, format_datetime(at), f"<{mid}>"
    if reply_to:
        msg["In-Reply-To"] = msg["References"] = f"<{reply_to}>"
    msg.set_content(body)
    box.add(msg)


@pytest.fixture
def svc(uow: UnitOfWork, tmp_path: Path) -> Service:
    return pair_service(uow, tmp_path)


def _account(svc: Service, root: Path) -> int:
    return add_account(svc, pair="alex", name="export", provider="maildir",
                       settings={"path": str(root)}).id  # fmt: skip


def test_a_copy_is_one_message_and_another_text_in_the_same_second_is_another(
    svc: Service, tmp_path: Path
) -> None:
    root = tmp_path / "mail"
    inbox = Maildir(str(root), create=True)
    archive = inbox.add_folder("Archive")
    # The assistant sends two messages with one subject in the same second ("send later").
    mail(inbox, "t1@x", "sam", "alex", TUESDAY, "Today", CONTRACT)
    mail(inbox, "t2@x", "sam", "alex", TUESDAY, "Today", CAR)
    # A copy of the first, filed elsewhere: another Message-ID, one more recipient.
    mail(archive, "t1-copy@x", "sam", "alex", TUESDAY, "Today", CONTRACT, cc="lee")
    mail(inbox, "r1@x", "alex", "sam", TUESDAY + timedelta(minutes=20), "Re: Today", "Signed.",
         reply_to="t1@x")  # fmt: skip
    mail(inbox, "r2@x", "alex", "sam", TUESDAY + timedelta(minutes=40), "Re: Today", "Thanks.",
         reply_to="t2@x")  # fmt: skip
    account = _account(svc, root)
    assert import_mail(svc, account, MaildirSource(root)).new == 5

    with svc.uow.read() as s:
        stored = {m.message_id: to_message(m) for m in s.scalars(select(Message))}
    assert stored["t1@x"].extra[BODY_KEY] == stored["t1-copy@x"].extra[BODY_KEY]
    assert stored["t1@x"].extra[BODY_KEY] != stored["t2@x"].extra[BODY_KEY]

    result = latency_of_pair(svc, "alex", None).to_dict()
    sent = [m for m in result["messages"] if m["direction"] == "assistant_to_manager"]
    # The first copy stored stands for both (the Archive folder is read first).
    assert sorted(m["id"].strip("<>") for m in sent) == ["t1-copy@x", "t2@x"], (
        "the copy counts once; the other text sent in the same second is its own message"
    )
    # One thread (subject "Today" between the two): the manager's first reply answers both.
    assert [m["working_minutes"] for m in sent] == [pytest.approx(20), pytest.approx(20)]


def test_a_reply_with_a_blank_subject_that_quotes_the_message_pairs_with_it(
    svc: Service, tmp_path: Path
) -> None:
    root = tmp_path / "mail"
    inbox = Maildir(str(root), create=True)
    mail(inbox, "q1@x", "sam", "alex", TUESDAY, "Lease contract", CONTRACT)
    account = _account(svc, root)
    import_mail(svc, account, MaildirSource(root))
    first = latency_of_pair(svc, "alex", None).to_dict()  # the index is built here
    assert [m["replied_at"] for m in first["messages"]] == [None]

    # No In-Reply-To, no References, a blank subject: only the quote ties it to q1.
    quoted = "\n".join("> " + line for line in ("Please sign the contract for the new office",
                       "lease before noon today so that legal can file it with the", "landlord."))  # fmt: skip
    reply = f"Done, signed and sent back.\n\nOn Tue, Sam wrote:\n{quoted}\n"
    mail(inbox, "q2@x", "alex", "sam", TUESDAY + timedelta(minutes=30), "", reply)
    assert import_mail(svc, account, MaildirSource(root)).new == 1

    with svc.uow.read() as s:
        row = s.scalars(select(Message).where(Message.message_id == "q2@x")).one()
        original = s.scalars(select(Message).where(Message.message_id == "q1@x")).one()
        assert to_message(original).extra[TEXT_KEY] in to_message(row).extra[QUOTE_KEYS].split()

    result = latency_of_pair(svc, "alex", None).to_dict()  # fed only the new row
    records = {m["id"].strip("<>"): m for m in result["messages"]}
    assert records["q1@x"]["replied_at"] is not None
    assert records["q1@x"]["working_minutes"] == pytest.approx(30)
