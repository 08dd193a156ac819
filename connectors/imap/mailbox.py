"""The manager's mailbox over IMAP (RFC 3501), read-only, incremental by UID.

Folders: INBOX and the sent folder, found by its SPECIAL-USE flag ``\\Sent`` (RFC 6154)
or, on servers without it, by a common name ("Sent", "Sent Items", "Отправленные"...).
A configured list replaces that choice; an entry starting with a backslash (``"\\Sent"``)
names a folder by its special use.

Change token (an opaque JSON string): per folder its UIDVALIDITY, the last UID read and,
where the server has CONDSTORE (RFC 7162), its HIGHESTMODSEQ, and which folders were read
(so a sync from a token needs no LIST: a folder gone since fails its STATUS and the next
sync looks the folders up again). One sync costs, after LOGIN:

* nothing new: one ``STATUS (UIDVALIDITY UIDNEXT HIGHESTMODSEQ)`` per folder;
* new mail in a folder: ``EXAMINE`` (read-only select), ``UID SEARCH UID n+1:*`` and one
  ``UID FETCH (BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.65536> INTERNALDATE)`` per 250
  messages, never in a way that sets ``\\Seen`` (EXAMINE and BODY.PEEK both guarantee it).

What is read of a message: its header, and the first ``TEXT_BYTES`` (64 KiB) of its body,
for the text keys of ``assistant.domain.latency.quotes`` (issue 14: copies of one message
are one message, a reply that quotes a message pairs with it even with a blank subject
and no In-Reply-To). 64 KiB holds the text part of nearly every mail; beyond it the keys
are those of the text read (attachments after the text are never read in full). The cut
is at an offset of the body (``TEXT``), not of the whole message, so copies whose headers
differ (a Bcc copy, another To list) keep identical bodies identical. At most 250 x 64 KiB
(16 MiB) per FETCH reply; mail without attachments costs about what its text weighs.

What is new is decided by UID alone: UIDs only grow within one UIDVALIDITY, and
``MailDelta`` carries new messages only (no flags, no deletions), so a flag change or an
expunge (what CHANGEDSINCE and QRESYNC's VANISHED would report) never produces a message
twice. CONDSTORE serves as a guard instead: a HIGHESTMODSEQ that went *down* under the
same UIDVALIDITY means the server lost its state, and that folder is re-read. Filtering
new UIDs with ``CHANGEDSINCE`` would add nothing but the risk of missing a message on a
server that renumbered its mod-sequences.

A changed UIDVALIDITY (the folder was deleted and recreated, or the server rebuilt its
indexes) re-reads that folder in full and the delta says ``full=True``; copies already
stored are recognised downstream by Message-ID. A message that cannot be parsed is left
out and named in ``MailDelta.skipped``.

``fetch_new_bodies(token)`` serves the service's own inbox, where the text matters: the
whole messages (``BODY.PEEK[]``, the first MiB of each) of one folder with a UID above the
token's, as ``InboundMessage``; its token (per folder: UIDVALIDITY and the last UID) is of
its own kind, not interchangeable with ``changes``'.

``idle(timeout)`` waits with IDLE (RFC 2177) on INBOX and says whether mail arrived, for
push; the caller then calls ``changes``. The connection is kept between calls, reopened
after any error, and closed by ``close()``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import ssl
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from imapclient import exceptions as imap_errors

from assistant.domain.model import MessageData
from connectors.archive.mailbox import InboundMessage
from connectors.base import (
    DEFAULT_LIMITS,
    MailDelta,
    NotFound,
    ParseLimits,
    TokenExpired,
)
from connectors.imap.connection import Security, leave, missing, open_client, translated
from connectors.imap.folders import resolve_folders
from connectors.imap.messages import (
    FETCH_HEADER_AND_TEXT,
    INTERNALDATE,
    add_message,
    inbound_message,
)
from connectors.netguard import NetPolicy, operator_policy

FETCH_BATCH = 250
MAX_IDLE = 25 * 60.0  # RFC 2177: re-issue IDLE at least every 29 minutes
BODY_BATCH = 50
MAX_BODY_BYTES = 1 << 20  # enough for any text part; attachments beyond it are cut off


class ImapMailbox:
    """New messages of the manager's INBOX and sent folder, read over IMAP."""

    def __init__(
        self,
        host: str,
        username: str,
        password: str,
        *,
        port: int | None = None,
        security: Security = "ssl",
        folders: Sequence[str] | None = None,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        policy: NetPolicy | None = None,
        limits: ParseLimits = DEFAULT_LIMITS,
    ) -> None:
        if security not in ("ssl", "starttls", "none"):
            raise ValueError(f"security must be ssl, starttls or none, not {security!r}")
        self.host = host
        self.port = port or (993 if security == "ssl" else 143)
        self.username = username
        self._password = password
        self.security: Security = security
        self.folders = tuple(folders) if folders else None
        self.timeout = timeout
        self._ssl_context = ssl_context
        self.policy = policy or operator_policy()
        self.limits = limits
        self._client: Any = None
        self._resolved: list[tuple[str, bool]] | None = None  # (name, found by us)
        self._inbox_next: int | None = None  # INBOX UIDNEXT as of the last changes()

    def __repr__(self) -> str:  # no password, ever
        return f"ImapMailbox({self.username!r} at {self.host}:{self.port}, {self.security})"

    # ------------------------------------------------------------------ public

    def changes(self, token: str | None) -> MailDelta:
        """Messages that arrived since ``token`` (None: every message of the folders)."""
        state = self._load(token) if token is not None else {}
        if self._resolved is None and token is not None:
            self._resolved = self._folders_of(token)
        with self._translated():
            client = self._connected()
            condstore = client.has_capability("CONDSTORE")
            full = token is None
            messages: list[MessageData] = []
            skipped: list[str] = []
            next_state: dict[str, dict[str, int | None]] = {}
            found: list[tuple[str, bool]] = []
            for folder, found_by_us in self._folders(client):
                try:
                    folder_state, reread = self._sync_folder(
                        client, folder, state.get(folder), condstore, messages, skipped
                    )
                except NotFound:
                    if not found_by_us:
                        raise
                    self._resolved = None  # our sent folder went away: look again next time
                    continue
                full = full or reread
                next_state[folder] = folder_state
                found.append((folder, found_by_us))
                if folder == "INBOX":
                    self._inbox_next = int(folder_state["uid"] or 0) + 1
        next_token = json.dumps(
            {"v": 1, "kind": "imap", "account": self._account(), "folders": next_state,
             "read": {"wanted": list(self.folders or ()), "found": found}},
            sort_keys=True,
        )  # fmt: skip
        return MailDelta(
            full=full, messages=tuple(messages), token=next_token, skipped=tuple(skipped)
        )

    def fetch_new_bodies(
        self, token: str | None, folder: str = "INBOX"
    ) -> tuple[list[InboundMessage], str]:
        """Whole messages of ``folder`` that arrived since ``token`` (None: all of them),
        oldest first, and the next token. Read with EXAMINE and BODY.PEEK: never ``\\Seen``.

        A changed UIDVALIDITY re-reads the folder (the caller dedupes by Message-ID); a
        token of another kind, mailbox or folder raises ``TokenExpired``. A message that
        cannot be parsed is left out (and not offered again).
        """
        old = self._load_inbox(token, folder) if token is not None else None
        out: list[InboundMessage] = []
        with self._translated():
            client = self._connected()
            status = self._status(client, folder, [b"UIDVALIDITY", b"UIDNEXT"])
            uidvalidity, uidnext = int(status[b"UIDVALIDITY"]), int(status[b"UIDNEXT"])
            last = old["uid"] if old is not None and old["uv"] == uidvalidity else 0
            if uidnext > last + 1:
                selected = client.select_folder(folder, readonly=True)
                if int(selected[b"UIDVALIDITY"]) != uidvalidity:  # changed since STATUS
                    uidvalidity, last = int(selected[b"UIDVALIDITY"]), 0
                uidnext = int(selected.get(b"UIDNEXT", uidnext))
                uids = sorted(u for u in client.search(["UID", f"{last + 1}:*"]) if u > last)
                for i in range(0, len(uids), BODY_BATCH):
                    batch = uids[i : i + BODY_BATCH]
                    data = client.fetch(batch, [f"BODY.PEEK[]<0.{MAX_BODY_BYTES}>", INTERNALDATE])
                    for uid in batch:
                        if uid in data:  # absent: expunged meanwhile
                            where = f"{folder}/{uidvalidity}/{uid}"
                            found = inbound_message(data[uid], where, self.limits)
                            if found is not None:
                                out.append(found)
                leave(client)
                last = max([last, uidnext - 1, *uids])
        next_token = json.dumps(
            {"v": 1, "kind": "imap-inbox", "account": self._account(), "folder": folder,
             "uv": uidvalidity, "uid": last},
            sort_keys=True,
        )  # fmt: skip
        return out, next_token

    def idle(self, timeout: float, token: str | None = None) -> bool:
        """Wait up to ``timeout`` seconds for new mail in INBOX; True when some arrived.

        Also True at once when INBOX already holds mail that ``token`` (default: the
        token of this object's last ``changes``) has not seen, so nothing that arrives
        between a sync and the IDLE is missed. A server without IDLE is asked once,
        without waiting (the caller polls).
        """
        seen_next = self._inbox_next
        if token is not None:
            with contextlib.suppress(TokenExpired, KeyError, TypeError, ValueError):
                seen_next = int(self._load(token)["INBOX"]["uid"]) + 1
        deadline = time.monotonic() + min(max(timeout, 0.0), MAX_IDLE)
        with self._translated():
            client = self._connected()
            selected = client.select_folder("INBOX", readonly=True)
            uidnext = int(selected.get(b"UIDNEXT", 0))
            if seen_next is not None and uidnext > seen_next:
                leave(client)
                return True
            if not client.has_capability("IDLE"):
                return False
            exists = int(selected.get(b"EXISTS", 0))
            client.idle()
            arrived = False
            try:
                while not arrived:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    responses = client.idle_check(timeout=left)
                    arrived, exists = _arrivals(responses, exists)
            finally:
                _text_reply, responses = client.idle_done()
            arrived = arrived or _arrivals(responses, exists)[0]
            leave(client)
            return arrived

    def close(self) -> None:
        """Log out and drop the connection (the next call opens a new one)."""
        client, self._client, self._resolved = self._client, None, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.logout()
        with contextlib.suppress(Exception):
            client.shutdown()

    def __enter__(self) -> ImapMailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- syncing

    def _sync_folder(
        self,
        client: Any,
        folder: str,
        old: dict[str, Any] | None,
        condstore: bool,
        messages: list[MessageData],
        skipped: list[str],
    ) -> tuple[dict[str, int | None], bool]:
        """Read one folder's new messages; return its next state and whether it was
        read from the start."""
        items = [b"UIDVALIDITY", b"UIDNEXT"] + ([b"HIGHESTMODSEQ"] if condstore else [])
        status = self._status(client, folder, items)
        uidvalidity = int(status[b"UIDVALIDITY"])
        uidnext = int(status[b"UIDNEXT"])
        modseq = _int_or_none(status.get(b"HIGHESTMODSEQ"))
        last = _last_uid(old, uidvalidity, modseq)
        if last is not None and uidnext <= last + 1:
            return {"uv": uidvalidity, "uid": last, "ms": modseq}, False

        reread = last is None
        selected = client.select_folder(folder, readonly=True)
        if int(selected[b"UIDVALIDITY"]) != uidvalidity:  # changed since STATUS
            uidvalidity, reread = int(selected[b"UIDVALIDITY"]), True
        start = 0 if reread or last is None else last
        uidnext = int(selected.get(b"UIDNEXT", uidnext))
        modseq = _int_or_none(selected.get(b"HIGHESTMODSEQ", modseq))
        uids = sorted(u for u in client.search(["UID", f"{start + 1}:*"]) if u > start)
        for i in range(0, len(uids), FETCH_BATCH):
            batch = uids[i : i + FETCH_BATCH]
            data = client.fetch(batch, list(FETCH_HEADER_AND_TEXT))
            for uid in batch:
                if uid in data:  # absent: expunged meanwhile
                    add_message(data[uid], folder, uidvalidity, uid, messages, skipped, self.limits)
        leave(client)
        # Every UID below the UIDNEXT seen before the search was read or is gone.
        last_uid = max([start, uidnext - 1, *uids])
        return {"uv": uidvalidity, "uid": last_uid, "ms": modseq}, reread

    @staticmethod
    def _status(client: Any, folder: str, items: list[bytes]) -> dict[bytes, Any]:
        try:
            return dict(client.folder_status(folder, items))
        except imap_errors.IMAPClientError as exc:
            if missing(exc):
                raise NotFound(f"no folder {folder!r} in the mailbox") from None
            raise

    # ----------------------------------------------------------------- folders

    def _folders_of(self, token: str) -> list[tuple[str, bool]] | None:
        """The folders the last sync read, when they are all there is to read: the same
        configured list, or INBOX and a sent folder. Then no LIST is needed (a folder
        gone since fails its STATUS, and the next sync looks again); else None."""
        with contextlib.suppress(AttributeError, TypeError, ValueError):  # not ours: LIST
            read = json.loads(token).get("read") or {}
            if list(read.get("wanted") or ()) != list(self.folders or ()):
                return None
            found = [(str(name), bool(ours)) for name, ours in read.get("found") or ()]
            names = [name for name, _ in found]
            complete = (
                len(found) == len(self.folders)
                if self.folders
                else len(found) == 2 and names[0] == "INBOX"
            )
            return found if complete else None
        return None

    def _folders(self, client: Any) -> list[tuple[str, bool]]:
        if self._resolved is None:
            self._resolved = resolve_folders(client, self.folders)
        return self._resolved

    # -------------------------------------------------------------- connection

    def _connected(self) -> Any:
        if self._client is None:
            self._client = open_client(
                self.host,
                self.port,
                self.security,
                self.username,
                self._password,
                timeout=self.timeout,
                ssl_context=self._ssl_context,
                policy=self.policy,
            )
        return self._client

    def _translated(self) -> AbstractContextManager[None]:
        """Map imapclient, imaplib and socket errors to ours; drop the connection."""
        return translated(f"{self.host}:{self.port}", self.timeout, self._drop)

    def _drop(self) -> None:
        client, self._client, self._resolved = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.shutdown()

    # ------------------------------------------------------------------- token

    def _account(self) -> str:
        who = f"{self.host.lower()}\n{self.username}"
        return hashlib.sha256(who.encode()).hexdigest()[:16]

    def _load(self, token: str) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(token)
        except ValueError:
            raise TokenExpired("unreadable change token") from None
        if not isinstance(data, dict) or data.get("v") != 1 or data.get("kind") != "imap":
            raise TokenExpired("change token of another kind or version")
        if data.get("account") != self._account():
            raise TokenExpired("change token of another mailbox")
        folders = data.get("folders")
        if not isinstance(folders, dict):
            raise TokenExpired("change token without folders")
        return folders

    def _load_inbox(self, token: str, folder: str) -> dict[str, int]:
        try:
            data = json.loads(token)
        except ValueError:
            raise TokenExpired("unreadable inbox token") from None
        if not isinstance(data, dict) or data.get("v") != 1 or data.get("kind") != "imap-inbox":
            raise TokenExpired("inbox token of another kind or version")
        if data.get("account") != self._account() or data.get("folder") != folder:
            raise TokenExpired("inbox token of another mailbox or folder")
        uv, uid = data.get("uv"), data.get("uid")
        if not isinstance(uv, int) or not isinstance(uid, int) or uid < 0:
            raise TokenExpired("inbox token without its UIDs")
        return {"uv": uv, "uid": uid}


# ------------------------------------------------------------------------ helpers


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _last_uid(old: dict[str, Any] | None, uidvalidity: int, modseq: int | None) -> int | None:
    """The last UID read before, or None when the folder must be read from the start."""
    if old is None or old.get("uv") != uidvalidity:
        return None
    before = old.get("ms")
    if modseq is not None and isinstance(before, int) and modseq < before:
        return None  # mod-sequences went back: the server lost its state
    last = old.get("uid")
    return last if isinstance(last, int) and last >= 0 else None


def _arrivals(responses: Sequence[Any], exists: int) -> tuple[bool, int]:
    """Whether IDLE responses announce new mail; the message count after them."""
    arrived = False
    for response in responses:
        if len(response) < 2 or not isinstance(response[0], int):
            continue
        number, kind = response[0], response[1]
        if kind == b"EXISTS":
            arrived = arrived or number > exists
            exists = number
        elif kind == b"EXPUNGE":
            exists = max(0, exists - 1)
        elif kind == b"RECENT" and number > 0:
            arrived = True
    return arrived, exists
