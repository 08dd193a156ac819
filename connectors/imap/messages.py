"""Messages out of FETCH replies: the headers of the manager's mail as ``MessageData``
(``changes``), whole messages as ``InboundMessage`` (``fetch_new_bodies``). One message
that cannot be parsed is left out, never stopping the rest."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from assistant.domain.model import MessageData
from connectors.archive.mailbox import InboundMessage, parse_inbound, parse_message
from connectors.base import DEFAULT_LIMITS, InvalidData, ParseLimits

log = logging.getLogger("connectors.imap.mailbox")

HEADER = b"BODY[HEADER]"
BODY = b"BODY[]<0>"
INTERNALDATE = b"INTERNALDATE"


def add_message(
    item: dict[bytes, Any],
    folder: str,
    uidvalidity: int,
    uid: int,
    messages: list[MessageData],
    skipped: list[str],
    limits: ParseLimits = DEFAULT_LIMITS,
) -> None:
    """Append the message of one FETCH item (headers only) to ``messages``, or name it
    in ``skipped``."""
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
    msg.extra.pop("body_hash", None)  # only headers were read
    if msg.extra.get("date_source") == "mtime":
        msg.extra["date_source"] = "internaldate"
    msg.extra["imap_uid"] = str(uid)
    messages.append(msg)


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
