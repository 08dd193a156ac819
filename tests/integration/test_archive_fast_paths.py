"""The fast paths of mail archive reading give what the stdlib gives, on real mail (issue 16.4).

``assistant latency --maildir`` reads headers without feeding the body through the parser,
splits plain address lists itself, reads plain ASCII headers without the header registry,
and keys quoted text in one pass. Each is compared here with the plain stdlib way (the code
it replaced, kept as the reference in ``tests/support/stdlib_mail.py``) on the three Enron
archives of ``../shared/evaldata``: every ``STEP``-th file in the short form, every file
when slow.
"""

from __future__ import annotations

from email.message import Message
from pathlib import Path

import pytest

from assistant.domain.latency.quotes import text_keys
from connectors.archive.mailbox import _addresses, _decoded
from connectors.archive.text import plain_text
from connectors.mime import read_headers
from tests.support.stdlib_mail import (
    STDLIB_HEADERS,
    stdlib_addresses,
    stdlib_decoded,
    stdlib_text_keys,
)

MAILDIR = Path(__file__).resolve().parents[2].parent / "shared" / "evaldata" / "enron" / "maildir"
ARCHIVES = ["lay-k", "lavorato-j", "skilling-j"]
STEP = 10
pytestmark = [
    pytest.mark.evaldata,
    pytest.mark.skipif(not MAILDIR.is_dir(), reason=f"evaldata not present at {MAILDIR}"),
]
ADDRESS_HEADERS = ("from", "sender", "to", "cc", "bcc", "x-from", "x-to", "x-cc")
TEXT_HEADERS = ("message-id", "subject", "in-reply-to", "references", "x-from", "x-to")

# -------------------------------------------------------------------------- the checks


def _files(step: int) -> list[Path]:
    found: list[Path] = []
    for archive in ARCHIVES:
        every = sorted(p for p in (MAILDIR / archive).rglob("*") if p.is_file())
        found += every[::step]
    return found


def _headers(msg: Message) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        out.setdefault(name.strip().lower(), []).append(str(value))
    return out


def check(path: Path) -> int:
    """Every fast path against the reference on one file; how many values were compared."""
    raw = path.read_bytes()
    reference = STDLIB_HEADERS.parsebytes(raw, headersonly=True)
    fast = read_headers(raw)
    assert list(fast.raw_items()) == list(reference.raw_items()), path
    assert fast.get_payload() == reference.get_payload(), path
    assert plain_text(fast) == plain_text(reference), path
    compared = 0
    headers = _headers(reference)
    for name in ADDRESS_HEADERS:
        if name in headers:
            assert _addresses(headers[name]) == stdlib_addresses(headers[name]), (path, name)
            compared += 1
    for name in TEXT_HEADERS:
        for value in headers.get(name, []):
            assert _decoded(name, value) == stdlib_decoded(name, value), (path, name)
            compared += 1
    text = plain_text(reference)
    assert text_keys(text) == stdlib_text_keys(text), path
    return compared + 1


def test_fast_paths_match_the_stdlib_on_a_sample_of_real_mail() -> None:
    files = _files(STEP)
    assert len(files) > 1_000
    assert sum(check(p) for p in files) > 10_000


@pytest.mark.long
def test_fast_paths_match_the_stdlib_on_every_real_mail() -> None:
    files = _files(1)
    assert len(files) > 13_000
    assert sum(check(p) for p in files) > 100_000
