"""The manager's mailbox over IMAP (RFC 3501), read-only, incremental by UID.

Folders: INBOX and the sent folder, found by its SPECIAL-USE flag ``\\Sent`` (RFC 6154)
or, on servers without it, by a common name ("Sent", "Sent Items", "Отправленные"...).
A configured list replaces that choice; an entry starting with a backslash (``"\\Sent"``)
names a folder by its special use.

Change token (an opaque JSON string): per folder its UIDVALIDITY, the last UID read and,
where the server has CONDSTORE (RFC 7162), its HIGHESTMODSEQ. One sync costs:

* nothing new: one ``STATUS (UIDVALIDITY UIDNEXT HIGHESTMODSEQ)`` per folder;
* new mail in a folder: ``EXAMINE`` (read-only select), ``UID SEARCH UID n+1:*`` and one
  ``UID FETCH (BODY.PEEK[HEADER] INTERNALDATE)`` per 250 messages. Only headers are read,
  and never in a way that sets ``\\Seen`` (EXAMINE and BODY.PEEK both guarantee it).

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
import imaplib
import json
import logging
import ssl
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from imapclient import IMAPClient
from imapclient import exceptions as imap_errors
from imapclient import imap4 as imap_plain
from imapclient import tls as imap_tls

from assistant.domain.model import MessageData
from connectors.archive.mailbox import InboundMessage, parse_inbound, parse_message
from connectors.base import (
    DEFAULT_LIMITS,
    AuthExpired,
    ConnectorError,
    InvalidData,
    MailDelta,
    NotFound,
    ParseLimits,
    TokenExpired,
    Transient,
)
from connectors.netguard import NetPolicy, TooLarge, operator_policy

Security = Literal["ssl", "starttls", "none"]
log = logging.getLogger(__name__)

FETCH_BATCH = 250
MAX_IDLE = 25 * 60.0  # RFC 2177: re-issue IDLE at least every 29 minutes
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
_HEADER = b"BODY[HEADER]"
BODY_BATCH = 50
MAX_BODY_BYTES = 1 << 20  # enough for any text part; attachments beyond it are cut off
_BODY = b"BODY[]<0>"
_INTERNALDATE = b"INTERNALDATE"


def _text(exc: BaseException) -> str:
    parts = [a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a) for a in exc.args]
    return " ".join(parts)[:300]


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
        with self._translated():
            client = self._connected()
            condstore = client.has_capability("CONDSTORE")
            full = token is None
            messages: list[MessageData] = []
            skipped: list[str] = []
            next_state: dict[str, dict[str, int | None]] = {}
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
                if folder == "INBOX":
                    self._inbox_next = int(folder_state["uid"] or 0) + 1
        next_token = json.dumps(
            {"v": 1, "kind": "imap", "account": self._account(), "folders": next_state},
            sort_keys=True,
        )
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
                    data = client.fetch(batch, [f"BODY.PEEK[]<0.{MAX_BODY_BYTES}>", _INTERNALDATE])
                    for uid in batch:
                        if uid in data:  # absent: expunged meanwhile
                            where = f"{folder}/{uidvalidity}/{uid}"
                            found = _inbound(data[uid], where, self.limits)
                            if found is not None:
                                out.append(found)
                _leave(client)
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
                _leave(client)
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
            _leave(client)
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
            data = client.fetch(batch, [b"BODY.PEEK[HEADER]", _INTERNALDATE])
            for uid in batch:
                if uid in data:  # absent: expunged meanwhile
                    self._add(data[uid], folder, uidvalidity, uid, messages, skipped, self.limits)
        _leave(client)
        # Every UID below the UIDNEXT seen before the search was read or is gone.
        last_uid = max([start, uidnext - 1, *uids])
        return {"uv": uidvalidity, "uid": last_uid, "ms": modseq}, reread

    @staticmethod
    def _status(client: Any, folder: str, items: list[bytes]) -> dict[bytes, Any]:
        try:
            return dict(client.folder_status(folder, items))
        except imap_errors.IMAPClientError as exc:
            if _missing(exc):
                raise NotFound(f"no folder {folder!r} in the mailbox") from None
            raise

    @staticmethod
    def _add(
        item: dict[bytes, Any],
        folder: str,
        uidvalidity: int,
        uid: int,
        messages: list[MessageData],
        skipped: list[str],
        limits: ParseLimits = DEFAULT_LIMITS,
    ) -> None:
        source_id = f"{folder}/{uidvalidity}/{uid}"
        header = item.get(_HEADER)
        arrived = item.get(_INTERNALDATE)
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

    # ----------------------------------------------------------------- folders

    def _folders(self, client: Any) -> list[tuple[str, bool]]:
        if self._resolved is not None:
            return self._resolved
        listing = [
            (tuple(bytes(f).lower() for f in flags), name)
            for flags, _delimiter, name in client.list_folders()
            if b"\\noselect" not in {bytes(f).lower() for f in flags}
        ]
        names = {name for _flags, name in listing}
        resolved: list[tuple[str, bool]] = []
        wanted = self.folders or ("INBOX", "\\Sent")
        for entry in wanted:
            if entry.startswith("\\"):
                name = _by_use(listing, entry)
                if name is None:
                    if self.folders is not None:
                        raise NotFound(f"no folder marked {entry} in the mailbox")
                    continue  # no sent folder: INBOX alone
                resolved.append((name, self.folders is None))
            elif entry.upper() == "INBOX":
                resolved.append(("INBOX", False))
            elif entry in names:
                resolved.append((entry, False))
            else:
                raise NotFound(f"no folder {entry!r} in the mailbox")
        self._resolved = list(dict.fromkeys(resolved))
        return self._resolved

    # -------------------------------------------------------------- connection

    def _connected(self) -> Any:
        if self._client is not None:
            return self._client
        if self.security == "none":
            self.policy.check_plaintext(self.host, "a connection without TLS")
        client = GuardedIMAPClient(
            self.policy,
            self.host,
            port=self.port,
            use_uid=True,
            ssl=self.security == "ssl",
            ssl_context=self._context() if self.security == "ssl" else None,
            timeout=self.timeout,
        )
        try:
            client.normalise_times = False  # INTERNALDATE with its zone
            if self.security == "starttls":
                client.starttls(self._context())
            try:
                client.login(self.username, self._password)
            except imap_errors.LoginError as exc:
                if "UNAVAILABLE" in _text(exc).upper():
                    raise Transient("the mail server cannot log in now; try again") from None
                raise AuthExpired(f"the mail server refused the login of {self.username}") from None
            if client.has_capability("CONDSTORE") and client.has_capability("ENABLE"):
                client.enable("CONDSTORE")  # HIGHESTMODSEQ in STATUS and SELECT
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        self._client = client
        return client

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Map imapclient, imaplib and socket errors to ours; drop the connection."""
        where = f"{self.host}:{self.port}"
        try:
            yield
        except ConnectorError:
            self._drop()
            raise
        except imap_errors.CapabilityError as exc:
            self._drop()
            raise ConnectorError(f"the mail server at {where} lacks {_text(exc)}") from None
        except imaplib.IMAP4.abort as exc:  # EOF, reset: before IMAP4.error (its base)
            self._drop()
            raise Transient(f"connection to {where} lost: {_text(exc)}") from None
        except imap_errors.ProtocolError as exc:
            self._drop()
            raise InvalidData(f"unreadable reply from {where}: {_text(exc)}") from None
        except imaplib.IMAP4.error as exc:  # a NO or BAD reply
            self._drop()
            text = _text(exc)
            if _missing(exc):
                raise NotFound(f"{where}: {text}") from None
            if any(code in text.upper() for code in ("[UNAVAILABLE]", "[SERVERBUG]", "[INUSE]")):
                raise Transient(f"{where}: {text}") from None
            raise ConnectorError(f"{where}: {text}") from None
        except ssl.SSLCertVerificationError as exc:
            self._drop()
            raise ConnectorError(f"the certificate of {where} is not trusted: {exc}") from None
        except TimeoutError:
            self._drop()
            raise Transient(f"{where} did not answer within {self.timeout:g} s") from None
        except OSError as exc:  # refused, reset, unreachable, name not resolved, TLS
            self._drop()
            raise Transient(f"cannot reach {where}: {exc}") from None

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


def _inbound(
    item: dict[bytes, Any], source_id: str, limits: ParseLimits = DEFAULT_LIMITS
) -> InboundMessage | None:
    raw = item.get(_BODY)
    if not isinstance(raw, bytes):
        bodies = (v for k, v in item.items() if k.startswith(b"BODY[") and isinstance(v, bytes))
        raw = next(bodies, None)
    if raw is None:
        return None
    arrived = item.get(_INTERNALDATE)
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


def _leave(client: Any) -> None:
    """Unselect the folder: a session that keeps a folder open may be answered from that
    open view (STATUS on a folder deleted and recreated elsewhere shows the old one)."""
    if client.has_capability("UNSELECT"):
        client.unselect_folder()
    else:
        client.close_folder()  # selected read-only: CLOSE expunges nothing


def _missing(exc: BaseException) -> bool:
    text = _text(exc).upper()
    return "[NONEXISTENT]" in text or "DOESN'T EXIST" in text or "NOT EXIST" in text


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


class GuardedIMAPClient(IMAPClient):  # type: ignore[misc]
    """An IMAPClient whose socket goes only where ``policy`` allows (``netguard.connect``:
    resolved, every address checked, connected to a checked address; TLS still names the
    host), and that refuses a literal larger than ``policy.max_response_bytes`` before
    reading it (imaplib already bounds a line to 1 MB)."""

    def __init__(self, policy: NetPolicy, *args: Any, **kwargs: Any) -> None:
        self._policy = policy
        super().__init__(*args, **kwargs)

    def _create_IMAP4(self) -> Any:  # imapclient's name
        policy = self._policy
        timeout = getattr(self._timeout, "connect", None)
        if self.ssl:

            class Tls(imap_tls.IMAP4_TLS):  # type: ignore[misc]
                def _create_socket(self, timeout: float | None = None) -> Any:
                    sock = policy.connect(self.host, self.port, timeout or self._timeout)
                    return imap_tls.wrap_socket(sock, self.ssl_context, self.host)

                def read(self, size: int) -> bytes:
                    _bounded_literal(policy, self.host, size)
                    return super().read(size)  # type: ignore[no-any-return]

            return Tls(self.host, self.port, self.ssl_context, timeout)

        class Plain(imap_plain.IMAP4WithTimeout):  # type: ignore[misc]
            def _create_socket(self, timeout: float | None = None) -> Any:
                return policy.connect(self.host, self.port, timeout or self._timeout)

            def read(self, size: int) -> bytes:
                _bounded_literal(policy, self.host, size)
                return super().read(size)  # type: ignore[no-any-return]

        return Plain(self.host, self.port, timeout)


def _bounded_literal(policy: NetPolicy, host: str, size: int) -> None:
    if size > policy.max_response_bytes:
        raise TooLarge(
            f"the mail server at {host} sent a reply larger than {policy.max_response_bytes} "
            "bytes (network.max_response_bytes)"
        )
