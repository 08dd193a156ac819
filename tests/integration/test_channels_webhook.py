"""The webhook channel through the real outbox (SQLite and PostgreSQL) to a real HTTP
receiver on 127.0.0.1: delivery once, back-off, Retry-After, dead letters, signatures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from assistant.adapters.channels.webhook import (
    SIGNATURE_HEADER,
    SignatureError,
    WebhookChannel,
    delivery_id,
    parse_retry_after,
    sign,
    verify_signature,
)
from assistant.entrypoints.embedded import free_port
from assistant.services import outbox
from assistant.services.outbox import OutboxMessage
from assistant.store.db import UnitOfWork
from assistant.store.tables import OutboxEntry
from config.settings import ConfigError, OutboxSettings
from tests.support.http_receiver import Answer, HttpReceiver, Request

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
SECRET = "whsec_test_0123456789"
SETTINGS = OutboxSettings(
    max_attempts=3, backoff_seconds=30, backoff_max_seconds=100, claim_timeout_seconds=60
)
CHANGES = [{"kind": "moved", "summary": "Board meeting", "before": "09:00", "after": "11:00"}]


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as r:
        yield r


def webhook(url: str, clock: Clock, timeout: float = 2) -> dict[str, outbox.Channel]:
    return {"webhook": WebhookChannel(url, SECRET, timeout=timeout, clock=clock)}


def add(uow: UnitOfWork, key: str = "changes:1:sam@example.com:webhook") -> int:
    with uow.begin() as s:
        entry = outbox.enqueue(
            s, key=key, channel="webhook", recipient="sam@example.com",
            subject="Schedule: board meeting moved", body_text="The board meeting moved to 11:00.",
            body_html="<p>The board meeting <b>moved</b>.</p>",
            payload={"batch_id": 1, "kinds": ["moved"], "changes": CHANGES},
            pair_id=None, now=T0,
        )  # fmt: skip
        assert entry is not None
        return entry.id


def entry(uow: UnitOfWork, entry_id: int) -> OutboxEntry:
    with uow.read() as s:
        row = s.get(OutboxEntry, entry_id)
        assert row is not None
        s.expunge(row)
        return row


def message(key: str = "k", **payload: object) -> OutboxMessage:
    return OutboxMessage(
        key=key, channel="webhook", recipient="sam@example.com", subject="S", body_text="T",
        payload=payload,
    )  # fmt: skip


# ------------------------------------------------------------------ through the outbox


def test_drained_twice_is_delivered_once_signed_and_documented(
    uow: UnitOfWork, receiver: HttpReceiver
) -> None:
    entry_id = add(uow)
    clock = Clock()
    first = outbox.drain(uow, webhook(receiver.url(), clock), clock, SETTINGS)
    second = outbox.drain(uow, webhook(receiver.url(), clock), clock, SETTINGS)
    assert (first.claimed, first.sent, second.claimed) == (1, 1, 0)
    [req] = receiver.wait_for(1)
    assert (req.method, req.path) == ("POST", "/hook")
    assert req.headers["Content-Type"] == "application/json; charset=utf-8"
    assert req.headers["Idempotency-Key"] == "changes:1:sam@example.com:webhook"
    assert req.headers["X-Exec-Assistant-Payload-Version"] == "1"
    assert verify_signature(SECRET, req.headers[SIGNATURE_HEADER], req.body, now=T0) == int(
        T0.timestamp()
    )
    body = json.loads(req.body)
    created = T0.isoformat() if hasattr(OutboxMessage, "created_at") else None
    assert body == {
        "version": 1,
        "type": "notification",
        "id": "changes:1:sam@example.com:webhook",
        "pair_id": None,
        "recipient": "sam@example.com",
        "subject": "Schedule: board meeting moved",
        "text": "The board meeting moved to 11:00.",
        "html": "<p>The board meeting <b>moved</b>.</p>",
        "changes": CHANGES,
        "data": {"batch_id": 1, "kinds": ["moved"]},
        "created_at": created,
    }
    row = entry(uow, entry_id)
    assert (row.state, row.attempts, row.sent_at) == ("sent", 1, T0)
    assert len(receiver.requests) == 1


def test_500_then_200_delivers_once_after_backoff(uow: UnitOfWork, receiver: HttpReceiver) -> None:
    entry_id = add(uow)
    receiver.answer(500, body=b"<html><body>\n  upstream   exploded\n</body></html>")
    clock = Clock()
    report = outbox.drain(uow, webhook(receiver.url(), clock), clock, SETTINGS)
    assert (report.retried, report.next_attempt_at) == (1, T0 + timedelta(seconds=30))
    row = entry(uow, entry_id)
    assert row.state == "pending"
    assert row.last_error.startswith(f"webhook http://127.0.0.1:{receiver.port}: HTTP 500")
    assert "upstream exploded" in row.last_error and "/hook" not in row.last_error
    clock.advance(29)
    assert outbox.drain(uow, webhook(receiver.url(), clock), clock, SETTINGS).claimed == 0
    clock.advance(1)
    assert outbox.drain(uow, webhook(receiver.url(), clock), clock, SETTINGS).sent == 1
    assert outbox.drain(uow, webhook(receiver.url(), clock), clock, SETTINGS).claimed == 0
    first, second = receiver.wait_for(2)
    assert len(receiver.requests) == 2
    # the same document under the same key, signed afresh at the time of each attempt
    assert first.body == second.body
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert verify_signature(SECRET, second.headers[SIGNATURE_HEADER], second.body, now=clock.now)
    assert first.headers[SIGNATURE_HEADER] != second.headers[SIGNATURE_HEADER]
    row = entry(uow, entry_id)
    assert (row.state, row.attempts, row.last_error) == ("sent", 2, "")


@pytest.mark.parametrize(
    ("status", "retry_after", "wait"),
    [
        (429, "120", 120),  # longer than the back-off: honoured
        (503, format_datetime(T0 + timedelta(seconds=90), usegmt=True), 90),  # an HTTP date
        (408, "5", 30),  # shorter than the back-off: the back-off wins
    ],
)
def test_retry_after_is_honoured(
    uow: UnitOfWork, receiver: HttpReceiver, status: int, retry_after: str, wait: int
) -> None:
    entry_id = add(uow)
    receiver.answer(status, {"Retry-After": retry_after})
    clock = Clock()
    report = outbox.drain(uow, webhook(receiver.url(), clock), clock, SETTINGS)
    assert report.retried == 1
    assert entry(uow, entry_id).next_attempt_at == T0 + timedelta(seconds=wait)
    clock.advance(wait - 1)
    assert outbox.drain(uow, webhook(receiver.url(), clock), clock, SETTINGS).claimed == 0
    clock.advance(1)
    assert outbox.drain(uow, webhook(receiver.url(), clock), clock, SETTINGS).sent == 1
    assert len(receiver.requests) == 2


def test_400_is_dead_at_once(uow: UnitOfWork, receiver: HttpReceiver) -> None:
    entry_id = add(uow)
    receiver.answer(400, body=b'{"error": "unknown recipient"}')
    clock = Clock()
    report = outbox.drain(uow, webhook(receiver.url(), clock), clock, SETTINGS)
    assert (report.dead, report.next_attempt_at) == (1, None)
    row = entry(uow, entry_id)
    assert (row.state, row.attempts) == ("dead", 1)
    assert "HTTP 400 Bad Request" in row.last_error and "unknown recipient" in row.last_error
    clock.advance(10_000)
    assert outbox.drain(uow, webhook(receiver.url(), clock), clock, SETTINGS).claimed == 0
    assert len(receiver.requests) == 1


def test_a_hung_receiver_times_out_and_its_duplicate_is_dropped(
    uow: UnitOfWork, receiver: HttpReceiver
) -> None:
    """The first request arrives but its answer never does: the retry carries the same
    Idempotency-Key, so a receiver that verifies and deduplicates processes it once."""
    clock = Clock()
    processed: list[str] = []

    def verifying_receiver(request: Request) -> Answer:
        try:
            verify_signature(SECRET, request.headers[SIGNATURE_HEADER], request.body, clock())
        except SignatureError as exc:
            return Answer(400, body=str(exc).encode())
        key = request.headers["Idempotency-Key"]
        if key not in processed:
            processed.append(key)
        return Answer(200)

    receiver.default = verifying_receiver
    entry_id = add(uow)
    receiver.hang()
    # process the hung request as a real receiver would, then never answer it
    report = outbox.drain(uow, webhook(receiver.url(), clock, timeout=0.5), clock, SETTINGS)
    assert report.retried == 1
    assert "no answer within 0.5s" in entry(uow, entry_id).last_error
    verifying_receiver(receiver.requests[0])
    clock.advance(30)
    assert outbox.drain(uow, webhook(receiver.url(), clock), clock, SETTINGS).sent == 1
    assert len(receiver.requests) == 2
    assert processed == ["changes:1:sam@example.com:webhook"]
    assert entry(uow, entry_id).state == "sent"


def test_refused_connection_is_temporary(uow: UnitOfWork) -> None:
    entry_id = add(uow)
    clock = Clock()
    url = f"http://127.0.0.1:{free_port()}/hook?token=s3cret"
    assert outbox.drain(uow, webhook(url, clock), clock, SETTINGS).retried == 1
    error = entry(uow, entry_id).last_error
    assert error.startswith("webhook http://127.0.0.1:") and "cannot connect" in error
    assert "s3cret" not in error


# ------------------------------------------------------------------ the channel alone


@pytest.mark.parametrize("status", [301, 302, 401, 403, 404, 409, 410, 422])
def test_other_statuses_are_permanent(receiver: HttpReceiver, status: int) -> None:
    receiver.answer(status, {"Location": "http://example.com/"})
    channel = WebhookChannel(receiver.url(), SECRET, timeout=2, clock=Clock())
    with pytest.raises(outbox.DeliveryError) as info:
        channel.send(message())
    assert info.value.permanent and f"HTTP {status}" in info.value.message
    assert len(receiver.requests) == 1  # a redirect is not followed


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_temporary_statuses(receiver: HttpReceiver, status: int) -> None:
    receiver.answer(status)
    channel = WebhookChannel(receiver.url(), SECRET, timeout=2, clock=Clock())
    with pytest.raises(outbox.DeliveryError) as info:
        channel.send(message())
    assert not info.value.permanent and info.value.retry_after is None


def test_any_2xx_is_delivered(receiver: HttpReceiver) -> None:
    receiver.answer(202)
    receiver.answer(204)
    channel = WebhookChannel(receiver.url(), SECRET, timeout=2, clock=Clock())
    channel.send(message("a"))
    channel.send(message("b"))
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == ["a", "b"]


def test_payload_reads_pair_and_creation_time_from_the_payload_when_given() -> None:
    channel = WebhookChannel("https://hooks.example.com/x", SECRET, clock=Clock())
    _, body = channel.request_for(message(pair_id=7, created_at="2026-11-24T08:59:00+00:00"), T0)
    doc = json.loads(body)
    assert (doc["pair_id"], doc["created_at"], doc["changes"], doc["data"]) == (
        7, "2026-11-24T08:59:00+00:00", None, {},
    )  # fmt: skip


def test_keys_unfit_for_a_header_are_hashed() -> None:
    assert delivery_id("changes:1:sam@example.com:webhook") == "changes:1:sam@example.com:webhook"
    hashed = delivery_id("changes:1:jürgen@example.com:webhook")
    assert hashed.startswith("sha256:") and hashed.isascii() and len(hashed) == 71
    assert delivery_id("x" * 300).startswith("sha256:")
    _, body = WebhookChannel("https://h.example/", SECRET).request_for(message("a\nb"), T0)
    assert json.loads(body)["id"] == delivery_id("a\nb")


def test_bad_configuration_is_refused_at_construction() -> None:
    with pytest.raises(ConfigError) as info:
        WebhookChannel("ftp://example.com/x", "", timeout=0)
    assert [key for key, _ in info.value.problems] == [
        "webhook.url", "webhook.secret", "webhook.timeout",
    ]  # fmt: skip
    with pytest.raises(ConfigError):
        WebhookChannel("https:///no-host", SECRET)
    channel = WebhookChannel("https://user:pw@hooks.example.com/T0K3N?sig=abc", SECRET)
    assert repr(channel) == "WebhookChannel(https://hooks.example.com)"
    assert SECRET not in repr(vars(channel))


# ------------------------------------------------------------------ signatures


def test_signature_verifies_and_rejects_tampering_and_replays() -> None:
    body = b'{"id":"k","text":"moved"}'
    ts = int(T0.timestamp())
    header = sign(SECRET, ts, body)
    assert verify_signature(SECRET, header, body, now=T0) == ts
    assert verify_signature(SECRET, header, body, now=T0 + timedelta(seconds=300)) == ts
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify_signature(SECRET, header, body.replace(b"moved", b"moveD"), now=T0)
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify_signature("another secret", header, body, now=T0)
    with pytest.raises(SignatureError, match="301s old"):
        verify_signature(SECRET, header, body, now=T0 + timedelta(seconds=301))
    with pytest.raises(SignatureError, match="far in the future"):
        verify_signature(SECRET, header, body, now=T0 - timedelta(minutes=10))
    # a replay with a fresh timestamp but the old signature does not verify
    forged = header.replace(f"t={ts}", f"t={ts + 600}")
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify_signature(SECRET, forged, body, now=T0 + timedelta(seconds=600))
    assert verify_signature(SECRET, header, body, now=T0 + timedelta(hours=1), tolerance=3600)


def test_signature_header_forms() -> None:
    body = b"{}"
    ts = int(T0.timestamp())
    good = sign(SECRET, ts, body)
    v1 = good.split("v1=")[1]
    # several v1 (a secret being rotated) and unknown schemes are fine, in any order
    assert verify_signature(SECRET, f"v0=zz,v1={'0' * 64}, v1={v1},t={ts}", body, now=T0) == ts
    for header, why in [
        (None, "no X-Exec-Assistant-Signature header"),
        ("", "no X-Exec-Assistant-Signature header"),
        (f"v1={v1}", "no valid timestamp"),
        (f"t=abc,v1={v1}", "no valid timestamp"),
        (f"t={ts},t={ts},v1={v1}", "no valid timestamp"),
        (f"t={ts}", "no v1 signature"),
        ("garbage", "no valid timestamp"),
    ]:
        with pytest.raises(SignatureError, match=why):
            verify_signature(SECRET, header, body, now=T0)
    assert verify_signature(SECRET.encode(), good, body, now=T0) == ts


def test_retry_after_values() -> None:
    assert parse_retry_after("120", T0) == 120
    assert parse_retry_after(" 1.5 ", T0) == 1.5
    assert parse_retry_after("-3", T0) == 0
    assert parse_retry_after("99999999", T0) == 86_400
    assert parse_retry_after("Tue, 24 Nov 2026 09:02:00 GMT", T0) == 120
    assert parse_retry_after("Tue, 24 Nov 2026 08:00:00 GMT", T0) == 0
    for junk in (None, "", "soon", "nan"):
        assert parse_retry_after(junk, T0) is None
