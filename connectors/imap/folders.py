"""Which folders of the mailbox are read: INBOX and the sent folder, found by its
SPECIAL-USE flag ``\\Sent`` (RFC 6154) or, on servers without it, by a common name;
or the configured list, where an entry starting with a backslash names a folder by
its special use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectors.base import NotFound

_SENT_NAMES = (
    "sent",
    "sent items",
    "sent messages",
    "sent mail",
    "sent-mail",
    "отправленные",
    "отправленные письма",
    "gesendet",
    "gesendete objekte",
    "envoyés",
    "elementos enviados",
)


def resolve_folders(client: Any, configured: tuple[str, ...] | None) -> list[tuple[str, bool]]:
    """(name, found by us) of each folder to read; ``configured`` None: INBOX and sent."""
    listing = [
        (tuple(bytes(f).lower() for f in flags), name)
        for flags, _delimiter, name in client.list_folders()
        if b"\\noselect" not in {bytes(f).lower() for f in flags}
    ]
    names = {name for _flags, name in listing}
    resolved: list[tuple[str, bool]] = []
    wanted = configured or ("INBOX", "\\Sent")
    for entry in wanted:
        if entry.startswith("\\"):
            name = _by_use(listing, entry)
            if name is None:
                if configured is not None:
                    raise NotFound(f"no folder marked {entry} in the mailbox")
                continue  # no sent folder: INBOX alone
            resolved.append((name, configured is None))
        elif entry.upper() == "INBOX":
            resolved.append(("INBOX", False))
        elif entry in names:
            resolved.append((entry, False))
        else:
            raise NotFound(f"no folder {entry!r} in the mailbox")
    return list(dict.fromkeys(resolved))


def _by_use(listing: Sequence[tuple[tuple[bytes, ...], str]], use: str) -> str | None:
    flag = use.lower().encode()
    for flags, name in listing:
        if flag in flags:
            return name
    if flag != b"\\sent":
        return None
    for wanted in _SENT_NAMES:  # servers without SPECIAL-USE
        for _flags, name in listing:
            leaf = name.replace(".", "/").rsplit("/", 1)[-1]
            if leaf.lower() == wanted:
                return name
    return None
