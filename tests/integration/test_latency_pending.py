"""Rows an import stores feed the pair's index as they were stored, not read back (issue
16 point 4): the messages it keeps for the next feed are the ones the store gives back
(truncated, NUL as a space, UTC), and the index fed from them (or from the store, when
another process stored rows in between) gives what the batch computation gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select

from assistant.bootstrap import Service
from assistant.domain.model import MessageData
from assistant.services import reply_index
from assistant.services.hours import pair_hours
from assistant.services.mail import (
    LatencyReport,
    addresses,
    cached_index,
    import_mail,
    latency_of_pair,
    report,
    to_message,
)
from assistant.services.pair_settings import update_pair_settings
from assistant.services.pairs import add_account, add_pair
from assistant.store.db import UnitOfWork
from assistant.store.tables import Message, Pair
from config.settings import Settings
from connectors.base import MailDelta

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MONDAY = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
SAM, ALEX = "sam@example.com", "alex@example.com"


@dataclass
class ListSource:
    messages: list[MessageData]

    def changes(self, token: str | None) -> MailDelta:
        return MailDelta(full=False, messages=tuple(self.messages), token="t")


def svc_on(uow: UnitOfWork, tmp_path: Path) -> Service:
    return Service(settings=Settings(data_dir=tmp_path), engine=uow.engine, uow=uow,
                   clock=lambda: NOW)  # fmt: skip


def batch(svc: Service) -> LatencyReport:
    """Every stored message through ``reply_latencies``."""
    with svc.uow.read() as session:
        pair = session.scalars(select(Pair)).one()
        messages = [to_message(m) for m in session.scalars(select(Message).order_by(Message.sent_at))]
        managers, assistants = addresses(pair)
        hours = pair_hours(pair, messages[0].sent_at.year, NOW.year + 1)
        return report(messages, managers, assistants, NOW, pair.sla_minutes, None,
                      hours.working_minutes, pair.timezone)  # fmt: skip


def msg(mid: str, frm: str, to: str, minutes: int, subject: str, **kw: object) -> MessageData:
    return MessageData(message_id=mid, sent_at=MONDAY + timedelta(minutes=minutes),
                       from_addr=frm, to=(to,), subject=subject, **kw)  # type: ignore[arg-type]  # fmt: skip


def stored_as(m: MessageData) -> tuple[str, str]:
    """Everything a message holds, its zone and its text keys included."""
    return repr(m), repr(sorted(m.extra.items()))


def test_rows_kept_for_the_index_are_the_rows_the_store_gives_back(
    uow: UnitOfWork, tmp_path: Path
) -> None:
    svc = svc_on(uow, tmp_path)
    pair = add_pair(svc, name="alex", manager_email=ALEX, assistant_email=SAM)
    account = add_account(svc, pair="alex", name="m", provider="maildir", settings={"path": "x"})
    import_mail(svc, account.id, ListSource([msg("<a1@x>", SAM, ALEX, 0, "Budget")]))
    latency_of_pair(svc, "alex", None)  # the index exists: later imports keep their rows
    berlin = timezone(timedelta(hours=1))
    hostile = [
        msg("<a2@x>", ALEX, SAM, 30, "Re: Budget\x00!", in_reply_to="<a1@x>\x00",
            references=("<a1@x>", "<r\x00@x>"), folder="Sent\x00", thread_id="",
            extra={"body_key": "b1", "text_key": "t1", "quote_keys": "q1 q2", "other": "x"}),
        MessageData(message_id="<" + "l" * 1200 + ">", from_addr=("s" * 400) + "@x",
                    sent_at=datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=berlin),
                    to=(SAM, "x\x00@y"), cc=("c@x",), subject="Visa", thread_id="T\x001",
                    auto_reply=True, source_id="not stored"),
        msg("<n\x00ul@x>", SAM, ALEX, 90, "Flights"),
        msg("<n ul@x>", SAM, ALEX, 91, "Flights, the same id once stored"),
        msg("<a1@x>", SAM, ALEX, 0, "Budget, stored already"),
        msg("<done@x>\x00", SAM, ALEX, 120, "Done"),
    ]
    assert import_mail(svc, account.id, ListSource(hostile)).new == 4
    kept = reply_index._pending[uow][pair.id]
    with uow.read() as session:
        rows = {m.id: to_message(m) for m in session.scalars(select(Message).where(Message.id.in_(kept)))}
    assert len(rows) == 4 and sorted(kept) == sorted(rows)
    assert {i: stored_as(m) for i, m in kept.items()} == {i: stored_as(m) for i, m in rows.items()}

    after = latency_of_pair(svc, "alex", None)
    assert pair.id not in reply_index._pending[uow]
    assert after == batch(svc)


def test_the_index_is_fed_what_was_stored_and_reads_the_store_for_rows_of_others(
    uow: UnitOfWork, tmp_path: Path
) -> None:
    svc = svc_on(uow, tmp_path)
    pair = add_pair(svc, name="alex", manager_email=ALEX, assistant_email=SAM,
                    timezone="Europe/Berlin")  # fmt: skip
    account = add_account(svc, pair="alex", name="m", provider="maildir", settings={"path": "x"})
    import_mail(svc, account.id, ListSource([msg("<a1@x>", SAM, ALEX, 0, "Budget")]))
    latency_of_pair(svc, "alex", None)
    index = cached_index(uow, pair.id)
    assert index is not None

    # This process stored the answer: the index takes the very message kept for it.
    import_mail(svc, account.id, ListSource([msg("<a2@x>", ALEX, SAM, 45, "Re: Budget",
                                                 in_reply_to="<a1@x>")]))  # fmt: skip
    kept = next(iter(reply_index._pending[uow][pair.id].values()))
    fed = latency_of_pair(svc, "alex", None)
    assert cached_index(uow, pair.id) is index
    assert any(m is kept for m in index._messages)
    assert (fed.summary.count, fed.summary.answered) == (1, 1)
    assert fed == batch(svc)

    # Another process (another unit of work on the same database) stores a row between
    # two of ours: what this one kept is not all there is, so the store is read.
    other = svc_on(UnitOfWork(uow.engine), tmp_path)
    import_mail(svc, account.id, ListSource([msg("<b1@x>", SAM, ALEX, 60, "Flights")]))
    import_mail(other, account.id, ListSource([msg("<b2@x>", ALEX, SAM, 70, "Re: Flights",
                                                   in_reply_to="<b1@x>")]))  # fmt: skip
    import_mail(svc, account.id, ListSource([msg("<c1@x>", SAM, ALEX, 80, "Visa")]))
    kept_ids = set(reply_index._pending[uow][pair.id])
    assert len(kept_ids) == 2
    both = latency_of_pair(svc, "alex", None)
    assert cached_index(uow, pair.id) is index
    assert len(index) == 5
    assert (both.summary.count, both.summary.answered, both.summary.open) == (3, 2, 1)
    assert both == batch(svc)


def test_no_rows_are_kept_without_an_index_past_the_bound_or_for_a_build(
    uow: UnitOfWork, tmp_path: Path
) -> None:
    svc = svc_on(uow, tmp_path)
    pair = add_pair(svc, name="alex", manager_email=ALEX, assistant_email=SAM)
    account = add_account(svc, pair="alex", name="m", provider="maildir", settings={"path": "x"})
    import_mail(svc, account.id, ListSource([msg("<a1@x>", SAM, ALEX, 0, "Budget")]))
    assert pair.id not in reply_index._pending.get(uow, {})  # no index yet: nothing kept
    latency_of_pair(svc, "alex", None)
    many = [msg(f"<m{k}@x>", SAM, ALEX, k, f"S{k}") for k in range(1, 40)]
    import_mail(svc, account.id, ListSource(many[:20]))
    assert len(reply_index._pending[uow][pair.id]) == 20
    bound = reply_index._PENDING_MAX
    reply_index._PENDING_MAX = 30
    try:
        import_mail(svc, account.id, ListSource(many[20:]))  # 39 > 30: none kept
    finally:
        reply_index._PENDING_MAX = bound
    assert pair.id not in reply_index._pending[uow]
    read = latency_of_pair(svc, "alex", None)
    assert read.summary.count == 40
    assert read == batch(svc)

    # Kept for an index that is then built again (its working time changed): the build
    # reads every row, and what was kept is dropped, not left behind.
    import_mail(svc, account.id, ListSource([msg("<late@x>", ALEX, SAM, 50, "Re: S1",
                                                 in_reply_to="<m1@x>")]))  # fmt: skip
    assert len(reply_index._pending[uow][pair.id]) == 1
    index = cached_index(uow, pair.id)
    update_pair_settings(svc, pair.id, {"timezone": "Europe/Berlin"})
    rebuilt = latency_of_pair(svc, "alex", None)
    assert cached_index(uow, pair.id) is not index
    assert pair.id not in reply_index._pending[uow]
    assert (rebuilt.summary.count, rebuilt.summary.answered) == (40, 1)
    assert rebuilt == batch(svc)
