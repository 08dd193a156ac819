"""The apprise chat channel: through the real outbox (SQLite and PostgreSQL) to a real HTTP
receiver on 127.0.0.1 via apprise's json://, form:// and xml:// services; chat services
that cannot be reached offline (Telegram, Slack...) are checked for URL validation only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs
from xml.etree import ElementTree

import apprise
import pytest

from assistant.adapters.channels.chat import AppriseChannel, fit
from assistant.entrypoints.embedded import free_port
from assistant.services import outbox
from assistant.services.outbox import DeliveryError, OutboxMessage
from assistant.store.db import UnitOfWork
from assistant.store.tables import OutboxEntry
from config.settings import ConfigError, OutboxSettings
from tests.support.http_receiver import HttpReceiver, Request

pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
SETTINGS = OutboxSettings(
    max_attempts=3, backoff_seconds=30, backoff_max_seconds=100, claim_timeout_seconds=60
)
TEXT = "Board meeting moved: 09:00 → 11:00.\nWas: Room 4 — Стало: Room 7 <b>&"
TELEGRAM = "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-1001234567890/"
SLACK = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general"


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


def chat(*urls: str) -> dict[str, outbox.Channel]:
    return {"chat": AppriseChannel(list(urls))}


def json_url(r: HttpReceiver, path: str = "/chat") -> str:
    return f"json://127.0.0.1:{r.port}{path}"


def add(uow: UnitOfWork, key: str = "changes:1:sam@example.com:chat") -> int:
    with uow.begin() as s:
        entry = outbox.enqueue(
            s, key=key, channel="chat", recipient="sam@example.com",
            subject="Schedule:\n  board meeting moved", body_text=TEXT,
            body_html="<p>not for chat</p>", payload={"batch_id": 1}, pair_id=None, now=T0,
        )  # fmt: skip
        assert entry is not None
        return entry.id


def entry(uow: UnitOfWork, entry_id: int) -> OutboxEntry:
    with uow.read() as s:
        row = s.get(OutboxEntry, entry_id)
        assert row is not None
        s.expunge(row)
        return row


def message(key: str = "k", subject: str = "Schedule", text: str = TEXT) -> OutboxMessage:
    return OutboxMessage(key=key, channel="chat", recipient="", subject=subject, body_text=text)


def as_json(request: Request) -> dict[str, object]:
    doc: dict[str, object] = json.loads(request.body)
    return doc


# ------------------------------------------------------------------ through the outbox


def test_drained_twice_is_delivered_once(uow: UnitOfWork, receiver: HttpReceiver) -> None:
    entry_id = add(uow)
    clock = Clock()
    channels = chat(json_url(receiver))
    first = outbox.drain(uow, channels, clock, SETTINGS)
    second = outbox.drain(uow, channels, clock, SETTINGS)
    assert (first.claimed, first.sent, second.claimed) == (1, 1, 0)
    [req] = receiver.wait_for(1)
    assert (req.method, req.path) == ("POST", "/chat")
    assert req.headers["Content-Type"] == "application/json"
    assert as_json(req) == {
        "version": "1.0",
        "title": "Schedule: board meeting moved",  # on one line
        "message": TEXT,  # the plain text, not the HTML
        "attachments": [],
        "type": "info",
    }
    assert (entry(uow, entry_id).state, len(receiver.requests)) == ("sent", 1)


def test_500_then_200_delivers_once_after_backoff(uow: UnitOfWork, receiver: HttpReceiver) -> None:
    entry_id = add(uow)
    receiver.answer(500)
    clock = Clock()
    channels = chat(json_url(receiver, "/chat?-token=s3cr3tvalue"))  # -x: a query argument
    report = outbox.drain(uow, channels, clock, SETTINGS)
    assert (report.retried, report.next_attempt_at) == (1, T0 + timedelta(seconds=30))
    row = entry(uow, entry_id)
    assert row.state == "pending" and "error=500" in row.last_error
    assert row.last_error.startswith(f"apprise: json://127.0.0.1:{receiver.port}/chat:")
    assert "s3cr3tvalue" not in row.last_error
    clock.advance(29)
    assert outbox.drain(uow, channels, clock, SETTINGS).claimed == 0
    clock.advance(1)
    assert outbox.drain(uow, channels, clock, SETTINGS).sent == 1
    assert outbox.drain(uow, channels, clock, SETTINGS).claimed == 0
    first, second = receiver.wait_for(2)
    assert len(receiver.requests) == 2 and first.body == second.body
    assert parse_qs(second.path.partition("?")[2]) == {"token": ["s3cr3tvalue"]}
    assert (entry(uow, entry_id).state, entry(uow, entry_id).attempts) == ("sent", 2)


def test_400_is_retried_then_dead(uow: UnitOfWork, receiver: HttpReceiver) -> None:
    """apprise reports only success or failure: a refusal is retried like an outage,
    and the entry is dead after the outbox's maximum attempts."""
    entry_id = add(uow)
    receiver.answer(400, times=3)
    clock = Clock()
    channels = chat(json_url(receiver))
    outcomes = []
    for wait in (0, 30, 60):
        clock.advance(wait)
        r = outbox.drain(uow, channels, clock, SETTINGS)
        outcomes.append((r.retried, r.dead))
    assert outcomes == [(1, 0), (1, 0), (0, 1)]
    row = entry(uow, entry_id)
    assert (row.state, row.attempts) == ("dead", 3) and "error=400" in row.last_error
    assert len(receiver.requests) == 3


def test_several_urls_a_retry_skips_those_that_took_it(
    uow: UnitOfWork, receiver: HttpReceiver
) -> None:
    entry_id = add(uow)
    receiver.answer(200)  # /a takes it (the URLs are tried in order)
    receiver.answer(503)  # /b does not
    clock = Clock()
    channels = chat(json_url(receiver, "/a"), json_url(receiver, "/b"))
    assert outbox.drain(uow, channels, clock, SETTINGS).retried == 1
    assert f"json://127.0.0.1:{receiver.port}/b:" in entry(uow, entry_id).last_error
    clock.advance(30)
    assert outbox.drain(uow, channels, clock, SETTINGS).sent == 1
    assert [r.path for r in receiver.requests] == ["/a", "/b", "/b"]


# ------------------------------------------------------------------ the channel alone


def test_form_and_xml_services_receive_title_and_text(receiver: HttpReceiver) -> None:
    port = receiver.port
    channel = AppriseChannel([f"form://127.0.0.1:{port}/form", f"xml://127.0.0.1:{port}/xml"])
    channel.send(message(subject="Schedule: board moved"))
    form, xml = receiver.wait_for(2)
    assert form.headers["Content-Type"] == "application/x-www-form-urlencoded"
    fields = parse_qs(form.body.decode())
    assert (fields["title"], fields["message"]) == (["Schedule: board moved"], [TEXT])
    assert xml.headers["Content-Type"] == "application/xml"
    doc = ElementTree.fromstring(xml.body)
    [note] = [el for el in doc.iter() if el.tag.endswith("Notification")]
    assert note.findtext("Subject") == "Schedule: board moved"
    assert note.findtext("Message") == TEXT


def test_a_long_text_is_trimmed_to_what_the_service_takes(receiver: HttpReceiver) -> None:
    lines = [f"{i:05d} a change to the schedule, before and after" for i in range(2000)]
    channel = AppriseChannel([json_url(receiver)])
    channel.send(message(text="\n".join(lines)))
    sent = as_json(receiver.wait_for(1)[0])["message"]
    assert isinstance(sent, str)
    assert 32_000 < len(sent) <= 32_768  # NotifyJSON.body_maxlen
    assert sent.endswith("before and after\n…")  # cut at a line, marked


def test_trimming_for_chat_services_with_small_limits() -> None:
    telegram = apprise.Apprise.instantiate(TELEGRAM)
    assert telegram is not None
    assert (telegram.body_maxlen, telegram.title_maxlen) == (4096, 0)  # the title goes in the body
    title, body = fit(telegram, "Schedule:   moved", "x" * 10_000)
    assert title == "Schedule: moved"
    assert len(title) + 2 + len(body) <= 4096 and body.endswith("\n…")
    assert fit(telegram, "S", "short") == ("S", "short")
    slack = apprise.Apprise.instantiate(SLACK)
    assert slack is not None
    title, body = fit(slack, "T" * 300, "y" * 40_000)
    assert len(title) == 250 and title.endswith("…") and len(body) == 35_000


def test_unreachable_and_hung_services_are_temporary(receiver: HttpReceiver) -> None:
    refused = AppriseChannel([f"json://127.0.0.1:{free_port()}/x?token=abcdef123456"])
    with pytest.raises(DeliveryError) as info:
        refused.send(message())
    assert not info.value.permanent and "Connection error" in info.value.message
    assert "abcdef123456" not in info.value.message
    receiver.hang()
    hung = AppriseChannel([json_url(receiver) + "?rto=0.5&cto=0.5"])
    with pytest.raises(DeliveryError) as info:
        hung.send(message())
    assert not info.value.permanent


# ------------------------------------------------------------------ URL validation


def test_chat_service_urls_are_validated_at_construction() -> None:
    channel = AppriseChannel([TELEGRAM, SLACK, "matrix://bot:pa55word@matrix.example.com/#ops"])
    shown = repr(channel)
    assert shown.startswith("AppriseChannel(tgram://") and "slack://" in shown
    for secret in ("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "TIiajkdnlazkcOXrIdevi7FQ", "pa55word"):
        assert secret not in shown


def test_malformed_urls_are_a_configuration_error_listing_each() -> None:
    with pytest.raises(ConfigError) as info:
        AppriseChannel(
            [
                TELEGRAM,
                "tgram://AAHdqTcvCH1vGWJxf-not-a-token/",
                "slack://T1JJ3T3L2/",
                "telepathy://me",
                "just some text",
                "msteams://webhook-secret-abc",
            ]
        )
    problems = dict(info.value.problems)
    assert sorted(problems) == [f"chat.urls[{i}]" for i in (1, 2, 3, 4, 5)]
    assert "apprise refuses this tgram:// URL" in problems["chat.urls[1]"]
    assert "apprise refuses this slack:// URL" in problems["chat.urls[2]"]
    assert problems["chat.urls[3]"] == "telepathy:// is not a service apprise knows"
    assert problems["chat.urls[4]"].startswith("not an apprise URL")
    text = str(info.value)
    assert "AAHdqTcvCH1vGWJxf" not in text and "webhook-secret-abc" not in text
    with pytest.raises(ConfigError, match="at least one apprise URL"):
        AppriseChannel([])
    with pytest.raises(ConfigError, match=r"notify\.telegram\[0\]"):
        AppriseChannel("tgram://x/", config_key="notify.telegram")


def test_the_reason_is_kept_when_the_log_shows_errors_only(
    uow: UnitOfWork, receiver: HttpReceiver
) -> None:
    """The CLI logs at ERROR (``assistant sync``): apprise's WARNING that says why a chat
    message failed must still reach the outbox entry (it was "failure", nothing more), and
    the log itself must not print it."""
    import logging

    from assistant.bootstrap import configure_logging

    root = logging.getLogger()
    saved = (root.level, [h.level for h in root.handlers],
             logging.getLogger("apprise").level)  # fmt: skip
    configure_logging("ERROR")
    try:
        entry_id = add(uow)
        receiver.answer(500)
        outbox.drain(uow, chat(json_url(receiver)), Clock(), SETTINGS)
        assert "error=500" in entry(uow, entry_id).last_error
        assert all(h.level >= logging.ERROR for h in root.handlers)
    finally:
        root.setLevel(saved[0])
        for h, level in zip(root.handlers, saved[1], strict=False):
            h.setLevel(level)
        logging.getLogger("apprise").setLevel(saved[2])
