"""The plain stdlib way of reading a mail's headers and keying its text: what the archive
reader did before its fast paths (issue 16.4), kept as the reference they are compared with
(tests/integration/test_archive_fast_paths.py, tests/unit/test_quote_keys_ascii.py)."""

from __future__ import annotations

import contextlib
import hashlib
import re
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesParser
from email.utils import getaddresses

from assistant.domain.latency.quotes import MAX_QUOTE_LINES, MIN_WORDS, WORDS

STDLIB_HEADERS = BytesParser(policy=policy.compat32)


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
