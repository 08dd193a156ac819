"""Pure parts of the outbox and the SMTP channel: back-off, Message-ID, the mail built."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from assistant.adapters.channels.smtp import SmtpChannel
from assistant.domain.message_ids import message_id_for
from assistant.services.outbox import DrainReport, OutboxMessage, backoff_delay
from config.settings import OutboxSettings

S = OutboxSettings(max_attempts=10, backoff_seconds=30, backoff_max_seconds=600, claim_timeout_seconds=60)


@pytest.mark.parametrize(
    ("attempts", "retry_after", "expected"),
    [
        (1, None, 30), (2, None, 60), (3, None, 120), (5, None, 480), (6, None, 600), (9, None, 600),
        (1, 300.0, 300), (3, 10.0, 120), (9, 7200.0, 7200),
    ],
)  # fmt: skip
def test_backoff_doubles_is_capped_and_honours_retry_after(
    attempts: int, retry_after: float | None, expected: float
) -> None:
    assert backoff_delay(attempts, S, retry_after) == expected


def test_message_id_is_stable_per_key() -> None:
    assert message_id_for("changes:1") == message_id_for("changes:1")
    assert message_id_for("changes:1") != message_id_for("changes:2")
    assert message_id_for("k") == "<8254c329a92850f6d539dd376f4816ee@exec-assistant>"


def test_the_mail_built_for_an_entry() -> None:
    now = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    channel = SmtpChannel("mail", 25, "svc@example.com", "svc", SecretStr("pw-123"), clock=lambda: now)
    text_only = channel.build(OutboxMessage("k", "smtp", "sam@example.com", "Schedule", "Moved."))
    assert text_only.get_content_type() == "text/plain"
    assert text_only["Date"] == "Tue, 24 Nov 2026 09:30:00 +0000"
    assert text_only["Message-ID"] == message_id_for("k") and text_only["To"] == "sam@example.com"
    both = channel.build(OutboxMessage("k", "smtp", "sam@example.com", "Schedule", "Moved.", "<p>Moved.</p>"))
    assert [p.get_content_type() for p in both.iter_parts()] == ["text/plain", "text/html"]
    assert "pw-123" not in repr(channel)
    with pytest.raises(ValueError, match="ssl or starttls"):
        SmtpChannel("mail", 465, "a@b", ssl=True, starttls=True)


def test_drain_report_as_dict() -> None:
    at = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    assert DrainReport(claimed=2, sent=1, retried=1, next_attempt_at=at).to_dict() == {
        "claimed": 2, "sent": 1, "retried": 1, "dead": 0, "skipped": 0,
        "next_attempt_at": "2026-11-24T09:30:00+00:00", "not_sent": [],
    }  # fmt: skip
