"""Reading the receiving server's Authentication-Results (RFC 8601) to trust a From."""

from __future__ import annotations

from assistant.domain.mail_auth import authenticated, parse

GMAIL = (
    "mx.google.com;\r\n       dkim=pass header.i=@example.com header.s=s1 header.b=AbCd;\r\n"
    "       spf=pass (google.com: domain of alex@example.com designates 203.0.113.5 as "
    "permitted sender) smtp.mailfrom=alex@example.com;\r\n"
    "       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.com"
)
M365 = (
    "spf=pass (sender IP is 203.0.113.5) smtp.mailfrom=example.com; dkim=pass (signature "
    "was verified) header.d=example.com;dmarc=pass action=none header.from=example.com;"
    "compauth=pass reason=100"
)
RSPAMD = (
    "mail.service.test;\r\n\tdkim=pass header.d=mail.example.com header.s=dkim "
    'header.b="Xy;z";\r\n\tdmarc=none;\r\n\tspf=softfail (mail.service.test: 198.51.100.7 is '
    "neither permitted nor denied by domain of alex@example.com) smtp.mailfrom=alex@example.com"
)
FAILED = (
    "mail.service.test; dkim=none; spf=fail smtp.mailfrom=example.com; "
    "dmarc=fail (p=reject) header.from=example.com"
)


def test_gmail_microsoft_and_rspamd_headers_are_read() -> None:
    g = parse(GMAIL)
    assert g.authserv_id == "mx.google.com"
    assert [(r.method, r.result) for r in g.results] == [
        ("dkim", "pass"), ("spf", "pass"), ("dmarc", "pass")
    ]  # fmt: skip
    assert g.results[0].props["header.i"] == "@example.com"
    assert g.results[1].props["smtp.mailfrom"] == "alex@example.com"
    m = parse(M365)
    assert m.authserv_id == "" and [r.method for r in m.results] == ["spf", "dkim", "dmarc",
                                                                      "compauth"]  # fmt: skip
    r = parse(RSPAMD)
    assert r.authserv_id == "mail.service.test"
    assert r.results[0].props == {"header.d": "mail.example.com", "header.s": "dkim",
                                  "header.b": "Xy;z"}  # fmt: skip
    assert ("spf", "softfail") in [(x.method, x.result) for x in r.results]


def test_a_pass_from_a_trusted_server_vouches_for_the_from_domain() -> None:
    assert authenticated([GMAIL], "alex@example.com", ["mx.google.com"]).ok
    assert authenticated([M365], "alex@example.com", [""]).ok
    # DKIM by a subdomain of the From domain is aligned (relaxed), SPF softfail is not a pass.
    verdict = authenticated([RSPAMD], "alex@example.com", ["mail.service.test"])
    assert verdict.ok and verdict.why == "dkim=pass for mail.example.com"


def test_a_fail_an_unaligned_pass_or_an_untrusted_server_is_not_enough() -> None:
    assert not authenticated([FAILED], "alex@example.com", ["mail.service.test"]).ok
    assert not authenticated([GMAIL], "alex@example.com", ["mail.service.test"]).ok
    assert not authenticated([M365], "alex@example.com", ["mx.google.com"]).ok
    assert not authenticated([], "alex@example.com", ["mx.google.com"]).ok
    newsletter = "mx.google.com; dkim=pass header.d=mailer.example.net; spf=pass smtp.mailfrom=bounce.example.net"
    verdict = authenticated([newsletter], "alex@example.com", ["mx.google.com"])
    assert not verdict.ok
    assert verdict.why == "mx.google.com says dkim=pass, spf=pass for example.com"
    # DMARC pass for another From domain than the one in the header is not ours.
    other = "mx.google.com; dmarc=pass header.from=example.org"
    assert not authenticated([other], "alex@example.com", ["mx.google.com"]).ok


def test_only_the_topmost_trusted_header_counts_a_forged_one_below_does_not() -> None:
    forged = "mail.service.test; dmarc=pass header.from=example.com"
    # The receiving server put its verdict on top; the sender's forgery lies below it.
    assert not authenticated([FAILED, forged], "alex@example.com", ["mail.service.test"]).ok
    assert authenticated([forged, FAILED], "alex@example.com", ["Mail.Service.Test"]).ok
