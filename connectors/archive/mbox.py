"""Read-only mbox files: the messages of one file, and the ones appended since a token.

The messages are parsed as Maildir files are (``connectors.archive.mailbox``); a token
holds the file's size, the count of messages and hashes of its first and last bytes, so a
file rewritten or cut is read again whole (``TokenExpired``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from assistant.domain.model import MessageData
from connectors.archive.mailbox import OnRead, _load_token, _mtime, _parse_or_skip
from connectors.base import (
    DEFAULT_LIMITS,
    InvalidData,
    MailDelta,
    NotFound,
    ParseLimits,
    TokenExpired,
)

_EDGE = 4096


def _split_mbox(data: bytes) -> Iterator[bytes]:
    """The messages of an mbox chunk, From_ lines removed. A From_ line starts a message
    at the start of the chunk or after an empty line."""
    current: list[bytes] | None = None
    previous_blank = True
    for line in data.splitlines(keepends=True):
        if line.startswith(b"From ") and previous_blank:
            if current is not None:
                yield _strip_separator(current)
            current = []
        elif current is not None:
            current.append(line)
        previous_blank = not line.strip()
    if current is not None:
        yield _strip_separator(current)


def _strip_separator(lines: list[bytes]) -> bytes:
    if lines and not lines[-1].strip():
        lines = lines[:-1]
    return b"".join(lines)


class MboxSource:
    """Messages of one mbox file, read-only; new messages are those appended."""

    def __init__(self, path: Path, *, limits: ParseLimits = DEFAULT_LIMITS) -> None:
        self.path = Path(path)
        self.limits = limits

    def _read(self) -> bytes:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no mbox at {self.path}") from None
        if data.strip() and not data.lstrip(b"\r\n").startswith(b"From "):  # an .eml, a PDF
            raise InvalidData(f"{self.path} is not an mbox file (it does not start with 'From ')")
        return data

    def changes(self, token: str | None, *, on_read: OnRead | None = None) -> MailDelta:
        """All messages (token None) or those appended after ``token``. Raises InvalidData
        when the file is not an mbox (an empty file is an empty mbox). ``on_read`` hears
        how many messages were read (their number is known only at the end: None)."""
        data, mtime = self._read(), _mtime(self.path.stat().st_mtime_ns)
        offset, index = 0, 0
        if token is not None:
            state = _load_token(token, "mbox")
            offset, index = int(state["size"]), int(state["n"])
            if len(data) < offset:
                raise TokenExpired("the mbox shrank")
            if _edges(data, offset) != state["edges"]:
                raise TokenExpired("the mbox was rewritten")
        skipped: list[str] = []
        messages: list[MessageData] = []
        for raw in _split_mbox(data[offset:]):
            if on_read is not None:
                on_read(index + 1, None)
            msg = _parse_or_skip(raw, str(index), "", mtime, skipped, self.limits)
            if msg is not None:
                messages.append(msg)
            index += 1
        edges = _edges(data, len(data))
        next_token = json.dumps(
            {"v": 1, "kind": "mbox", "size": len(data), "n": index, "edges": edges}
        )
        return MailDelta(
            full=token is None, messages=tuple(messages), token=next_token, skipped=tuple(skipped)
        )


def _edges(data: bytes, offset: int) -> str:
    head = data[: min(_EDGE, offset)]
    tail = data[max(0, offset - _EDGE) : offset]
    return hashlib.sha256(head + b"\0" + tail).hexdigest()[:24]
