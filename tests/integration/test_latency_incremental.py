"""The pair's latency report comes from an incremental ``LatencyIndex`` (issue 13): each
call feeds it only the mail stored since, and it gives what the batch computation gives."""

from __future__ import annotations

from datetime import timedelta
from mailbox import Maildir
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from assistant.bootstrap import Service
from assistant.services.hours import pair_hours
from assistant.services.mail import (
    LatencyReport,
    addresses,
    cached_index,
    import_mail,
    latency_of_pair,
    pair_latency,
    report,
    to_message,
)
from assistant.services.pair_settings import update_pair_settings
from assistant.services.pairs import add_account, add_pair
from assistant.store.db import UnitOfWork
from assistant.store.tables import Message, Pair
from config.settings import Settings
from connectors.archive.mailbox import MaildirSource
from tests.integration.test_mail_service import MONDAY, NOW, mail


@pytest.fixture
def svc(uow: UnitOfWork, tmp_path: Path) -> Service:
    service = Service(settings=Settings(data_dir=tmp_path), engine=uow.engine, uow=uow,
                      clock=lambda: NOW)  # fmt: skip
    add_pair(service, name="alex", manager_email="alex@example.com", assistant_email="sam@example.com",
             timezone="Europe/Berlin")  # fmt: skip
    return service


def batch(svc: Service) -> LatencyReport:
    """What the batch path (every stored message through ``reply_latencies``) gives."""
    with svc.uow.read() as session:
        pair = session.scalars(select(Pair)).one()
        rows = session.scalars(select(Message).order_by(Message.sent_at))
        messages = [to_message(m) for m in rows]
        managers, assistants = addresses(pair)
        hours = pair_hours(pair, messages[0].sent_at.year, NOW.year + 1)
        return report(messages, managers, assistants, NOW, pair.sla_minutes, None,
                      hours.working_minutes, pair.timezone)  # fmt: skip


def test_new_mail_is_fed_to_the_same_index_and_matches_the_batch_figures(
    svc: Service, tmp_path: Path
) -> None:
    root = tmp_path / "mail"
    box = Maildir(str(root), create=True)
    mail(box, "a1@x", "sam", "alex", MONDAY + timedelta(hours=16, minutes=50), "Budget")
    mail(box, "b1@x", "sam", "alex", MONDAY + timedelta(days=1, hours=9), "Flights")
    account = add_account(svc, pair="alex", name="export", provider="maildir",
                          settings={"path": str(root)})  # fmt: skip
    import_mail(svc, account.id, MaildirSource(root))

    first = latency_of_pair(svc, "alex", None)
    index = cached_index(svc.uow, account.pair_id)
    assert index is not None and len(index) == 2
    assert (first.summary.count, first.summary.answered) == (2, 0)
    assert first == batch(svc)

    # Later mail: the answer to a1 and a new question.
    mail(box, "a2@x", "alex", "sam", MONDAY + timedelta(days=1, hours=8, minutes=10), "Re: Budget", "a1@x")
    mail(box, "c1@x", "sam", "alex", MONDAY + timedelta(days=2, hours=9), "Visa")
    assert import_mail(svc, account.id, MaildirSource(root)).new == 2

    second = latency_of_pair(svc, "alex", None)
    assert cached_index(svc.uow, account.pair_id) is index, "fed, not built again"
    assert len(index) == 4
    assert (second.summary.count, second.summary.answered) == (3, 1)
    answered = {m.id.strip("<>"): m for m in second.messages}["a1@x"]
    assert answered.working_minutes == pytest.approx(20)  # Mon 17:50 → Tue 09:10 Berlin
    assert second == batch(svc)
    # The web page's list of open messages reads the same index.
    assert [r.message_id for r in pair_latency(svc, "alex").records] == [
        m.id for m in second.messages
    ]
    assert cached_index(svc.uow, account.pair_id) is index


def test_a_change_of_working_time_builds_the_index_again(svc: Service, tmp_path: Path) -> None:
    root = tmp_path / "mail"
    box = Maildir(str(root), create=True)
    mail(box, "a1@x", "sam", "alex", MONDAY + timedelta(hours=16, minutes=50), "Budget")
    mail(box, "a2@x", "alex", "sam", MONDAY + timedelta(days=1, hours=8, minutes=10), "Re: Budget", "a1@x")
    account = add_account(svc, pair="alex", name="export", provider="maildir",
                          settings={"path": str(root)})  # fmt: skip
    import_mail(svc, account.id, MaildirSource(root))
    before = latency_of_pair(svc, "alex", None)
    index = cached_index(svc.uow, account.pair_id)
    assert before.messages[0].working_minutes == pytest.approx(20)

    update_pair_settings(svc, account.pair_id, {"timezone": "UTC"})
    after = latency_of_pair(svc, "alex", None)
    assert cached_index(svc.uow, account.pair_id) is not index
    # Mon 16:50 → Tue 08:10 UTC; hours 09–18 UTC: 70 working minutes on Monday.
    assert after.messages[0].working_minutes == pytest.approx(70)
    assert after == batch(svc)


def test_rows_gone_from_the_store_build_the_index_again(svc: Service, tmp_path: Path) -> None:
    root = tmp_path / "mail"
    box = Maildir(str(root), create=True)
    mail(box, "a1@x", "sam", "alex", MONDAY + timedelta(hours=16, minutes=50), "Budget")
    mail(box, "a2@x", "alex", "sam", MONDAY + timedelta(days=1, hours=8, minutes=10), "Re: Budget", "a1@x")
    account = add_account(svc, pair="alex", name="export", provider="maildir",
                          settings={"path": str(root)})  # fmt: skip
    import_mail(svc, account.id, MaildirSource(root))
    assert latency_of_pair(svc, "alex", None).summary.answered == 1

    with svc.uow.begin() as session:  # the answer is gone (e.g. its account was removed)
        gone = session.execute(delete(Message).where(Message.subject == "Re: Budget"))
        assert gone.rowcount == 1
    after = latency_of_pair(svc, "alex", None)
    assert (after.summary.answered, after.summary.open) == (0, 1)
    assert after == batch(svc)
