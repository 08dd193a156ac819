"""Inbound mail: a forged From creates nothing unless the operator explicitly trusts the inbox.

Unit checks read real-shaped Authentication-Results (RFC 8601) headers; the end-to-end
checks go through the real inbox path (Dovecot over IMAP, the real store and SMTP)."""

from __future__ import annotations

import logging

import pytest
from imapclient import IMAPClient

from assistant.bootstrap import Service
from assistant.domain.mail_auth import authenticated, parse
from assistant.services import inbound
from tests.integration import test_inbound
from tests.integration.test_inbound import MANAGER, deliver, run, tasks
from tests.support.smtp import SmtpServer

mailbox = test_inbound.mailbox
svc = test_inbound.svc

FROM = "alex@example.com"

# Gmail's header shape for a message whose envelope sender hides the real domain in a
# quoted local part: SPF passed for evil.com, not for example.com.
QUOTED_LOCAL_PART = """mx.google.com;
       spf=pass (google.com: domain of "alex@example.com"@evil.com designates 198.51.100.9 as permitted sender) smtp.mailfrom="alex@example.com"@evil.com;
       dkim=none"""
QUOTED_DKIM_IDENTITY = """mail.example.org;
\tdkim=pass (2048-bit key) header.i="alex@example.com"@evil.com header.s=mail header.b=Qw2Ab3c4"""
# A DMARC failure next to passes that are aligned: the domain owner's "no" wins.
DMARC_FAIL_WITH_PASSES = """mx.google.com;
       dkim=pass header.i=@example.com header.s=20230601 header.b=kQz5mA1b;
       spf=pass (google.com: domain of alex@example.com designates 209.85.220.41 as permitted sender) smtp.mailfrom=alex@example.com;
       dmarc=fail (p=REJECT sp=REJECT dis=QUARANTINE) header.from=example.com"""
RSPAMD_DMARC_FAIL = """mail.example.org;
\tdkim=pass header.d=example.com header.s=dkim header.b=AbCdEf12;
\tspf=pass (mail.example.org: domain of alex@example.com designates 203.0.113.5 as permitted sender) smtp.mailfrom=alex@example.com;
\tdmarc=fail reason="SPF not aligned (relaxed)" header.from=example.com (policy=reject)"""
QUOTED_WHOLE = 'mx.google.com; spf=pass smtp.mailfrom="alex@example.com"'


def test_a_quoted_local_part_does_not_lend_its_domain() -> None:
    [spf, _] = parse(QUOTED_LOCAL_PART).results
    assert spf.props["smtp.mailfrom"] == '"alex@example.com"@evil.com'
    assert not authenticated([QUOTED_LOCAL_PART], FROM, ["mx.google.com"]).ok
    assert not authenticated([QUOTED_DKIM_IDENTITY], FROM, ["mail.example.org"]).ok
    # the mail does authenticate evil.com, the domain the envelope really names
    assert authenticated([QUOTED_LOCAL_PART], '"alex@example.com"@evil.com', ["mx.google.com"]).ok
    # a value that is one quoted string is that string
    assert authenticated([QUOTED_WHOLE], FROM, ["mx.google.com"]).ok


@pytest.mark.parametrize("header", [DMARC_FAIL_WITH_PASSES, RSPAMD_DMARC_FAIL])
def test_an_explicit_dmarc_fail_refuses_whatever_else_passed(header: str) -> None:
    trusted = [parse(header).authserv_id]
    verdict = authenticated([header], FROM, trusted)
    assert not verdict.ok
    assert "dmarc=fail for example.com" in verdict.why
    # the same header without the dmarc result lets the aligned passes through
    without = header.rsplit(";", 1)[0]
    assert authenticated([without], FROM, trusted).ok


def test_unauthenticated_mail_is_refused_by_default(
    svc: Service,
    mailbox: tuple[str, str, IMAPClient],
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inbound, "_warned", [])  # as in a fresh process
    default = type(svc.settings.inbox)()
    assert default.trust_unauthenticated is False and default.trusted_authserv_ids == []
    inbox = svc.settings.inbox.model_copy(update={"trust_unauthenticated": False})
    svc.settings = svc.settings.model_copy(update={"inbox": inbox})
    deliver(mailbox, sender=MANAGER, subject="Wire the money", body="Pay it by Friday 17:00.")
    with caplog.at_level(logging.INFO, logger=inbound.log.name):
        report = run(svc)
    assert (report.read, report.ignored, report.tasks, report.outbox_ids) == (1, 1, (), ())
    assert tasks(svc) == [] and smtp_server.messages == [], "nothing made, nothing answered"
    said = [r.getMessage() for r in caplog.records]
    assert any(f"from {MANAGER} ignored: unauthenticated mail is refused" in m for m in said)
    assert any("none is acted on" in m for m in said), "the operator is told why"


def test_a_dmarc_fail_from_the_trusted_server_creates_nothing(
    svc: Service, mailbox: tuple[str, str, IMAPClient], smtp_server: SmtpServer
) -> None:
    inbox = svc.settings.inbox.model_copy(
        update={"trusted_authserv_ids": ["mx.google.com"], "trust_unauthenticated": False}
    )
    svc.settings = svc.settings.model_copy(update={"inbox": inbox})
    deliver(mailbox, sender=MANAGER, subject="Wire the money", body="Pay it by Friday 17:00.",
            authentication_results=(" ".join(DMARC_FAIL_WITH_PASSES.split()),))  # fmt: skip
    deliver(mailbox, sender=MANAGER, subject="Board deck", body="The board deck by Friday 17:00.",
            authentication_results=(" ".join(QUOTED_LOCAL_PART.split()),))  # fmt: skip
    report = run(svc)
    assert (report.read, report.ignored, report.tasks) == (2, 2, ())
    assert tasks(svc) == [] and smtp_server.messages == []


def test_the_operator_is_warned_at_start_when_from_is_trusted_as_it_stands(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.settings import InboxSettings

    def said(conf: InboxSettings) -> list[str]:
        monkeypatch.setattr(inbound, "_warned", [])  # a fresh process
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=inbound.log.name):
            inbound.warn_inbox_trust(conf)
        return [r.getMessage() for r in caplog.records]

    imap = {"provider": "imap", "address": "tasks@service.test"}
    [trusting] = said(InboxSettings(**imap, trust_unauthenticated=True))
    assert "trust_unauthenticated is set" in trusting and "forge" in trusting
    [refusing] = said(InboxSettings(**imap))
    assert "none is acted on" in refusing
    assert said(InboxSettings(**imap, trusted_authserv_ids=["mx.google.com"])) == []
    assert said(InboxSettings()) == [], "no inbox, nothing to say"
