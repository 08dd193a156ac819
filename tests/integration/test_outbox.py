"""The outbox over SQLite and PostgreSQL, delivering through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from assistant.adapters.channels.smtp import SmtpChannel
from assistant.domain.message_ids import message_id_for
from assistant.entrypoints.embedded import free_port
from assistant.services import outbox
from assistant.store.db import UnitOfWork
from assistant.store.tables import OutboxEntry
from config.settings import OutboxSettings
from tests.support.smtp import SmtpServer

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
SETTINGS = OutboxSettings(
    max_attempts=3, backoff_seconds=30, backoff_max_seconds=100, claim_timeout_seconds=60
)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def channels(server: SmtpServer) -> dict[str, outbox.Channel]:
    return {
        "smtp": SmtpChannel(
            server.host, server.port, "assistant-service@example.com", timeout=5, clock=lambda: T0
        )
    }


def add(uow: UnitOfWork, key: str = "changes:1", html: str = "") -> int | None:
    with uow.begin() as s:
        entry = outbox.enqueue(
            s, key=key, channel="smtp", recipient="sam@example.com", subject=f"Schedule: {key}",
            body_text="The board meeting moved.", body_html=html, payload={"batch": 1},
            pair_id=None, now=T0,
        )  # fmt: skip
        return entry.id if entry else None


def entry(uow: UnitOfWork, entry_id: int) -> OutboxEntry:
    with uow.read() as s:
        row = s.get(OutboxEntry, entry_id)
        assert row is not None
        s.expunge(row)  # keep its loaded values past the read's rollback
        return row


def test_same_key_twice_is_one_row(uow: UnitOfWork) -> None:
    first = add(uow, "k")
    assert first is not None
    assert add(uow, "k") is None
    with uow.begin() as s:  # twice in one transaction, too
        assert outbox.enqueue(
            s, key="k2", channel="smtp", recipient="a@example.com", subject="", body_text="",
            pair_id=None, now=T0,
        ) is not None  # fmt: skip
        assert outbox.enqueue(
            s, key="k2", channel="smtp", recipient="b@example.com", subject="", body_text="",
            pair_id=None, now=T0,
        ) is None  # fmt: skip
    with uow.read() as s:
        assert s.scalar(select(func.count()).select_from(OutboxEntry)) == 2
        assert s.scalar(select(OutboxEntry.recipient).where(OutboxEntry.idempotency_key == "k2")) == "a@example.com"
    assert entry(uow, first).state == "pending"


def test_drained_twice_is_sent_once(uow: UnitOfWork, smtp_server: SmtpServer) -> None:
    entry_id = add(uow, "changes:7", html="<p>The board meeting <b>moved</b>.</p>")
    assert entry_id is not None
    clock = Clock()
    first = outbox.drain(uow, channels(smtp_server), clock, SETTINGS)
    second = outbox.drain(uow, channels(smtp_server), clock, SETTINGS)
    assert (first.claimed, first.sent, first.next_attempt_at) == (1, 1, None)
    assert (second.claimed, second.sent) == (0, 0)
    [got] = smtp_server.wait_for(1)
    assert got.mail_from == "assistant-service@example.com" and got.rcpt_tos == ["sam@example.com"]
    msg = got.message
    assert msg["Message-ID"] == message_id_for("changes:7")
    assert msg["Subject"] == "Schedule: changes:7" and msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_type() == "multipart/alternative"
    assert "moved" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "<b>moved</b>" in msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    row = entry(uow, entry_id)
    assert (row.state, row.attempts, row.sent_at, row.claimed_until) == ("sent", 1, T0, None)


def test_temporary_failure_backs_off_then_sends_once(uow: UnitOfWork, smtp_server: SmtpServer) -> None:
    entry_id = add(uow)
    assert entry_id is not None
    smtp_server.fail_next(1)
    clock = Clock()
    report = outbox.drain(uow, channels(smtp_server), clock, SETTINGS)
    assert (report.claimed, report.retried, report.sent) == (1, 1, 0)
    assert report.next_attempt_at == T0 + timedelta(seconds=30)
    row = entry(uow, entry_id)
    assert (row.state, row.attempts, row.next_attempt_at) == ("pending", 1, T0 + timedelta(seconds=30))
    assert "451" in row.last_error

    clock.advance(29)  # not due yet
    assert outbox.drain(uow, channels(smtp_server), clock, SETTINGS).claimed == 0
    clock.advance(1)
    assert outbox.drain(uow, channels(smtp_server), clock, SETTINGS).sent == 1
    assert outbox.drain(uow, channels(smtp_server), clock, SETTINGS).claimed == 0
    assert smtp_server.refused == 1 and len(smtp_server.wait_for(1)) == 1
    row = entry(uow, entry_id)
    assert (row.state, row.attempts, row.sent_at, row.last_error) == ("sent", 2, clock.now, "")


def test_backoff_doubles_then_gives_up(uow: UnitOfWork, smtp_server: SmtpServer) -> None:
    entry_id = add(uow)
    assert entry_id is not None
    smtp_server.fail_next(3)
    clock = Clock()
    outcomes = []
    for wait in (0, 30, 60):  # the second failure waits twice as long as the first
        clock.advance(wait)
        r = outbox.drain(uow, channels(smtp_server), clock, SETTINGS)
        outcomes.append((r.claimed, r.retried, r.dead))
    assert outcomes == [(1, 1, 0), (1, 1, 0), (1, 0, 1)]
    row = entry(uow, entry_id)
    assert (row.state, row.attempts) == ("dead", 3) and "451" in row.last_error
    clock.advance(10_000)
    assert outbox.drain(uow, channels(smtp_server), clock, SETTINGS).claimed == 0
    assert smtp_server.messages == []


def test_permanent_failure_is_dead_at_once(uow: UnitOfWork, smtp_server: SmtpServer) -> None:
    entry_id = add(uow)
    assert entry_id is not None
    smtp_server.fail_next(1, "554 5.7.1 Message rejected")
    report = outbox.drain(uow, channels(smtp_server), Clock(), SETTINGS)
    assert (report.claimed, report.dead, report.next_attempt_at) == (1, 1, None)
    row = entry(uow, entry_id)
    assert (row.state, row.attempts) == ("dead", 1)
    assert row.last_error.startswith("SMTP 554") and "rejected" in row.last_error


def test_unreachable_server_and_unknown_channel(uow: UnitOfWork) -> None:
    closed = {"smtp": SmtpChannel("127.0.0.1", free_port(), "a@example.com", timeout=2)}
    smtp_id = add(uow, "a")
    with uow.begin() as s:
        other = outbox.enqueue(
            s, key="b", channel="telepathy", recipient="sam", subject="", body_text="x",
            pair_id=None, now=T0,
        )  # fmt: skip
        assert other is not None
        other_id = other.id
    report = outbox.drain(uow, closed, Clock(), SETTINGS)
    assert (report.claimed, report.retried, report.dead) == (2, 1, 1)
    assert smtp_id is not None and "cannot reach SMTP server" in entry(uow, smtp_id).last_error
    assert entry(uow, other_id).last_error == "no channel 'telepathy' is configured"


def test_a_dead_workers_claim_is_taken_again(uow: UnitOfWork, smtp_server: SmtpServer) -> None:
    entry_id = add(uow)
    assert outbox.claim_due(uow, T0, 10, timedelta(seconds=60)) == [entry_id]
    # ... and that worker died before sending.
    clock = Clock()
    clock.advance(30)  # the claim still holds: nobody else takes it
    assert outbox.drain(uow, channels(smtp_server), clock, SETTINGS).claimed == 0
    clock.advance(31)
    report = outbox.drain(uow, channels(smtp_server), clock, SETTINGS)
    assert (report.claimed, report.sent) == (1, 1)
    assert len(smtp_server.wait_for(1)) == 1


def test_a_message_that_kills_every_worker_ends_dead(uow: UnitOfWork) -> None:
    entry_id = add(uow)
    t = T0
    for _ in range(3):  # claimed, then the worker dies each time
        assert outbox.claim_due(uow, t, 10, timedelta(seconds=5), max_attempts=3) == [entry_id]
        t += timedelta(seconds=6)
    assert outbox.claim_due(uow, t, 10, timedelta(seconds=5), max_attempts=3) == []
    dead = entry(uow, entry_id)
    assert (dead.state, dead.attempts) == ("dead", 3)
    assert "stopped while sending" in dead.last_error


def test_a_sent_entry_is_never_sent_again(uow: UnitOfWork, smtp_server: SmtpServer) -> None:
    entry_id = add(uow)
    assert entry_id is not None
    clock = Clock()
    assert outbox.claim_due(uow, T0, 10, 60) == [entry_id]
    assert outbox.deliver(uow, entry_id, channels(smtp_server), clock, SETTINGS) == "sent"
    # a second worker holding the same id (a duplicate job) finds it sent
    assert outbox.deliver(uow, entry_id, channels(smtp_server), clock, SETTINGS) == "skipped"
    assert len(smtp_server.wait_for(1)) == 1


@pytest.mark.timeout(60)
def test_concurrent_drainers_send_each_entry_once(uow: UnitOfWork, smtp_server: SmtpServer) -> None:
    n = 50
    with uow.begin() as s:
        for i in range(n):
            outbox.enqueue(
                s, key=f"bulk:{i}", channel="smtp", recipient=f"a{i}@example.com", subject=str(i),
                body_text="x", pair_id=None, now=T0,
            )  # fmt: skip
    start = threading.Barrier(2)
    claimed: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def drainer(k: int) -> None:
        try:
            start.wait()
            while True:
                ids = outbox.claim_due(uow, T0, 3, 60)
                if not ids:
                    return
                claimed[k].extend(ids)
                for entry_id in ids:
                    outbox.deliver(uow, entry_id, channels(smtp_server), Clock(), SETTINGS)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drainer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(50)
    assert errors == []
    assert not set(claimed[0]) & set(claimed[1])
    assert claimed[0] and claimed[1], "both drainers should have taken a share"
    got = smtp_server.wait_for(n)
    assert len(got) == n
    assert len({m.message["Message-ID"] for m in got}) == n
    with uow.read() as s:
        states = s.execute(select(OutboxEntry.state, func.count()).group_by(OutboxEntry.state)).all()
        assert dict(states) == {"sent": n}
        assert s.scalar(select(func.max(OutboxEntry.attempts))) == 1
