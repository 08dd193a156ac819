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


def text_keys(text: str) -> dict[str, str]:
    """``body_key``, and ``text_key`` and ``quote_keys`` where the text has them, for
    ``MessageData.extra`` (``quote_keys`` space-separated)."""
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
    keys = {BODY_KEY: _digest(body)}
    own = _window(words, marker, 0, len(words) if start is None else start)
    if own:
        keys[TEXT_KEY] = own
    if start is not None:
        quotes: dict[str, None] = {}
        for n in range(start, min(len(words), start + MAX_QUOTE_LINES)):
            if not marker[n] and (key := _window(words, marker, n, len(words))):
                quotes.setdefault(key)
        if quotes:
            keys[QUOTE_KEYS] = " ".join(quotes)
    return keys


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
