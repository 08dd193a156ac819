"""Mail import into the store and reply latency of a pair (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from mailbox import Maildir
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from assistant.bootstrap import Service
from assistant.services.mail import import_mail, latency_of_pair
from assistant.services.pairs import add_account, add_pair
from assistant.store.db import UnitOfWork
from assistant.store.tables import Account, Message
from config.settings import Settings
from connectors.archive.mailbox import MaildirSource

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MONDAY = datetime(2026, 11, 23, tzinfo=UTC)  # Europe/Berlin is UTC+1 in November


def mail(box: Maildir, mid: str, frm: str, to: str, at: datetime, subject: str,
         reply_to: str | None = None) -> None:  # fmt: skip
    msg = EmailMessage()
    msg["From"], msg["To"] = f"{frm}@example.com", f"{to}@example.com"
    msg["Subject"], msg["Date"], msg["Message-ID"] = subject, format_datetime(at), f"<{mid}>"
    if reply_to:
        msg["In-Reply-To"] = msg["References"] = f"<{reply_to}>"
    msg.set_content("text")
    box.add(msg)


@pytest.fixture
def svc(uow: UnitOfWork, tmp_path: Path) -> Service:
    service = Service(settings=Settings(data_dir=tmp_path), engine=uow.engine, uow=uow,
                      clock=lambda: NOW)  # fmt: skip
    add_pair(service, name="alex", manager_email="alex@example.com", assistant_email="sam@example.com",
             timezone="Europe/Berlin")  # fmt: skip
    return service


def test_import_counts_copies_once_and_measures_in_working_time(svc: Service, tmp_path: Path) -> None:
    root = tmp_path / "mail"
    inbox = Maildir(str(root), create=True)
    sent = inbox.add_folder("Sent")
    # Mon 17:50 Berlin (16:50 UTC) → answered Tue 09:10 Berlin; hours 09–18: 10 + 10 = 20 working minutes.
    mail(inbox, "a1@x", "sam", "alex", MONDAY + timedelta(hours=16, minutes=50), "Budget")
    mail(sent, "a2@x", "alex", "sam", MONDAY + timedelta(days=1, hours=8, minutes=10), "Re: Budget", "a1@x")
    mail(inbox, "a2@x", "alex", "sam", MONDAY + timedelta(days=1, hours=8, minutes=10), "Re: Budget", "a1@x")
    # Tue 10:00 Berlin, answered 10:25: 25 minutes either way.
    mail(inbox, "b1@x", "sam", "alex", MONDAY + timedelta(days=1, hours=9), "Flights")
    mail(sent, "b2@x", "alex", "sam", MONDAY + timedelta(days=1, hours=9, minutes=25), "RE: Flights")
    # Still open.
    mail(inbox, "c1@x", "sam", "alex", MONDAY + timedelta(days=2, hours=9), "Visa")
    account = add_account(svc, pair="alex", name="export", provider="maildir",
                          settings={"path": str(root)})  # fmt: skip

    first = import_mail(svc, account.id, MaildirSource(root))
    assert first.new == 5, "the copy of a2 in Sent and in the inbox is one message"
    again = import_mail(svc, account.id, MaildirSource(root))
    assert again.new == 0
    with svc.uow.read() as s:
        assert s.scalar(select(func.count()).select_from(Message)) == 5

    result = latency_of_pair(svc, "alex", None).to_dict()
    assert result["basis"] == "working"
    summary = result["summary"]
    assert (summary["count"], summary["answered"], summary["open"]) == (3, 2, 1)
    records = {m["id"].strip("<>"): m for m in result["messages"]}
    assert records["a1@x"]["working_minutes"] == pytest.approx(20)
    assert records["a1@x"]["wall_minutes"] == pytest.approx(15 * 60 + 20)
    assert records["a1@x"]["within_sla"] is True
    assert records["b1@x"]["working_minutes"] == pytest.approx(25)
    assert records["c1@x"]["replied_at"] is None
    assert summary["median_minutes"] == pytest.approx(22.5)
    assert summary["wall_median_minutes"] == pytest.approx((920 + 25) / 2)
    assert summary["within_sla_share"] == pytest.approx(2 / 3)


def test_since_filters_by_sent_time(svc: Service, tmp_path: Path) -> None:
    root = tmp_path / "mail"
    box = Maildir(str(root), create=True)
    mail(box, "old@x", "sam", "alex", MONDAY - timedelta(days=7, hours=-9), "Old")
    mail(box, "new@x", "sam", "alex", MONDAY + timedelta(hours=9), "New")
    account = add_account(svc, pair="alex", name="export", provider="maildir",
                          settings={"path": str(root)})  # fmt: skip
    import_mail(svc, account.id, MaildirSource(root))
    result = latency_of_pair(svc, "alex", MONDAY).to_dict()
    assert [m["subject"] for m in result["messages"]] == ["New"]


def test_our_own_notifications_in_the_managers_sent_items_are_not_replies(svc: Service, tmp_path: Path) -> None:
    root = tmp_path / "mail"
    box = Maildir(str(root), create=True)
    mail(box, "q1@x", "sam", "alex", MONDAY + timedelta(hours=9), "Budget")
    # A schedule-change notification sent through the manager's account lands in Sent.
    mail(box, "0ba2cace85d60965e06341f4fe615e83@exec-assistant", "alex", "sam",
         MONDAY + timedelta(hours=9, minutes=5), "Re: Budget", "q1@x")  # fmt: skip
    account = add_account(svc, pair="alex", name="export", provider="maildir",
                          settings={"path": str(root)})  # fmt: skip
    import_mail(svc, account.id, MaildirSource(root))
    result = latency_of_pair(svc, "alex", None).to_dict()
    assert (result["summary"]["count"], result["summary"]["answered"]) == (1, 0)


def test_an_import_without_new_mail_is_one_update_and_keeps_the_token_moving(
    svc: Service, tmp_path: Path
) -> None:
    """The sync job reads the account (and its token) itself: an import that finds no new
    mail then costs the database one statement, at any number of pairs."""
    root = tmp_path / "mail"
    inbox = Maildir(str(root), create=True)
    mail(inbox, "a1@x", "sam", "alex", MONDAY + timedelta(hours=9), "Budget")
    account = add_account(svc, pair="alex", name="export", provider="maildir",
                          settings={"path": str(root)})  # fmt: skip
    assert import_mail(svc, account.id, MaildirSource(root)).new == 1
    with svc.uow.read() as s:
        token = s.scalars(select(Account.sync_token).where(Account.id == account.id)).one()
    seen: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        verb = statement.split(None, 1)[0].upper()
        if verb not in ("BEGIN", "COMMIT", "ROLLBACK"):  # SQLite's BEGIN is sent as SQL
            seen.append(verb)

    event.listen(svc.engine, "before_cursor_execute", count)
    try:
        again = import_mail(svc, account.id, MaildirSource(root), token=token)
    finally:
        event.remove(svc.engine, "before_cursor_execute", count)
    assert (again.new, seen) == (0, ["UPDATE"])
    with svc.uow.read() as s:
        stored = s.get(Account, account.id)
        assert stored is not None and stored.state == "ok" and stored.sync_token
        assert count_messages(svc) == 1


def count_messages(svc: Service) -> int:
    with svc.uow.read() as s:
        return int(s.scalar(select(func.count()).select_from(Message)) or 0)
