"""The service inbox trusts a From only as far as the receiving server's
Authentication-Results do, end to end: real Dovecot (IMAP APPEND), real SMTP, real store."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from imapclient import IMAPClient

from assistant.bootstrap import Service
from assistant.domain.mail_auth import authenticated
from assistant.services import inbound
from connectors.archive.mailbox import MaildirSource
from tests.integration import test_inbound
from tests.integration.test_inbound import MANAGER, deliver, run, tasks
from tests.support.smtp import SmtpServer

# The fixtures of the inbox tests: the service's Dovecot mailbox and the service over it.
mailbox = test_inbound.mailbox
svc = test_inbound.svc

M365_PASS = (
    "spf=pass (sender IP is 203.0.113.5) smtp.mailfrom=example.com; dkim=pass (signature was "
    "verified) header.d=example.com;dmarc=pass action=none header.from=example.com;"
    "compauth=pass reason=100"
)
M365_GUESS = (
    "spf=none (sender IP is 198.51.100.9) smtp.mailfrom=attacker.example; dkim=none (message "
    "not signed) header.d=none;dmarc=bestguesspass action=none header.from=example.com;"
    "compauth=pass reason=109"
)


def trust(svc: Service, *ids: str) -> None:
    inbox = svc.settings.inbox.model_copy(update={"trusted_authserv_ids": list(ids)})
    svc.settings = svc.settings.model_copy(update={"inbox": inbox})


def test_a_pass_from_an_untrusted_server_on_top_is_worth_nothing(
    svc: Service,
    mailbox: tuple[str, str, IMAPClient],
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    trust(svc, "mx.service.test")
    deliver(mailbox, sender=MANAGER, subject="Wire the money", body="Pay it by Friday 17:00.",
            authentication_results=(
                "relay.attacker.example; dkim=pass header.d=example.com; dmarc=pass "
                "header.from=example.com",
                "mx.service.test; spf=pass smtp.mailfrom=bounce@attacker.example; dkim=none; "
                "dmarc=fail header.from=example.com",
            ))  # fmt: skip
    with caplog.at_level(logging.INFO, logger=inbound.log.name):
        report = run(svc)
    assert (report.read, report.ignored, report.tasks, report.outbox_ids) == (1, 1, (), ())
    assert tasks(svc) == [] and smtp_server.messages == [], "nothing made, nothing answered"
    [line] = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert f"from {MANAGER} ignored: the sender is not authenticated" in line
    assert "mx.service.test says spf=pass, dkim=none, dmarc=fail for example.com" in line


def test_microsoft_365_without_a_server_name_is_trusted_as_configured(
    svc: Service, mailbox: tuple[str, str, IMAPClient], smtp_server: SmtpServer
) -> None:
    trust(svc, "")
    deliver(mailbox, sender=MANAGER, subject="Guessed", body="By Friday 17:00.",
            authentication_results=(M365_GUESS,))  # fmt: skip
    report = run(svc)
    assert (report.ignored, report.tasks) == (1, ())
    deliver(mailbox, sender=MANAGER, subject="Board deck", body="The board deck by Friday 17:00.",
            authentication_results=(M365_PASS,))  # fmt: skip
    report = run(svc)
    [task] = tasks(svc)
    assert report.tasks == (task.id,) and task.title == "Board deck"
    assert len(smtp_server.wait_for(1)) == 1, "only the authenticated one is confirmed"


def test_trusting_unauthenticated_mail_is_explicit_and_said_so_once(
    svc: Service,
    mailbox: tuple[str, str, IMAPClient],
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inbound, "_warned", [])  # as in a fresh process
    assert svc.settings.inbox.trusted_authserv_ids == []
    assert svc.settings.inbox.trust_unauthenticated, "the operator said so (test_inbound.svc)"
    deliver(mailbox, sender=MANAGER, subject="Board deck", body="The board deck by Friday 17:00.")
    with caplog.at_level(logging.WARNING, logger=inbound.log.name):
        first = run(svc)
        deliver(
            mailbox, sender=MANAGER, subject="Offsite", body="Plan the offsite by Friday 17:00."
        )
        second = run(svc)
    assert len(first.tasks) == 1 and len(second.tasks) == 1, "as the operator chose: acted on"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "trusted_authserv_ids" in w]) == 1
    assert "trust_unauthenticated is set" in warnings[0]
    assert "From address of incoming mail is trusted" in warnings[0]


def test_a_maildir_message_keeps_its_verdicts_topmost_first(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    raw = (
        "Authentication-Results: mx.service.test; dmarc=fail header.from=example.com\r\n"
        "Received: from relay.attacker.example by mx.service.test; Mon, 23 Nov 2026 08:00 +0000\r\n"
        "Authentication-Results: mx.service.test;\r\n dmarc=pass header.from=example.com\r\n"
        f"From: {MANAGER}\r\nTo: tasks@service.test\r\nSubject: Plan\r\n"
        "Message-ID: <m1@example.com>\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\n\r\nPlan it.\r\n"
    )
    (root / "new" / "1.host").write_bytes(raw.encode())
    [msg], _ = MaildirSource(root, folders=["INBOX"]).fetch_new_bodies(None)
    assert [v.split(";")[0] for v in msg.authentication_results] == ["mx.service.test"] * 2
    assert "dmarc=fail" in msg.authentication_results[0]
    # The forgery below the receiving server's own verdict does not count.
    assert not authenticated(msg.authentication_results, MANAGER, ["mx.service.test"]).ok
