"""The fast paths of mail archive reading on made-up edge cases: each gives what the plain
stdlib way gives (``tests/support/stdlib_mail.py``; real mail: the evaldata test)."""

from __future__ import annotations

import pytest

from assistant.domain.latency.quotes import MAX_QUOTE_LINES, text_keys
from connectors.archive.mailbox import _addresses, _decoded
from connectors.mime import read_headers
from tests.support.stdlib_mail import (
    STDLIB_HEADERS,
    stdlib_addresses,
    stdlib_decoded,
    stdlib_text_keys,
)

OWN = "Please find the figures for the third quarter attached to this note"
QUOTED = "The board meets on Tuesday at nine in the large room upstairs as planned"
TEXTS = [
    "",
    "ok",
    OWN,
    f"{OWN}\n\n-----Original Message-----\nFrom: Ann\nSent: Monday\n\n{QUOTED}\n",
    f"{OWN}\r\n\r\n> {QUOTED}\r\n> and more words here for the window\r\n",
    f"{OWN}\r\n-- \x1fOriginal Message\r\n{QUOTED}",
    f"{OWN}\x0b\x1c  FROM :  someone\x1d{QUOTED}\x1e{QUOTED}\x0c",
    f"{OWN}\nOn Monday, Ann Smith WROTE:  \n{QUOTED}\n",
    f"{OWN}\nHe rewrote:\n{QUOTED}\n",
    f"{OWN}\nSchrieb:\x1f\n{QUOTED}\n",
    f"{OWN}\n\x1f| {QUOTED}\n\x1c>> {QUOTED}\n",
    f"{OWN}\n__________\n{QUOTED}\n_____ not five\n{QUOTED}",
    f"{OWN}\nfrom_address: x\ntoday: y\nsubject:{QUOTED}",
    f"{OWN}\nDate\t:\t{QUOTED}\nvon: a\nGesendet: b\nAn: c\nBetreff: d\n{QUOTED}",
    f"{OWN}\n-----Forwarded by Ann\n{QUOTED}\n---- Reply Message\n{QUOTED}\n-original message",
    f"Straße {OWN}\n> {QUOTED} Ärger\nКому: Анне\n{QUOTED}\nAnn a écrit :\n{QUOTED}",
    f"{OWN}\u2028> {QUOTED}\u2029{QUOTED}\x85more words in here for sure",
    f"{OWN}\n> " + "\n> ".join(f"{QUOTED} {i}" for i in range(MAX_QUOTE_LINES + 100)) + "\nend",
    f"{OWN}\n" + "\n".join(f"> w{i}" for i in range(3 * MAX_QUOTE_LINES)) + f"\n{QUOTED} tail",
    "\n".join(["", " ", ">", "|", "\t>|"] * 50) + OWN,
]


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_quote_keys_are_those_of_the_line_by_line_way(text: str) -> None:
    assert text_keys(text) == stdlib_text_keys(text)


ADDRESSES = [
    ["a@x.com"],
    ["A@X.com, b@y.com,, c@z.org"],
    ["a@x.com\n\t, b@y.com", "c@z.org"],
    ["'jones'@enron.com, mailto:ann@x.com"],
    ["klay", "a@x.com"],
    ["a..b@x.com, .a@x.com, a.@x.com, a@x..com"],
    ["a@@b, a@, @x.com"],
    ["a@x.com;b@y.com"],
    ['"Boss, The" <boss@corp.com>, other@corp.com'],
    ["Ann <ann@x.com>", "(comment) b@y.com"],
    ["undisclosed-recipients:;"],
    ["=?utf-8?q?Ann?= <ann@x.com>"],
    ["ann@x.com b@y.com"],
    ["ännä@x.com, b@y.com"],
    [b"a@x.com, b@y.com".decode("ascii", "surrogateescape")],
    ["a\udce4@x.com"],
    [""],
    [],
    # long lists with an item that is not a bare address: only that item goes to the stdlib
    ["k..allen@enron.com, a@x.com,\n\tb@y.com", "f..calger@enron.com"],
    ["a@x.com, ann b@y.com, c@z.org, a @ x.com, @x.com, a@x..com, klay"],
    ["a@x.com, mailto:b@y.com, =?utf-8?q?Ann?= c@z.org, x=?utf-8?q?A?=@y, A@X.COM"],
    ["a@x.com, b@y.com", "Ann <c@z.org>, d..e@x.com"],  # angle brackets: the whole list
]


@pytest.mark.parametrize("values", ADDRESSES, ids=range(len(ADDRESSES)))
def test_addresses_are_those_getaddresses_gives(values: list[str]) -> None:
    assert _addresses(values) == stdlib_addresses(values)


HEADERS = [
    ("subject", "Re: Budget"),
    ("subject", "  Re:\n\t folded   twice \r\n  here  "),
    ("subject", "=?utf-8?b?0JHRjtC00LbQtdGCINC90LAgMjAyNA==?="),
    ("subject", "Ärger im Büro"),
    ("subject", "caf\udce9"),
    ("x-from", "Ann Smith <ann@x.com>"),
    ("in-reply-to", "<a@b.com>\n\t<c@d.com>"),
    ("references", "<a@b.com> <c@d.com>"),
    ("message-id", "<1.1075840000000.JavaMail.evans@thyme>"),
    ("message-id", " <a@b.com> "),
    ("message-id", "<a b@c.com>"),
    ("message-id", "<a@b.com> (comment)"),
    ("message-id", "a@b.com"),
    ("message-id", "<[1.2.3.4]@host>"),
    ("message-id", "<a.@b.com>"),
]


@pytest.mark.parametrize(("name", "value"), HEADERS, ids=range(len(HEADERS)))
def test_header_text_is_what_the_default_policy_gives(name: str, value: str) -> None:
    assert _decoded(name, value) == stdlib_decoded(name, value)


MESSAGES = [
    b"From: a@x.com\nTo: b@y.com\n\nbody\n",
    b"From: a@x.com\r\nTo: b@y.com\r\n\r\nbody\r\nmore\r\n",
    b"From: a@x.com\nTo: b@y.com\n\r\nbody",
    b"From: a@x.com\nnot a header line\nTo: b@y.com\n\nbody\n",
    b"From: a@x.com\rTo: b@y.com\r\rbody\n\nmore\n",
    b"From: a@x.com\nSubject: folded\n \n\t still\n\nbody\n",
    b"From nobody Tue May  9 07:00:00 2000\nFrom: a@x.com\n\nbody\n",
    b"From: a@x.com\nTo: b@y.com\n",
    b"From: a@x.com\nTo: b@y.com",
    b"\nbody only\n",
    b"From: caf\xe9@x.com\nSubject: \xc3\xa4\n\n\xff\xfe body\n",
    b"From: a@x.com\n: odd\n\nbody\n",
]


@pytest.mark.parametrize("raw", MESSAGES, ids=range(len(MESSAGES)))
def test_headers_and_body_are_what_parsing_it_all_gives(raw: bytes) -> None:
    fast, plain = read_headers(raw), STDLIB_HEADERS.parsebytes(raw, headersonly=True)
    assert list(fast.raw_items()) == list(plain.raw_items())
    assert fast.get_payload() == plain.get_payload()


def test_the_end_of_the_headers_is_where_the_regex_finds_it() -> None:
    """Every string of up to 7 bytes of \\r, \\n and a letter: the same span."""
    from itertools import product

    from connectors.mime import _END_OF_HEADERS, _end_of_headers

    for size in range(8):
        for chars in product(b"\r\na", repeat=size):
            raw = bytes(chars)
            found = _END_OF_HEADERS.search(raw)
            assert _end_of_headers(raw) == (found.span() if found else None), raw
