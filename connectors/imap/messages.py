"""Messages out of FETCH replies: the headers of the manager's mail as ``MessageData``
(``changes``), whole messages as ``InboundMessage`` (``fetch_new_bodies``). One message
that cannot be parsed is left out, never stopping the rest.

``changes`` also reads the start of each body (``BODY.PEEK[TEXT]<0.TEXT_BYTES>``): from the
headers and that text, ``text_keys`` (``assistant.domain.latency.quotes``) are added to
``MessageData.extra``, so copies of one message (a Bcc copy, the same mail filed twice
with its own Message-ID) and a reply that quotes a message without threading headers are
recognised as they are for imported archives. The body is cut at a byte offset of the
body, not of the whole message: copies with other headers (another To list, a Bcc copy)
are cut at the same place. A cut body ends at its last whole line, so a base64 or
quoted-printable text part is never cut inside an encoded unit."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from assistant.domain.latency.quotes import text_keys
from assistant.domain.model import MessageData
from connectors.archive.mailbox import InboundMessage, parse_inbound, parse_message
from connectors.archive.text import body_text, plain_text
from connectors.base import DEFAULT_LIMITS, InvalidData, ParseLimits
from connectors.mime import read_headers

log = logging.getLogger("connectors.imap.mailbox")

HEADER = b"BODY[HEADER]"
TEXT = b"BODY[TEXT]<0>"
BODY = b"BODY[]<0>"
INTERNALDATE = b"INTERNALDATE"
TEXT_BYTES = 64 * 1024  # of each body read by ``changes``: the text part of nearly any mail
FETCH_HEADER_AND_TEXT = (b"BODY.PEEK[HEADER]", f"BODY.PEEK[TEXT]<0.{TEXT_BYTES}>".encode(),
                         INTERNALDATE)  # fmt: skip


def add_message(
    item: dict[bytes, Any],
    folder: str,
    uidvalidity: int,
    uid: int,
    messages: list[MessageData],
    skipped: list[str],
    limits: ParseLimits = DEFAULT_LIMITS,
) -> None:
    """Append the message of one FETCH item (its header, and the start of its body when the
    item holds it: then its text keys too) to ``messages``, or name it in ``skipped``."""
    source_id = f"{folder}/{uidvalidity}/{uid}"
    header = item.get(HEADER)
    arrived = item.get(INTERNALDATE)
    if not isinstance(header, bytes) or not isinstance(arrived, datetime):
        skipped.append(f"{source_id}: the server sent no header or INTERNALDATE")
        return
    if arrived.tzinfo is None:  # imapclient gives local time when normalising
        arrived = arrived.astimezone()
    try:
        msg = parse_message(
            header,
            source_id=source_id,
            folder=folder,
            mtime=arrived.astimezone(UTC),
            limits=limits,
        )
    except InvalidData as exc:
        skipped.append(f"{source_id}: {exc}")
        return
    except Exception as exc:  # one bad message never stops a sync
        skipped.append(f"{source_id}: {type(exc).__name__}: {exc}")
        return
    msg.extra.pop("body_hash", None)  # the body was not read, or not all of it
    text = item.get(TEXT)
    if isinstance(text, bytes):
        if not header.endswith((b"\n\n", b"\n\r\n")):
            header += b"\r\n"  # a server that left out the blank line after the header
        try:
            msg.extra.update(text_keys(_text(header + _whole_lines(text), limits)))
        except Exception as exc:  # the message still counts, by its headers alone
            log.warning("mail %s: text not read (%s)", source_id, type(exc).__name__)
    if msg.extra.get("date_source") == "mtime":
        msg.extra["date_source"] = "internaldate"
    msg.extra["imap_uid"] = str(uid)
    messages.append(msg)


def _text(raw: bytes, limits: ParseLimits) -> str:
    """The text of a message (or of its start), as ``parse_message(with_text=True)`` reads
    an archived one: a single text/plain part from its headers-only parse, anything else
    through ``body_text`` (a parse of the whole)."""
    head = read_headers(raw, limits)
    if head.get_content_type() == "text/plain" and not head.is_multipart():
        return plain_text(head)
    return body_text(raw, limits, quotes=True)


def _whole_lines(text: bytes) -> bytes:
    """The start of a body as read (at most ``TEXT_BYTES``): when it was cut, up to its last
    line end (no half word, encoded unit or character at the end); a single line as is."""
    if len(text) < TEXT_BYTES:
        return text
    end = text.rfind(b"\n")
    return text[: end + 1] if end > 0 else text


def inbound_message(
    item: dict[bytes, Any], source_id: str, limits: ParseLimits = DEFAULT_LIMITS
) -> InboundMessage | None:
    """The whole message of one FETCH item; None when it cannot be read (logged)."""
    raw = item.get(BODY)
    if not isinstance(raw, bytes):
        bodies = (v for k, v in item.items() if k.startswith(b"BODY[") and isinstance(v, bytes))
        raw = next(bodies, None)
    if raw is None:
        return None
    arrived = item.get(INTERNALDATE)
    mtime = arrived if isinstance(arrived, datetime) else datetime.now(UTC)
    if mtime.tzinfo is None:
        mtime = mtime.astimezone()
    try:
        return parse_inbound(raw, source_id=source_id, mtime=mtime.astimezone(UTC), limits=limits)
    except InvalidData as exc:
        log.warning("mail %s left out: %s", source_id, exc)
        return None
    except Exception as exc:  # one bad message never stops the inbox
        log.warning("mail %s left out: %s", source_id, type(exc).__name__)
        return None
