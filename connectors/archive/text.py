"""The text of a mail message: its plain-text part, or its HTML part crudely as text."""

from __future__ import annotations

import contextlib
import html
import re
from email.message import EmailMessage, Message

from connectors.base import DEFAULT_LIMITS, InvalidData, ParseLimits
from connectors.mime import read_message

MAX_TEXT_CHARS = 100_000
_HTML_DROP = re.compile(r"<(script|style|head|title)\b.*?</\1\s*>", re.I | re.S)
_HTML_QUOTE = re.compile(r"<blockquote\b(?:(?!<blockquote\b).)*?</blockquote\s*>", re.I | re.S)
_HTML_BREAK = re.compile(r"<br\s*/?>|</?(?:p|div|tr|li|h[1-6]|table|ul|ol)\b[^>]*>", re.I)
_HTML_TAG = re.compile(r"<[^>]+>")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)


_QUOTE_OPEN, _QUOTE_CLOSE = "\x00quote+\x00", "\x00quote-\x00"
_HTML_QUOTE_TAG = re.compile(r"<(/?)blockquote\b[^>]*>", re.I)


def html_to_text(markup: str, *, quotes: bool = False) -> str:
    """Crude: drop scripts, styles and quoted (``blockquote``) parts, break lines at block
    tags, drop the other tags, unescape entities. With ``quotes``, the quoted parts are
    kept as plain-text mail quotes them, each line led by ``> `` once per level (what a
    reply quotes is what pairs it with the message, ``assistant.domain.latency.quotes``)."""
    text = _HTML_COMMENT.sub("", markup)
    text = _HTML_DROP.sub("", text)
    if quotes:
        text = _HTML_QUOTE_TAG.sub(
            lambda m: f"\n{_QUOTE_CLOSE if m.group(1) else _QUOTE_OPEN}\n", text
        )
    else:
        while True:  # innermost quotes first
            shorter = _HTML_QUOTE.sub("\n", text)
            if shorter == text:
                break
            text = shorter
    text = _HTML_BREAK.sub("\n", text)
    text = html.unescape(_HTML_TAG.sub("", text)).replace("\u00a0", " ")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    if quotes:
        lines = _quoted(lines)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _quoted(lines: list[str]) -> list[str]:
    depth, out = 0, []
    for line in lines:
        if line == _QUOTE_OPEN.strip():
            depth += 1
        elif line == _QUOTE_CLOSE.strip():
            depth = max(0, depth - 1)
        elif depth:
            out.append(f"{'> ' * depth}{line}".rstrip())
        else:
            out.append(line)
    return out


def _part_text(part: Message) -> str:
    content: object = None
    with contextlib.suppress(Exception):  # an unknown charset, a broken transfer encoding
        assert isinstance(part, EmailMessage)
        content = part.get_content()
    if isinstance(content, str):
        return content
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except LookupError:
            return payload.decode("utf-8", "replace")
    return ""


def body_text(
    raw: bytes, limits: ParseLimits = DEFAULT_LIMITS, *, quotes: bool = False
) -> str:
    """The text of a message: its text/plain part, else its text/html part as text
    (``html_to_text``, with its quoted parts when ``quotes``; "" when there is none, or
    the message goes beyond ``limits``)."""
    try:
        msg = read_message(raw, limits)
    except InvalidData:
        return ""
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
    except Exception:
        part = None
    if part is None:
        return ""
    text = _part_text(part)
    if part.get_content_subtype() == "html":
        text = html_to_text(text, quotes=quotes)
    return text.replace("\r\n", "\n")[:MAX_TEXT_CHARS]


def plain_text(msg: Message) -> str:
    """The text of a single text/plain message from its headers-only parse (no second
    parse of the whole message: a quarter of the cost), in its declared charset."""
    data = msg.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    try:
        text = data.decode(msg.get_content_charset() or "utf-8")
    except (LookupError, UnicodeDecodeError):
        text = data.decode("cp1252", "replace")
    return text.replace("\r\n", "\n")[:MAX_TEXT_CHARS]
