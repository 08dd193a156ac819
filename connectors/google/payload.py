"""The text of a Gmail message from its ``format=full`` payload (``users.messages.get``).

Gmail gives the MIME tree of the message as JSON: each part with its ``mimeType``,
``filename``, ``headers`` and ``body``; a part's content, transfer encoding undone, is
``body.data`` (base64url). A part with a filename (an attachment) comes with
``body.attachmentId`` and no data: its content would need ``messages.attachments.get``,
which is never called here. The text chosen is the one ``email``'s ``get_body(("plain",
"html"))`` chooses (as ``connectors.archive.text.body_text`` for an archive): the first
text/plain part that is not an attachment, else the first text/html part as text, within
multipart/alternative and mixed parts and the start part of multipart/related; attached
messages are not looked into. A text part Gmail sent as an attachment id (an inline part
with a filename) counts as an attachment: when it leaves no text part, the text is
unknown (None), not empty.

Bounds: at most ``MAX_TEXT_BYTES`` of the chosen part are decoded and at most
``MAX_TEXT_CHARS`` (``connectors.archive.text``) of its text kept; at most ``MAX_PARTS``
parts, nested at most ``ParseLimits.mime_depth`` deep, are looked at.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from email.message import Message
from typing import Any

from connectors.archive.text import MAX_TEXT_CHARS, text_of
from connectors.base import DEFAULT_LIMITS, ParseLimits

MAX_TEXT_BYTES = 4 * MAX_TEXT_CHARS  # UTF-8 takes at most 4 bytes a character
_MAX_DATA_CHARS = MAX_TEXT_BYTES // 3 * 4  # base64 characters for that many bytes
MAX_PARTS = 1_000
_PREFERENCE = ("text/plain", "text/html")


def _headers(part: Mapping[str, Any]) -> dict[str, str]:
    """A part's headers by lower-cased name (the first of each name)."""
    found: dict[str, str] = {}
    for header in part.get("headers") or ():
        if isinstance(header, Mapping):
            found.setdefault(str(header.get("name") or "").lower(), str(header.get("value") or ""))
    return found


def _content_type(part: Mapping[str, Any], headers: dict[str, str]) -> Message:
    """The part's Content-Type header (or its mimeType) parsed, for its parameters."""
    parsed = Message()
    parsed["Content-Type"] = headers.get("content-type") or str(part.get("mimeType") or "")
    return parsed


def _candidates(part: Any, depth: int, budget: list[int]) -> Iterator[Mapping[str, Any]]:
    """The text/plain and text/html parts ``get_body`` would look at, in its order (those
    sent as an attachment id too: the caller leaves them out)."""
    if not isinstance(part, Mapping) or depth < 0 or budget[0] <= 0:
        return
    budget[0] -= 1
    headers = _headers(part)
    disposition = headers.get("content-disposition", "").split(";")[0].strip().lower()
    if disposition == "attachment":
        return
    mime = str(part.get("mimeType") or "").lower()
    if mime in _PREFERENCE:
        yield part
        return
    children = part.get("parts")
    if not mime.startswith("multipart/") or not isinstance(children, list):
        return
    if mime == "multipart/related" and children:
        start = _content_type(part, headers).get_param("start")
        first = children[0]
        if isinstance(start, str) and start:
            first = next((c for c in children if isinstance(c, Mapping)
                          and _headers(c).get("content-id", "").strip() == start.strip()),
                         first)  # fmt: skip
        children = [first]
    for child in children:
        yield from _candidates(child, depth - 1, budget)


def _decoded(part: Mapping[str, Any]) -> str | None:
    """The text of one part (its first ``MAX_TEXT_BYTES``), or None when Gmail did not
    send it inline (an attachment id instead) or sent something that is not base64url."""
    body = part.get("body")
    if not isinstance(body, Mapping):
        return None
    data = body.get("data")
    if not isinstance(data, str):
        return None if body.get("attachmentId") else ""
    data = data[:_MAX_DATA_CHARS].rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (ValueError, binascii.Error):
        return None
    charset = _content_type(part, _headers(part)).get_content_charset() or "utf-8"
    try:
        return raw.decode(charset, "replace")
    except (LookupError, UnicodeError):  # an unknown charset, a codec that fails (idna)
        return raw.decode("utf-8", "replace")


def payload_text(payload: Any, limits: ParseLimits = DEFAULT_LIMITS) -> str | None:
    """The text of a message from its ``format=full`` payload: its text/plain part, else
    its text/html part as text (those sent inline); "" when it has neither; None when it
    has one but none inline (then nothing can be said about the text)."""
    found: dict[str, str] = {}  # mime type -> the text of its first part sent inline
    held_back = False  # a text part was sent as an attachment id (or not as base64url)
    for part in _candidates(payload, limits.mime_depth, [MAX_PARTS]):
        mime = str(part.get("mimeType") or "").lower()
        if mime in found:
            continue
        text = _decoded(part)
        if text is None:
            held_back = True
            continue
        found[mime] = text
        if mime == _PREFERENCE[0]:
            break
    chosen = next((m for m in _PREFERENCE if m in found), None)
    if chosen is None:
        return None if held_back else ""
    return text_of(found[chosen], chosen == "text/html", quotes=True)
