"""The fast paths of mail archive reading give what the stdlib gives, on real mail (issue 16.4).

``assistant latency --maildir`` reads headers without feeding the body through the parser,
splits plain address lists itself, reads plain ASCII headers without the header registry,
and keys quoted text in one pass. Each is compared here with the plain stdlib way (the code
it replaced, kept below as the reference) on the three Enron archives of
``../shared/evaldata``: every ``STEP``-th file in the short form, every file when slow.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses
from pathlib import Path

import pytest

from assistant.domain.latency.quotes import MAX_QUOTE_LINES, MIN_WORDS, WORDS, text_keys
from connectors.archive.mailbox import _addresses, _decoded
from connectors.archive.text import plain_text
from connectors.mime import read_headers

MAILDIR = Path(__file__).resolve().parents[2].parent / "shared" / "evaldata" / "enron" / "maildir"
ARCHIVES = ["lay-k", "lavorato-j", "skilling-j"]
STEP = 10
pytestmark = [
    pytest.mark.evaldata,
    pytest.mark.skipif(not MAILDIR.is_dir(), reason=f"evaldata not present at {MAILDIR}"),
]
ADDRESS_HEADERS = ("from", "sender", "to", "cc", "bcc", "x-from", "x-to", "x-cc")
TEXT_HEADERS = ("message-id", "subject", "in-reply-to", "references", "x-from", "x-to")

# ----------------------------------------------------------- the stdlib way (reference)

_STDLIB_HEADERS = BytesParser(policy=policy.compat32)


def _unbytes(value: str) -> str:
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    raw = value.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def stdlib_addresses(values: list[str]) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for _name, raw in getaddresses([_unbytes(v) for v in values]):
        addr = raw.strip().strip("'\"<> ").lower()
        if addr.startswith("mailto:"):
            addr = addr[7:]
        if "@" in addr and " " not in addr:
            found.setdefault(addr)
    return tuple(found)


def stdlib_decoded(name: str, value: str) -> str:
    value = _unbytes(value)
    with contextlib.suppress(Exception):
        return str(policy.default.header_fetch_parse(name, value)).strip()
    try:
        return str(make_header(decode_header(value))).strip()
    except Exception:
        return " ".join(value.split())


_WORD = re.compile(r"\w+")
_PREFIX = re.compile(r"^[\s>|]+")
_MARKER = re.compile(
    r"^(?:-{2,}\s*(?:original message|forwarded by|original text|reply message)"
    r"|_{5,}"
    r"|(?:from|sent|to|cc|date|subject|von|gesendet|an|betreff|от|кому|тема|дата)\s*:)",
    re.IGNORECASE,
)
_WROTE = ("wrote:", "schrieb:", "писал:", "написал:", "a écrit :", "a écrit:")


def _digest(words: list[str]) -> str:
    return hashlib.blake2b(" ".join(words).encode(), digest_size=8).hexdigest()


def _window(words: list[list[str]], marker: list[bool], start: int, end: int) -> str:
    taken: list[str] = []
    for n in range(start, end):
        if marker[n] and n > start:
            break
        taken += words[n]
        if len(taken) >= WORDS:
            break
    return _digest(taken[:WORDS]) if len(taken) >= MIN_WORDS else ""


def stdlib_text_keys(text: str) -> dict[str, str]:
    """The keys computed line by line, every line casefolded and matched on its own."""
    keys = {"body_key": _digest(_WORD.findall(text.casefold()))}
    words: list[list[str]] = []
    marker: list[bool] = []
    start: int | None = None
    for raw in text.splitlines():
        line = _PREFIX.sub("", raw)
        found = _WORD.findall(line.casefold())
        if not found:
            continue
        is_marker = bool(_MARKER.match(line)) or line.rstrip().casefold().endswith(_WROTE)
        if start is None and (is_marker or raw.lstrip().startswith((">", "|"))):
            start = len(words)
        words.append(found)
        marker.append(is_marker)
    own = _window(words, marker, 0, len(words) if start is None else start)
    if own:
        keys["text_key"] = own
    if start is not None:
        quotes: dict[str, None] = {}
        for n in range(start, min(len(words), start + MAX_QUOTE_LINES)):
            if not marker[n] and (key := _window(words, marker, n, len(words))):
                quotes.setdefault(key)
        if quotes:
            keys["quote_keys"] = " ".join(quotes)
    return keys


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
    reference = _STDLIB_HEADERS.parsebytes(raw, headersonly=True)
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


@pytest.mark.slow
def test_fast_paths_match_the_stdlib_on_every_real_mail() -> None:
    files = _files(1)
    assert len(files) > 13_000
    assert sum(check(p) for p in files) > 100_000
