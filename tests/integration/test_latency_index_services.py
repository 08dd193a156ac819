"""Nudges, the digest and the latency report read the pair's incremental ``LatencyIndex``
(issue 13, issue 16 point 4) and decide what the batch computation decides.

Two pairs with the same people get the same mail, batch by batch, as imports deliver it
(late arrivals, copies, auto-replies, threads by headers, by provider id and by subject
only, replies dated minutes ahead by a fast clock). After each import and again hours
later, pair A goes through the services (the index, fed only the new rows) and pair B
through the batch code the services ran before: every stored message of the lookback
threaded and measured again. The reminders queued, held and planned, the digest's
overdue messages and the latency report must be the same. The one exception, on purpose:
a thread joined only through mail older than the lookback (the last test).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from assistant.bootstrap import Service
from assistant.domain.latency import Direction, reply_latencies
from assistant.domain.model import MessageData
from assistant.domain.priorities import Level, rank_message
from assistant.services import reply_index
from assistant.services.digest import preview
from assistant.services.hours import pair_hours
from assistant.services.mail import (
    addresses,
    cached_index,
    import_mail,
    latency_of_pair,
    report,
    to_message,
)
from assistant.services.nudges import _queue, nudge
from assistant.services.pairs import add_account, add_pair
from assistant.services.priorities import add_rule, load_rules
from assistant.store.db import UnitOfWork
from assistant.store.tables import Message, Pair
from config.settings import LatencySettings, Settings
from connectors.base import MailDelta
from tests.support.deps import deps_for

START = datetime(2026, 10, 5, 6, 0, tzinfo=UTC)  # a Monday; lookback 14 days of 40
SAM, ALEX = "sam@example.com", "alex@example.com"
OTHERS = [f"p{k}@client.example" for k in range(6)]
SUBJECTS = ["Budget", "Flights", "Visa", "Board pack", "Hotel", "URGENT: contract", "Dinner"]


@dataclass
class ListSource:
    """A mailbox that hands over the messages given to it, as an import would."""

    messages: list[MessageData]

    def changes(self, token: str | None) -> MailDelta:
        return MailDelta(full=token is None, messages=tuple(self.messages), token="t")


def mailbox(seed: int) -> list[tuple[datetime, MessageData]]:
    """(arrival, message) of a pair's mail over 40 days, by arrival."""
    rng = random.Random(seed)
    out: list[tuple[datetime, MessageData]] = []
    for t in range(140):
        talk = rng.random()
        a, b = (SAM, ALEX) if talk < 0.7 else (rng.choice([SAM, ALEX]), rng.choice(OTHERS))
        if rng.random() < 0.5:
            a, b = b, a
        style = rng.random()  # bare: threaded by subject only; tid: the provider's thread id
        bare, tid = style < 0.2, f"T{t}" if 0.2 <= style < 0.3 else ""
        subject = rng.choice(SUBJECTS)
        at = START + timedelta(days=rng.uniform(0, 40))
        refs: tuple[str, ...] = ()
        for k in range(rng.randint(1, 6)):
            mid = f"m{t}.{k}@x"
            msg = MessageData(
                message_id=mid, sent_at=at, from_addr=a, to=(b,), subject=("Re: " if k else "") + subject,
                in_reply_to="" if bare or not refs else refs[-1],
                references=() if bare else refs, thread_id=tid,
            )  # fmt: skip
            arrival = at + timedelta(minutes=rng.uniform(1, 60))
            if rng.random() < 0.05:  # delivered late: after later mail
                arrival += timedelta(days=rng.uniform(0.5, 4))
            if rng.random() < 0.04:  # a fast clock: dated after it arrived
                msg = replace(msg, sent_at=arrival + timedelta(hours=rng.uniform(1, 72)))
            out.append((arrival, msg))
            if rng.random() < 0.05:  # a copy in another folder, another Message-ID
                copy = replace(msg, message_id=f"c{t}.{k}@x", folder="Archive")
                out.append((arrival + timedelta(hours=rng.uniform(1, 48)), copy))
            if rng.random() < 0.04:  # out of office
                ooo = MessageData(message_id=f"o{t}.{k}@x", sent_at=msg.sent_at + timedelta(seconds=5),
                                  from_addr=b, to=(a,), subject="Automatic reply: " + msg.subject,
                                  in_reply_to=mid, auto_reply=True)  # fmt: skip
                out.append((arrival + timedelta(seconds=30), ooo))
            refs = (*refs, mid)
            at += timedelta(minutes=rng.lognormvariate(4, 1.5)) + timedelta(seconds=1)
            if rng.random() < 0.85:
                a, b = b, a
    out.sort(key=lambda p: p[0])
    return out


def at_time(uow: UnitOfWork, now: datetime) -> Service:
    return Service(settings=Settings(), engine=uow.engine, uow=uow, clock=lambda: now)


# ------------------------------------------------- what the services did before (batch)


def window(uow: UnitOfWork, pair_id: int, now: datetime) -> tuple[list[MessageData], datetime]:
    since = now - timedelta(days=LatencySettings().lookback_days)
    with uow.read() as session:
        rows = session.scalars(
            select(Message).where(Message.pair_id == pair_id, Message.sent_at >= since)
            .order_by(Message.sent_at)
        )  # fmt: skip
        return [to_message(m) for m in rows], since


def nudge_batch(uow: UnitOfWork, pair_id: int, now: datetime) -> tuple[list[str], int, Any]:
    """The nudges as ``nudge`` decided them before the index: (keys queued, held, next due)."""
    settings = LatencySettings()
    messages, since = window(uow, pair_id, now)
    queued: list[str] = []
    held, next_due = 0, None
    if not messages:
        return queued, held, next_due
    with uow.begin() as session:
        pair = session.get(Pair, pair_id)
        assert pair is not None
        by_id = {m.message_id: m for m in messages}
        managers, assistants = addresses(pair)
        hours = pair_hours(pair, since.year, now.year + 1)
        rules = load_rules(session, pair_id)
        records = reply_latencies(messages, managers, assistants, now,
                                  working_minutes=hours.working_minutes)  # fmt: skip
        sla = float(pair.sla_minutes)
        answers = {r.reply_message_id for r in records
                   if r.direction is Direction.MANAGER_TO_ASSISTANT and r.answered}  # fmt: skip
        for r in records:
            if r.direction is not Direction.ASSISTANT_TO_MANAGER or r.answered:
                continue
            if r.message_id in answers:
                continue
            waited = r.waiting_working_minutes or 0.0
            stages = ["breach"] if waited >= sla else (
                ["reminder"] if waited >= settings.nudge_share * sla else []
            )  # fmt: skip
            upcoming = [hours.instant_after(r.sent_at, share * sla)
                        for share in (settings.nudge_share, 1.0) if waited < share * sla]  # fmt: skip
            if upcoming:
                next_due = min([next_due or upcoming[0], *upcoming])
            if not stages:
                continue
            m = by_id[r.message_id]
            urgent = rank_message(r.subject, [m.from_addr, *m.to, *m.cc], rules, pair.locale)
            if not hours.is_working(now) and urgent.level is not Level.HIGH:
                held += 1
                nxt = hours.next_working_instant(now)
                next_due = min(next_due or nxt, nxt)
                continue
            for stage in stages:
                _queue(session, pair, r, stage, waited, sla, urgent.reasons, now, queued, [])
    return queued, held, next_due


def overdue_batch(uow: UnitOfWork, pair_id: int, now: datetime) -> list[dict[str, Any]]:
    """The digest's overdue messages as ``_open_messages`` found them before the index."""
    messages, since = window(uow, pair_id, now)
    with uow.read() as session:
        pair = session.get(Pair, pair_id)
        assert pair is not None
        managers, assistants = addresses(pair)
        hours = pair_hours(pair, since.year, now.year + 1)
        sla = pair.sla_minutes
    records = reply_latencies(messages, managers, assistants, now,
                              working_minutes=hours.working_minutes)  # fmt: skip
    return [
        {"subject": r.subject, "sent_at": r.sent_at.isoformat(),
         "waited_working_minutes": round(r.waiting_working_minutes or 0.0, 1)}
        for r in records
        if r.direction is Direction.ASSISTANT_TO_MANAGER and not r.answered
        and (r.waiting_working_minutes or 0.0) >= sla
    ]  # fmt: skip


def report_batch(uow: UnitOfWork, pair_id: int, now: datetime) -> Any:
    with uow.read() as session:
        pair = session.get(Pair, pair_id)
        assert pair is not None
        rows = session.scalars(select(Message).where(Message.pair_id == pair_id)
                               .order_by(Message.sent_at, Message.id))  # fmt: skip
        messages = [to_message(m) for m in rows]
        managers, assistants = addresses(pair)
        hours = pair_hours(pair, messages[0].sent_at.year, now.year + 1)
        return report(messages, managers, assistants, now, pair.sla_minutes, None,
                      hours.working_minutes, pair.timezone)  # fmt: skip


# ------------------------------------------------------------------------------ test


@pytest.mark.parametrize(("seed", "settle"), [(1, reply_index.SETTLE_SECONDS), (2, 0.0)])
def test_services_on_the_index_decide_as_the_batch_did(
    uow: UnitOfWork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, settle: float
) -> None:
    # settle 0: every row fed before is settled (as ten minutes after a start), and only
    # the rows since are counted on each call
    monkeypatch.setattr(reply_index, "SETTLE_SECONDS", settle)
    accounts = {}
    for name in ("a", "b"):
        at_start = deps_for(uow, START)
        pair = add_pair(at_start, name=name, manager_email=ALEX, assistant_email=SAM,
                        timezone="Europe/Berlin")  # fmt: skip
        add_rule(at_start, pair=name, kind="keyword", pattern="urgent", level="high")
        account = add_account(at_start, pair=name, name="mail", provider="maildir",
                              settings={"path": str(tmp_path)})  # fmt: skip
        accounts[name] = (pair.id, account.id)
    (a, a_account), (b, b_account) = accounts["a"], accounts["b"]
    mail = mailbox(seed)
    batches = [mail[i : i + 25] for i in range(0, len(mail), 25)]
    seen = {"queued": 0, "held": 0, "overdue": 0, "future": 0}
    index = None
    for n, batch in enumerate(batches):
        messages = [m for _, m in batch]
        arrived = batch[-1][0]
        following = batches[n + 1][-1][0] if n + 1 < len(batches) else arrived + timedelta(days=1)
        seen["future"] += sum(m.sent_at > arrived for m in messages)
        for account in (a_account, b_account):
            import_mail(at_time(uow, arrived), account, ListSource(messages))
        # At the import, then hours later while no mail comes (open messages age).
        for now in (arrived, arrived + (following - arrived) / 3, following - timedelta(minutes=1)):
            deps = at_time(uow, now)
            got = nudge(deps, a)
            if index is None:  # the nudges build the index: nothing else read the mail yet
                index = cached_index(uow, a)
                assert index is not None
            want_keys, want_held, want_next = nudge_batch(uow, b, now)
            assert [k.replace(f"nudge:{a}:", "") for k in got.queued] == [
                k.replace(f"nudge:{b}:", "") for k in want_keys
            ], now
            assert (got.held, got.next_due) == (want_held, want_next), now
            overdue = preview(deps, a).data["overdue"]
            assert overdue == overdue_batch(uow, b, now), now
            seen["queued"] += len(got.queued)
            seen["held"] += got.held
            seen["overdue"] += len(overdue)
        assert cached_index(uow, a) is index, "fed, never built again"
        assert latency_of_pair(at_time(uow, now), a, None) == report_batch(uow, b, now)
    # The run went through what it is meant to compare.
    assert seen["queued"] > 10 and seen["held"] > 0 and seen["overdue"] > 0, seen
    assert seen["future"] > 0, seen


def test_a_thread_joined_through_mail_older_than_the_lookback_is_seen_whole(
    uow: UnitOfWork, tmp_path: Path
) -> None:
    """The one difference from the batch code before: it threaded the lookback's mail alone,
    so an answer linked to its question only through older mail did not count; the index
    threads the whole mailbox, as the latency report does."""
    now = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday, 11:00 in Berlin
    ids = {}
    for name in ("a", "b"):
        at_start = deps_for(uow, START)
        pair = add_pair(at_start, name=name, manager_email=ALEX, assistant_email=SAM,
                        timezone="Europe/Berlin")  # fmt: skip
        account = add_account(at_start, pair=name, name="mail", provider="maildir",
                              settings={"path": str(tmp_path)})  # fmt: skip
        ids[name] = (pair.id, account.id)
    day = timedelta(days=1)
    mail = [
        # 16 and 15 days ago: the plan, and an answer with no headers (joined by subject)
        MessageData("w@x", now - 16 * day, ALEX, (SAM,), subject="Plan"),
        MessageData("z@x", now - 15 * day, SAM, (ALEX,), subject="Re: Plan"),
        # yesterday: the assistant refers to the plan; the manager answers, quoting z
        MessageData(
            "x@x",
            now - day,
            SAM,
            (ALEX,),
            subject="Re: Plan",
            in_reply_to="w@x",
            references=("w@x",),
        ),
        MessageData(
            "y@x",
            now - day + timedelta(minutes=10),
            ALEX,
            (SAM,),
            subject="Re: Plan",
            in_reply_to="z@x",
            references=("z@x",),
        ),
    ]
    for _, account in ids.values():
        import_mail(at_time(uow, now), account, ListSource(mail))
    (a, _), (b, _) = ids["a"], ids["b"]
    assert nudge(at_time(uow, now), a).queued == []
    before, _, _ = nudge_batch(uow, b, now)
    assert {k.split(":")[3] for k in before} == {"breach"}, "before: x looked unanswered"
    [x] = [m for m in latency_of_pair(at_time(uow, now), a, None).messages if m.id == "x@x"]
    assert x.replied_at == now - day + timedelta(minutes=10)
