"""What a message's text says about threading: its own words, and the words it quotes.

Archives such as Enron carry no In-Reply-To or References, and replies often have a blank
or changed subject; what still ties a reply to its message is that it quotes it. A
message's text gives three keys, kept in ``MessageData.extra`` (short hex digests: the
text itself is never kept):

- ``body_key``: every word of the body, casefolded, in order. Two copies of one message
  filed in different folders have the same words even where their line wrapping differs.
- ``text_key``: the first ``WORDS`` words of the message's own text (its body up to the
  first quote marker), when it has at least ``MIN_WORDS``.
- ``quote_keys``: for every line of the quoted part (from the first quote marker on), the
  same digest of the first ``WORDS`` words from that line up to the next marker.

A reply quotes a message when one of its ``quote_keys`` is the message's ``text_key``:
quoting keeps the start of every quoted line (``>`` prefixes, Outlook's
``-----Original Message-----`` header block, Lotus Notes' ``To:``/``Subject:`` block) and
rewrapping only moves line ends, which words ignore.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

BODY_KEY, TEXT_KEY, QUOTE_KEYS = "body_key", "text_key", "quote_keys"
WORDS = 20  # words per key: enough to tell messages apart, few enough to survive edits
MIN_WORDS = 5  # shorter texts ("Thanks!", "ok") would match too much
MAX_QUOTE_LINES = 400  # quoted lines (with words) keyed per message: bounds hostile input

_WORD = re.compile(r"\w+")
# What a quote prefix is made of: ``>``, ``|`` and whitespace (the characters ``\s`` and
# ``str.isspace`` match; casefolding never turns one into another character or back).
_QUOTE_PREFIX = ">|\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(
    chr(c) for c in range(0x2000, 0x200B)
) + "\u2028\u2029\u202f\u205f\u3000"
_MARKER = re.compile(
    r"^(?:-{2,}\s*(?:original message|forwarded by|original text|reply message)"
    r"|_{5,}"
    r"|(?:from|sent|to|cc|date|subject|von|gesendet|an|betreff|от|кому|тема|дата)\s*:)",
    re.IGNORECASE,
)
_WROTE = ("wrote:", "schrieb:", "писал:", "написал:", "a écrit :", "a écrit:")


def _is_marker(line: str, folded: str) -> bool:
    """A line that starts a quote: ``-----Original Message-----``, a header line of a
    quoted block (``From:``, ``To:``, ``Subject:``...), or "On ..., X wrote:" (``folded``:
    the line casefolded)."""
    return bool(_MARKER.match(line)) or folded.rstrip().endswith(_WROTE)


def _digest(words: list[str]) -> str:
    return hashlib.blake2b(" ".join(words).encode(), digest_size=8).hexdigest()


# ASCII text (most mail) is keyed on its bytes, lowercased: there ``\w`` is [A-Za-z0-9_],
# casefolding is lowercasing, and the words of a line are what remains when every other
# byte is a space. Lines are cut where ``str.splitlines`` cuts them (an extra empty line
# after each \r\n holds no words: it changes nothing).
_ASCII_SPACE = b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "  # str.isspace() within ASCII
_ASCII_BREAKS = b"\r\x0b\x0c\x1c\x1d\x1e"  # str.splitlines' line ends besides \n
_TO_LINES = bytes.maketrans(_ASCII_BREAKS, b"\n" * len(_ASCII_BREAKS))
_TO_WORDS = bytes(
    c if chr(c).isalnum() or c == 0x5F or c == 0x0A else (0x0A if c in _ASCII_BREAKS else 0x20)
    for c in range(256)
)
_ASCII_PREFIX = b">|" + _ASCII_SPACE
_ASCII_MARKER = re.compile(  # _MARKER on lowercased ASCII (its other words are not ASCII)
    rb"(?:-{2,}[\t\n\x0b\x0c\r\x1c-\x1f ]*"
    rb"(?:original message|forwarded by|original text|reply message)"
    rb"|_{5,}"
    rb"|(?:from|sent|to|cc|date|subject|von|gesendet|an|betreff)[\t\n\x0b\x0c\r\x1c-\x1f ]*:)"
)
_ASCII_MARKER_WORDS = {
    b"from", b"sent", b"to", b"cc", b"date", b"subject", b"von", b"gesendet", b"an", b"betreff"
}
_ASCII_WROTE = (b"wrote:", b"schrieb:")


def _ascii_lines(text: str) -> tuple[list[bytes], list[list[bytes]], list[bool], int | None]:
    """Every word of an ASCII text, and its lines with words: their words, whether each is
    a marker (``_is_marker``), and the first line of the quoted part (None: no quote)."""
    low = text.encode("ascii").lower()
    body: list[bytes] = []
    words: list[list[bytes]] = []
    marker: list[bool] = []
    start: int | None = None
    lines = low.translate(_TO_LINES).split(b"\n")
    for n, found_line in enumerate(low.translate(_TO_WORDS).split(b"\n")):
        found = found_line.split()
        if not found:
            continue
        body += found
        if start is not None and len(words) >= start + MAX_QUOTE_LINES + WORDS:
            body += b" ".join(low.translate(_TO_WORDS).split(b"\n")[n + 1 :]).split()
            break
        raw = lines[n]
        line = raw.lstrip(_ASCII_PREFIX)
        is_marker = bool(
            (line[:1] in (b"-", b"_") or found[0] in _ASCII_MARKER_WORDS)
            and _ASCII_MARKER.match(line)
        ) or (
            found[-1].endswith((b"wrote", b"schrieb"))
            and line.rstrip(_ASCII_SPACE).endswith(_ASCII_WROTE)
        )
        if start is None and (is_marker or raw.lstrip(_ASCII_SPACE)[:1] in (b">", b"|")):
            start = len(words)
        words.append(found)
        marker.append(is_marker)
    return body, words, marker, start


def _ascii_keys(text: str) -> dict[str, str]:
    body, words, marker, start = _ascii_lines(text)
    return _keys(_bytes_digest(body), words, marker, start, _bytes_window)


def _keys(body_key: str, words: Any, marker: list[bool], start: int | None,
          window: Callable[[Any, list[bool], int, int], str]) -> dict[str, str]:  # fmt: skip
    """The keys of a text cut into lines of words (``str`` or ASCII ``bytes`` words, with
    their ``window``): the body's, its own text's, and each quoted line's."""
    keys = {BODY_KEY: body_key}
    own = window(words, marker, 0, len(words) if start is None else start)
    if own:
        keys[TEXT_KEY] = own
    if start is not None:
        quotes: dict[str, None] = {}
        for n in range(start, min(len(words), start + MAX_QUOTE_LINES)):
            if not marker[n] and (key := window(words, marker, n, len(words))):
                quotes.setdefault(key)
        if quotes:
            keys[QUOTE_KEYS] = " ".join(quotes)
    return keys


def _bytes_digest(words: list[bytes]) -> str:
    return hashlib.blake2b(b" ".join(words), digest_size=8).hexdigest()


def _bytes_window(words: list[list[bytes]], marker: list[bool], start: int, end: int) -> str:
    """``_window`` over the words of an ASCII text."""
    taken: list[bytes] = []
    for n in range(start, end):
        if marker[n] and n > start:
            break
        taken += words[n]
        if len(taken) >= WORDS:
            break
    if len(taken) < MIN_WORDS:
        return ""
    return _bytes_digest(taken[:WORDS])


def text_keys(text: str) -> dict[str, str]:
    """``body_key``, and ``text_key`` and ``quote_keys`` where the text has them, for
    ``MessageData.extra`` (``quote_keys`` space-separated)."""
    if text.isascii():
        return _ascii_keys(text)
    folded = text.casefold()  # casefolded once: it keeps every line break where it was
    lows = folded.splitlines()
    body: list[str] = []  # every word, whatever the line ends (no word spans a line end)
    # Lines with words only: a window then spans at most ``WORDS`` lines, whatever the
    # blank lines between them (a hostile text of blank lines costs nothing).
    words: list[list[str]] = []
    marker: list[bool] = []
    start: int | None = None  # the first line of the quoted part
    for n, (raw, low) in enumerate(zip(text.splitlines(), lows, strict=True)):
        found = _WORD.findall(low)  # a quote prefix holds no word characters
        if not found:
            continue
        body += found
        if start is not None and len(words) >= start + MAX_QUOTE_LINES + WORDS:
            # Past the last window keyed: the rest counts for ``body_key`` only.
            body += _WORD.findall("\n".join(lows[n + 1 :]))
            break
        line = raw.lstrip(_QUOTE_PREFIX)
        is_marker = _is_marker(line, low)
        if start is None and (is_marker or raw.lstrip().startswith((">", "|"))):
            start = len(words)
        words.append(found)
        marker.append(is_marker)
    return _keys(_digest(body), words, marker, start, _window)


def _window(words: list[list[str]], marker: list[bool], start: int, end: int) -> str:
    """The digest of the first ``WORDS`` words from line ``start``, stopping at a marker
    line or ``end``; "" when there are fewer than ``MIN_WORDS``."""
    taken: list[str] = []
    for n in range(start, end):
        if marker[n] and n > start:
            break
        taken += words[n]
        if len(taken) >= WORDS:
            break
    if len(taken) < MIN_WORDS:
        return ""
    return _digest(taken[:WORDS])
