"""Reading a mail message within bounds, before Python's email parser builds it.

Every message the service parses (mail archives, IMAP, Gmail headers, its own inbox)
goes through ``read_headers`` or ``read_message``. They first count, in one linear pass
over the bytes, the header lines of the message and its MIME containers (multiparts and
attached messages, which bound how deep parts can nest); a message beyond
``ParseLimits.mime_headers`` or ``ParseLimits.mime_depth`` is refused with
``InvalidData`` naming the limit. Any error of the parser itself becomes ``InvalidData``
with its kind: never a traceback, never the message's content.
"""

from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

from connectors.base import DEFAULT_LIMITS, InvalidData, ParseLimits

_HEADERS_PARSER = BytesParser(policy=policy.compat32)
_MESSAGE_PARSER = BytesParser(policy=policy.default)
_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")
_CONTINUED = re.compile(rb"\n[ \t]")
_CONTAINER = re.compile(
    rb"^content-type:[ \t\r\n]*(?:multipart/|message/(?:rfc822|global)\b)",
    re.MULTILINE | re.IGNORECASE,
)


def _end_of_headers(raw: bytes) -> tuple[int, int] | None:
    """Where ``_END_OF_HEADERS`` first matches in ``raw`` (start, end), found with two
    ``find`` calls instead of the regex: the match holds the earliest \n followed by
    \n or \r\n, with the \r before it if there is one."""
    a, b = raw.find(b"\n\n"), raw.find(b"\n\r\n")
    if a < 0 and b < 0:
        return None
    first = a if b < 0 or 0 <= a <= b else b
    start = first - 1 if first > 0 and raw[first - 1] == 0x0D else first
    return start, first + (2 if first == a else 3)


def check_message(raw: bytes, limits: ParseLimits = DEFAULT_LIMITS, *, body: bool = True) -> None:
    """Raise ``InvalidData`` when ``raw`` goes beyond ``limits`` (``body``: its parts too)."""
    end = _end_of_headers(raw)
    head = raw[: end[0] + 1] if end else raw
    lines = head.count(b"\n") + 1 - len(_CONTINUED.findall(head))
    if lines > limits.mime_headers:
        raise InvalidData(f"more than {limits.mime_headers} header lines")
    if body:
        for containers, _ in enumerate(_CONTAINER.finditer(raw), 1):
            if containers > limits.mime_depth:
                raise InvalidData(
                    f"more than {limits.mime_depth} nested MIME parts (multiparts or messages)"
                )


def read_headers(raw: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> Message:
    """The message's headers (compat32: values as they were sent), within ``limits``; the
    body is the payload, as a string."""
    check_message(raw, limits, body=False)
    try:
        return _head_then_body(raw) or _HEADERS_PARSER.parsebytes(raw, headersonly=True)
    except Exception as exc:  # the parser is lenient; anything it raises is a bad message
        raise InvalidData(f"unparseable: {type(exc).__name__}") from None


def _head_then_body(raw: bytes) -> Message | None:
    """``parsebytes(raw, headersonly=True)`` without feeding the body through the parser
    line by line: the lines up to the first blank one are parsed, the rest is the payload.
    None (parse it all) when there is no blank line, or the parser ends the headers before
    it (a line that is no header): then the whole parse decides."""
    end = _end_of_headers(raw)
    if end is None:
        return None
    start, body = end
    cut = start + (2 if raw[start] == 0x0D else 1)  # the last header's line end
    msg = _HEADERS_PARSER.parsebytes(raw[:cut], headersonly=True)
    if msg.get_payload():  # the headers ended before the blank line
        return None
    msg.set_payload(raw[body:].decode("ascii", "surrogateescape"))
    return msg


def read_message(raw: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> EmailMessage:
    """The whole message (the default policy, for its text), within ``limits``."""
    check_message(raw, limits)
    try:
        msg = _MESSAGE_PARSER.parsebytes(raw)
    except Exception as exc:  # RecursionError included: refused, not raised
        raise InvalidData(f"unparseable: {type(exc).__name__}") from None
    if not isinstance(msg, EmailMessage):
        raise InvalidData("unparseable: not a message")
    return msg
