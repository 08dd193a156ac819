"""The text of a mail message: its plain-text part, or its HTML part crudely as text."""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

from connectors.base import DEFAULT_LIMITS, InvalidData, ParseLimits
from connectors.mime import check_message, read_message

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


def body_text(
    raw: bytes, limits: ParseLimits = DEFAULT_LIMITS, *, quotes: bool = False
) -> str:
    """The text of a message: its text/plain part, else its text/html part as text
    (``html_to_text``, with its quoted parts when ``quotes``; "" when there is none, or
    the message goes beyond ``limits``).

    The part is the one ``get_body(preferencelist=("plain", "html"))`` of the message
    parsed with the default policy gives, in the charset ``get_content`` reads it with;
    found for a fraction of that cost by parsing with compat32 (no header registry) and
    walking the parts as ``get_body`` does (``_compat32_body``). The two read a message
    alike when the Content-Type, Content-Disposition and Content-Transfer-Encoding of
    every part are ASCII of the forms ``_SIMPLE`` (what nearly all mail sends); any other
    message is read the default policy's way (``_stdlib_body_text``)."""
    try:
        check_message(raw, limits)
    except InvalidData:
        return ""
    try:
        part = _compat32_body(raw)
    except _NotSimple:
        return _stdlib_body_text(raw, limits, quotes)
    except Exception:  # where get_body fails too (a multipart/related that is not one)
        return ""
    if part is None:
        return ""
    content: object = None
    with contextlib.suppress(Exception):  # ``get_content`` of a text part, the same calls
        payload: Any = part.get_payload(decode=True)
        charset: Any = part.get_param("charset", "ASCII")
        content = payload.decode(charset, errors="replace")
    return _finished(_decoded(part, content), part, quotes)


def _stdlib_body_text(raw: bytes, limits: ParseLimits, quotes: bool) -> str:
    """``body_text`` by the stdlib alone: a parse with the default policy, ``get_body``."""
    try:
        msg = read_message(raw, limits)
    except InvalidData:
        return ""
    try:
        part = msg.get_body(preferencelist=_PREFERENCES)
    except Exception:
        part = None
    if part is None:
        return ""
    content: object = None
    with contextlib.suppress(Exception):  # an unknown charset, a broken transfer encoding
        assert isinstance(part, EmailMessage)
        content = part.get_content()
    return _finished(_decoded(part, content), part, quotes)


def _decoded(part: Message, content: object) -> str:
    """``content`` when ``get_content`` gave a text, else the part's decoded payload in its
    charset as ``get_content_charset`` reads it (utf-8 when none is given or it is unknown)."""
    if isinstance(content, str):
        return content
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except (LookupError, UnicodeError):  # unknown, or a codec that fails anyway (idna)
            return payload.decode("utf-8", "replace")
    return ""


def _finished(text: str, part: Message, quotes: bool) -> str:
    return text_of(text, part.get_content_subtype() == "html", quotes=quotes)


def text_of(content: str, is_html: bool, *, quotes: bool = False) -> str:
    """A text part's content as mail text is read everywhere (archives, IMAP, Gmail, Graph,
    EWS): HTML as text (``html_to_text``), LF line ends, at most ``MAX_TEXT_CHARS``."""
    if is_html:
        content = html_to_text(content, quotes=quotes)
    return content.replace("\r\n", "\n")[:MAX_TEXT_CHARS]


# The header values the default policy's header registry and compat32's plain strings read
# alike (type, parameters, boundary, charset, disposition, transfer encoding): printable
# ASCII, folded only between items, tokens without RFC 2231's ``*``, quoted strings
# without a backslash or an encoded word. ``_COMPAT32`` then builds the same tree of parts
# as the default policy, and ``get_content_type``, ``get_param``, ``get_payload`` and
# ``get_content_disposition`` give what ``get_body`` and ``get_content`` read.
_PREFERENCES = ("plain", "html")
_COMPAT32 = BytesParser(policy=policy.compat32)
_FWS = r"(?:[ \t]|(?:\r\n|\r|\n)[ \t])*"
_WORD = r"[!#$%&'+.0-9A-Z^_`a-z{|}~-]+"  # RFC 2045's, less RFC 2231's ``*``
_NAME = r"[!#$&+.0-9A-Z^_`a-z{|}~-]+"  # a parameter's: no ``'`` or ``%`` either
_VALUE = r"[!#$%&+.0-9A-Z^_`a-z{|}~-]+"  # a parameter's: no ``'``
_QUOTED = r'"(?:[ !#-<>-\[\]-~]|=(?!\?))*"'
_PARAMS = rf"(?:;{_FWS}(?:{_NAME}{_FWS}={_FWS}(?:{_VALUE}|{_QUOTED}){_FWS})?)*"
_SIMPLE = {
    "content-type": re.compile(rf"{_FWS}{_WORD}/{_WORD}{_FWS}{_PARAMS}"),
    "content-disposition": re.compile(rf"{_FWS}{_WORD}{_FWS}{_PARAMS}"),
    "content-transfer-encoding": re.compile(_WORD),
}


class _NotSimple(Exception):
    """A message the compat32 walk may read otherwise than the default policy."""


def _compat32_body(raw: bytes) -> Message | None:
    """The part ``get_body(preferencelist=_PREFERENCES)`` picks, from a compat32 parse;
    raises ``_NotSimple`` for a message it may pick otherwise, and what ``get_body``
    raises where it fails."""
    try:
        msg = _COMPAT32.parsebytes(raw)
    except Exception:  # the stdlib way decides (and fails too)
        raise _NotSimple from None
    for part in msg.walk():
        seen: set[str] = set()
        for name, value in part.raw_items():
            key = name.lower()
            if key in _SIMPLE and key not in seen:  # ``get`` reads the first one
                seen.add(key)
                if not (isinstance(value, str) and _SIMPLE[key].fullmatch(value)):
                    raise _NotSimple
    best, body = len(_PREFERENCES), None
    for rank, part in _find_body(msg, msg):
        if rank < best:
            best, body = rank, part
            if rank == 0:
                break
    return body


def _find_body(top: Message, part: Any) -> Iterator[tuple[int, Message]]:
    """``MIMEPart._find_body`` on compat32 parts, step for step (its test of ``top`` and
    not ``part`` for being a multipart, its failure on a multipart/related whose payload
    is a string, included); a multipart/related with a ``start`` root is ``_NotSimple``."""
    if part.get_content_disposition() == "attachment":  # ``is_attachment``
        return
    maintype, subtype = part.get_content_type().split("/")
    if maintype == "text":
        if subtype in _PREFERENCES:
            yield _PREFERENCES.index(subtype), part
        return
    if maintype != "multipart" or not top.is_multipart():
        return
    if subtype != "related":
        if part.is_multipart():  # ``iter_parts``
            for subpart in part.get_payload():
                yield from _find_body(top, subpart)
        return
    if part.get_param("start"):  # the root is found by Content-ID: the stdlib decides
        raise _NotSimple
    subparts = part.get_payload()
    candidate = subparts[0] if subparts else None
    if candidate is not None:
        yield from _find_body(top, candidate)


def plain_text(msg: Message) -> str:
    """The text of a single text/plain message from its headers-only parse (no second
    parse of the whole message: a quarter of the cost), in its declared charset."""
    data = msg.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    try:
        text = data.decode(msg.get_content_charset() or "utf-8")
    except (LookupError, UnicodeError):
        text = data.decode("cp1252", "replace")
    return text.replace("\r\n", "\n")[:MAX_TEXT_CHARS]
