"""Outside text made safe to show: one line for headers, no direction tricks anywhere.

Titles, names and subjects come from outside (an organiser's event, a sender's mail, a
typed task). Before one reaches a mail Subject, any header, a display name or a file name
it goes through ``one_line``: every Unicode line separator and control character (``\\n``,
``\\r``, ``\\v``, ``\\f``, ``\\x1c``–``\\x1e``, ``\\x85``, U+2028, U+2029, NUL, …: categories
Cc, Zl and Zp) becomes a space, so no text can start a header of its own, and a notice is
never refused by the mail library because of what a title says. Wherever text is shown
(subjects, the titles in message bodies, pages), ``shown`` drops the bidirectional
override, embedding, isolate and mark characters, which could make a title read
backwards or hide what follows it. Pure code.
"""

from __future__ import annotations

import re
import unicodedata

# RLE LRE PDF LRO RLO, LRI RLI FSI PDI, LRM RLM, ALM
BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)
_BREAKING = frozenset({"Cc", "Zl", "Zp"})
_SPACES = re.compile(r" {2,}")
ELLIPSIS = "…"


def _char(ch: str, keep_lines: bool) -> str:
    if ch in BIDI_CONTROLS:
        return ""
    if ch.isascii() and ch.isprintable():
        return ch
    if keep_lines and ch in "\n\t":
        return ch
    category = unicodedata.category(ch)
    if category == "Cs":  # a lone surrogate (undecodable bytes): not encodable anywhere
        return "\ufffd"
    if category in _BREAKING:
        return " "
    return ch


def one_line(text: str, max_len: int | None = None) -> str:
    """``text`` on one line: line separators and control characters → one space each
    (runs of spaces collapsed, ends stripped), bidi controls dropped; longer than
    ``max_len`` → cut, ending in "…"."""
    flat = "".join(_char(ch, keep_lines=False) for ch in text)
    flat = _SPACES.sub(" ", flat).strip()
    if max_len is not None and len(flat) > max_len:
        flat = flat[: max(max_len - 1, 0)].rstrip() + ELLIPSIS
    return flat


def shown(text: str) -> str:
    """Multi-line ``text`` as it may be shown: bidi controls dropped; line breaks and tabs
    kept, ``\\r\\n``/``\\r`` and the other line separators read as ``\\n``, other control
    characters → a space."""
    text = text.replace("\r\n", "\n")
    out = []
    for ch in text:
        if ch in "\r\v\f\x1c\x1d\x1e\x85\u2028\u2029":
            out.append("\n")
        else:
            out.append(_char(ch, keep_lines=True))
    return "".join(out)
