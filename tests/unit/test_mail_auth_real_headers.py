"""Authentication-Results as real receiving servers write them (RFC 8601): Gmail, Microsoft
365 (no authserv-id), Postfix with OpenDKIM / OpenDMARC / policyd-spf in front of Dovecot
(one header each), rspamd, Fastmail; what each lets through for alex@example.com."""

from __future__ import annotations

import pytest

from assistant.domain.mail_auth import authenticated, parse

FROM = "alex@example.com"

GMAIL = """mx.google.com;
       dkim=pass header.i=@example.com header.s=20230601 header.b=kQz5mA1b;
       arc=pass (i=1 spf=pass spfdomain=example.com dkim=pass dkdomain=example.com dmarc=pass fromdomain=example.com);
       spf=pass (google.com: domain of alex@example.com designates 209.85.220.41 as permitted sender) smtp.mailfrom=alex@example.com;
       dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=example.com"""
# A spoof through a host that passes SPF for its own bounce domain, not for example.com.
GMAIL_SPOOF = """mx.google.com;
       spf=pass (google.com: domain of bounce@attacker.example designates 198.51.100.9 as permitted sender) smtp.mailfrom=bounce@attacker.example;
       dmarc=fail (p=NONE sp=NONE dis=NONE) header.from=example.com"""
M365 = """spf=pass (sender IP is 203.0.113.5)
 smtp.mailfrom=example.com; dkim=pass (signature was verified)
 header.d=example.com;dmarc=pass action=none header.from=example.com;compauth=pass
 reason=100"""
# Microsoft's guess ("bestguesspass", compauth=pass) is not an authentication.
M365_GUESS = """spf=none (sender IP is 198.51.100.9)
 smtp.mailfrom=attacker.example; dkim=none (message not signed)
 header.d=none;dmarc=bestguesspass action=none header.from=example.com;compauth=pass
 reason=109"""
OPENDKIM = """mail.example.org;
\tdkim=pass (2048-bit key; unprotected) header.d=example.com header.i=@example.com header.a=rsa-sha256 header.s=mail header.b=Qw2Ab3c4"""
OPENDMARC = "mail.example.org; dmarc=pass (p=reject dis=none) header.from=example.com"
OPENDMARC_FAIL = "mail.example.org; dmarc=fail (p=reject dis=reject) header.from=example.com"
POLICYD_SPF = (
    "mail.example.org; spf=pass (sender SPF authorized) smtp.mailfrom=example.com "
    "(client-ip=203.0.113.5; helo=out.example.com; envelope-from=alex@example.com)"
)
RSPAMD = """mail.example.org;
\tdkim=pass header.d=example.com header.s=dkim header.b=AbCdEf12;
\tdmarc=pass (policy=reject) header.from=example.com;
\tspf=pass (mail.example.org: domain of "alex@example.com" designates 203.0.113.5 as permitted sender) smtp.mailfrom=alex@example.com"""
FASTMAIL = """mx6.messagingengine.com;
    dkim=pass (2048-bit rsa key sha256) header.d=example.com header.i=@example.com header.b=XyZ header.a=rsa-sha256 header.s=fm1 x-bits=2048;
    dmarc=pass policy.published-domain-policy=none policy.applied-disposition=none policy.evaluated-disposition=none (p=none,d=none,d.eval=none) policy.policy-from=p header.from=example.com;
    iprev=pass smtp.remote-ip=203.0.113.5 (out.example.com);
    spf=pass smtp.mailfrom=alex@example.com smtp.helo=out.example.com"""


@pytest.mark.parametrize(
    ("header", "authserv_id", "results"),
    [
        (GMAIL, "mx.google.com", [("dkim", "pass"), ("arc", "pass"), ("spf", "pass"),
                                  ("dmarc", "pass")]),
        (M365, "", [("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass"), ("compauth", "pass")]),
        (M365_GUESS, "", [("spf", "none"), ("dkim", "none"), ("dmarc", "bestguesspass"),
                          ("compauth", "pass")]),
        (OPENDKIM, "mail.example.org", [("dkim", "pass")]),
        (POLICYD_SPF, "mail.example.org", [("spf", "pass")]),
        (RSPAMD, "mail.example.org", [("dkim", "pass"), ("dmarc", "pass"), ("spf", "pass")]),
        (FASTMAIL, "mx6.messagingengine.com", [("dkim", "pass"), ("dmarc", "pass"),
                                               ("iprev", "pass"), ("spf", "pass")]),
        ("mail.example.org 1; none", "mail.example.org", []),
        ("MAIL.Example.ORG; DKIM=PASS Header.D=Example.COM", "mail.example.org", [("dkim", "pass")]),
    ],
)  # fmt: skip
def test_real_headers_are_read(
    header: str, authserv_id: str, results: list[tuple[str, str]]
) -> None:
    parsed = parse(header)
    assert parsed.authserv_id == authserv_id
    assert [(r.method, r.result) for r in parsed.results] == results


def test_comments_and_quoted_strings_do_not_leak_into_results() -> None:
    # The ARC comment holds "spf=pass ... dmarc=pass" for other domains: not results.
    assert [r.method for r in parse(GMAIL).results].count("dmarc") == 1
    rspamd = parse(RSPAMD)
    assert rspamd.results[2].props == {"smtp.mailfrom": "alex@example.com"}
    fastmail = parse(FASTMAIL)
    assert fastmail.results[3].props["smtp.helo"] == "out.example.com"
    assert parse(OPENDKIM).results[0].props["header.d"] == "example.com"


@pytest.mark.parametrize(
    ("headers", "trusted", "why"),
    [
        ([GMAIL], ["mx.google.com"], "dkim=pass for example.com"),
        ([M365], [""], "spf=pass for example.com"),
        ([RSPAMD], ["mail.example.org"], "dkim=pass for example.com"),
        ([FASTMAIL], ["mx6.messagingengine.com"], "dkim=pass for example.com"),
        # Postfix milters write one header each; OpenDMARC's, on top, decides.
        ([OPENDMARC, OPENDKIM, POLICYD_SPF], ["mail.example.org"], "dmarc=pass"),
        ([POLICYD_SPF], ["mail.example.org"], "spf=pass for example.com"),
        (["mail.example.org; spf=pass smtp.mailfrom=<alex@example.com>"], ["mail.example.org"],
         "spf=pass for example.com"),
        # Relaxed alignment: a subdomain of the From domain signs.
        (["mail.example.org; dkim=pass header.d=news.example.com"], ["mail.example.org"],
         "dkim=pass for news.example.com"),
        # Several trusted servers (the mail was forwarded from Gmail to our own).
        ([RSPAMD, GMAIL_SPOOF], ["mx.google.com", "mail.example.org"],
         "dkim=pass for example.com"),
    ],
)  # fmt: skip
def test_what_lets_the_mail_through(headers: list[str], trusted: list[str], why: str) -> None:
    verdict = authenticated(headers, FROM, trusted)
    assert verdict.ok and verdict.why == why


@pytest.mark.parametrize(
    ("headers", "trusted"),
    [
        ([GMAIL_SPOOF], ["mx.google.com"]),  # spf=pass, but for attacker.example
        ([M365_GUESS], [""]),
        ([OPENDMARC_FAIL, OPENDKIM], ["mail.example.org"]),  # the topmost says fail
        # A verdict from a server not trusted counts for nothing, on top or alone ...
        (["attacker.example; dmarc=pass header.from=example.com", OPENDMARC_FAIL],
         ["mail.example.org"]),
        ([GMAIL], ["mail.example.org"]),
        # ... and so does one written without a name when Microsoft 365 is not trusted.
        ([M365], ["mail.example.org"]),
        # Look-alike domains are not aligned.
        (["mail.example.org; dkim=pass header.d=example.com.attacker.example"],
         ["mail.example.org"]),
        (["mail.example.org; dkim=pass header.d=notexample.com"], ["mail.example.org"]),
        (["mail.example.org; spf=pass smtp.mailfrom=alex@example.co"], ["mail.example.org"]),
        # HELO is not the envelope: SPF for it proves nothing about From.
        (["mail.example.org; spf=pass smtp.helo=example.com"], ["mail.example.org"]),
        (["mail.example.org; dkim=fail header.d=example.com; spf=softfail "
          "smtp.mailfrom=example.com; dmarc=temperror header.from=example.com"],
         ["mail.example.org"]),
        ([], ["mail.example.org"]),
    ],
)  # fmt: skip
def test_what_does_not(headers: list[str], trusted: list[str]) -> None:
    assert not authenticated(headers, FROM, trusted).ok
