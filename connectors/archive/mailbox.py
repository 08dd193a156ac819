"""Read-only mail sources over an exported mailbox: a Maildir tree or an mbox file.

``MaildirSource`` reads a real Maildir++ (``cur``/``new``/``tmp``, subfolders ``.Sent``)
and the plain layout of the Enron corpus (``<folder>/<nested folder>/<n>.eml``: one RFC 822
file per message). ``MboxSource`` reads one mbox file.

Change tokens (opaque JSON strings):

* Maildir: per folder, the highest file mtime seen (ns), the names carrying exactly that
  mtime, and a digest of the names at or below it. The next call returns files above the
  mark (or at it with a name not seen). If the files at or below the mark differ from the
  digest (a file deleted, edited, or delivered with an older mtime, as Dovecot does for
  APPEND) the token raises ``TokenExpired`` and the caller resyncs fully. A Maildir file is
  named by its unique part (before ``:2,``), so moving it from ``new`` to ``cur`` or
  changing its flags is not a change.
* mbox: the byte size reached, the message count, and digests of the first and last 4 KiB
  before that offset. A file that shrank or whose already-read bytes changed raises
  ``TokenExpired``; otherwise only the bytes after the offset are parsed.

A message that cannot be parsed is never fatal: it is left out and named in
``MailDelta.skipped`` with the reason.

Bodies (their text: ``connectors.archive.text``): ``changes`` keeps only digests of it.
``parse_inbound`` maps a whole message to an ``InboundMessage`` with its text (plain, or HTML
crudely as text); ``MaildirSource.fetch_new_bodies`` returns those new since a token.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path
from typing import Any

from assistant.domain.latency.quotes import text_keys
from assistant.domain.model import MessageData
from connectors.archive.text import body_text as body_text
from connectors.archive.text import html_to_text as html_to_text
from connectors.archive.text import plain_text
from connectors.base import (
    DEFAULT_LIMITS,
    InvalidData,
    MailDelta,
    NotFound,
    ParseLimits,
    TokenExpired,
)
from connectors.mime import check_message, read_headers

log = logging.getLogger(__name__)
_MAIL_HEADERS = ("from", "sender", "x-from", "date", "message-id", "subject", "to")
_AUTO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto[- ]?reply|auto:|autosvar|"
    r"абонент отсутствует|автоматический ответ)",
    re.IGNORECASE,
)
_BULK_PRECEDENCE = {"bulk", "junk", "auto_reply", "list"}
_ANGLE_SPLIT = re.compile(r"<([^<>]+)>")
_SURROGATE = re.compile("[\udc80-\udcff]")
# A bare address as RFC 5322 writes it (dot-atom@dot-atom): getaddresses would return it
# unchanged. A list of only these (and empty items) is split on commas; anything else
# (names, quotes, comments, angle brackets, groups, encoded words) goes to the stdlib.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_BARE_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*")
# What makes an address list more than items between commas (RFC 5322 quoted strings,
# comments, angle brackets, groups, quoted pairs, domain literals).
_LIST_SYNTAX = frozenset('"()<>:;\\[]')
# An id as RFC 5322 writes it: the header registry's message-id parser keeps it as is.
_BARE_ID = re.compile(rf"<{_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*>")
# Headers read through the default policy's registry; all but message-id are unstructured.
_UNSTRUCTURED = {"subject", "x-from", "x-to", "in-reply-to", "references"}


# ------------------------------------------------------------------------ parsing


def _unbytes(value: str) -> str:
    """Undo surrogate-escaped 8-bit header bytes: UTF-8 if valid, else cp1252."""
    if value.isascii() or not _SURROGATE.search(value):
        return value
    raw = value.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def _decoded(name: str, value: str) -> str:
    """A header's text: the default policy first, compat32 decoding as fallback. Plain
    ASCII without encoded words is read directly: the registry would only unfold it."""
    value = _unbytes(value)
    if value.isascii() and "=?" not in value:
        if name in _UNSTRUCTURED:
            return value.replace("\n", "").replace("\r", "").strip()
        if name == "message-id" and _BARE_ID.fullmatch(value.strip()):
            return value.strip()
    with contextlib.suppress(Exception):  # the header registry raises on some broken headers
        return str(policy.default.header_fetch_parse(name, value)).strip()
    try:
        return str(make_header(decode_header(value))).strip()
    except Exception:
        return " ".join(value.split())


def _address(raw: str) -> str:
    addr = raw.strip().strip("'\"<> ").lower()
    if addr.startswith("mailto:"):
        addr = addr[7:]
    return addr if "@" in addr and " " not in addr else ""


def _addresses(values: Sequence[str]) -> tuple[str, ...]:
    """Lower-cased bare addresses, in order, without duplicates or non-addresses."""
    found: dict[str, None] = {}
    values = [_unbytes(v) for v in values]
    items = [i.strip() for v in values for i in v.split(",")]
    bare = [not i or _BARE_ADDRESS.fullmatch(i) is not None for i in items]
    if all(bare) or not any(_LIST_SYNTAX.intersection(v) for v in values):
        # Without quotes, comments, angle brackets or groups a comma always ends an
        # address: the stdlib parses each item alone as it parses it in the list, and only
        # the items that are not bare addresses need it (a long list with one odd item).
        for raw, plain in zip(items, bare, strict=True):
            if plain:
                if raw and (addr := _address(raw)):
                    found.setdefault(addr)
                continue
            for _name, parsed in getaddresses([raw]):
                if addr := _address(parsed):
                    found.setdefault(addr)
        return tuple(found)
    for _name, raw in getaddresses(values):
        addr = _address(raw)
        if addr:
            found.setdefault(addr)
    return tuple(found)


def _message_ids(value: str) -> tuple[str, ...]:
    ids = _ANGLE_SPLIT.findall(value) or value.split()
    return tuple(i.strip().strip("<>") for i in ids if i.strip().strip("<>"))


def _sent_at(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(_unbytes(value).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC with no claim about the sender's zone
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _is_auto(headers: dict[str, list[str]], subject: str) -> bool:
    auto = headers.get("auto-submitted")
    if auto and auto[0].strip().lower() != "no":
        return True
    if "x-auto-response-suppress" in headers:
        return True
    precedence = headers.get("precedence")
    if precedence and precedence[0].strip().lower() in _BULK_PRECEDENCE:
        return True
    return bool(_AUTO_SUBJECT.match(subject))


def message_ids(value: str) -> tuple[str, ...]:
    """The ids in a Message-ID, In-Reply-To or References value, without angle brackets."""
    return _message_ids(value)


def is_auto_reply(headers: Mapping[str, Sequence[str]], subject: str) -> bool:
    """Whether headers (lower-cased names) or the subject mark an automatic message:
    Auto-Submitted other than ``no``, X-Auto-Response-Suppress, a bulk Precedence, or an
    out-of-office subject."""
    return _is_auto({k: list(v) for k, v in headers.items()}, subject)


def _body_hash(raw: bytes) -> str:
    cut = raw.find(b"\n\n")
    if cut < 0:
        cut = raw.find(b"\r\n\r\n")
    body = raw[cut:] if cut >= 0 else b""
    body = b"\n".join(line.rstrip() for line in body.strip().splitlines())
    return hashlib.sha256(body).hexdigest()[:16]


def parse_message(
    raw: bytes,
    *,
    source_id: str,
    folder: str,
    mtime: datetime,
    limits: ParseLimits = DEFAULT_LIMITS,
    with_text: bool = False,
) -> MessageData:
    """Map one RFC 822 message to MessageData. Raises InvalidData when it is not a mail
    (or has more header lines than ``limits`` allow, see ``connectors.mime``). ``with_text``:
    the body's keys for copies and quoted replies too (``assistant.domain.latency.quotes``)."""
    if not raw.strip():
        raise InvalidData("empty file")
    msg = read_headers(raw, limits)
    headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        headers.setdefault(name.strip().lower(), []).append(str(value))
    if not any(h in headers for h in _MAIL_HEADERS):
        raise InvalidData("no mail headers")

    def text(name: str) -> str:
        values = headers.get(name)
        return _decoded(name, values[0]) if values else ""

    extra: dict[str, str] = {"body_hash": _body_hash(raw)}
    if with_text:
        plain = msg.get_content_type() == "text/plain" and not msg.is_multipart()
        extra.update(text_keys(plain_text(msg) if plain else body_text(raw, limits, quotes=True)))
    message_id = next(iter(_message_ids(text("message-id"))), "")
    if not message_id:
        message_id = hashlib.sha256(raw).hexdigest()[:32] + "@synthesized"
        extra["message_id_source"] = "content-hash"

    sent_at = _sent_at(headers.get("date", [None])[0])
    if sent_at is None:
        sent_at = mtime
        extra["date_source"] = "mtime"

    from_values = headers.get("from") or headers.get("sender") or []
    senders = _addresses(from_values)
    if not senders and "x-from" in headers:  # Enron: a display name, or an address
        senders = _addresses(headers["x-from"])
        extra["x_from"] = text("x-from")
    to = _addresses(headers.get("to", []))
    cc = _addresses(headers.get("cc", []))
    if not to and "x-to" in headers:  # Enron keeps display names (rarely addresses) here
        to = _addresses(headers["x-to"])
        extra["x_to"] = text("x-to")[:500]

    subject = text("subject")
    return MessageData(
        message_id=message_id,
        sent_at=sent_at,
        from_addr=senders[0] if senders else "",
        to=to,
        cc=cc,
        subject=subject,
        in_reply_to=next(iter(_message_ids(text("in-reply-to"))), ""),
        references=_message_ids(text("references")),
        folder=folder,
        auto_reply=_is_auto(headers, subject),
        source_id=source_id,
        extra=extra,
    )


# ------------------------------------------------------------------ whole messages


@dataclass(frozen=True)
class InboundMessage:
    """One message as the service's own inbox needs it: who, in reply to what, and the text."""

    message_id: str
    from_addr: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    in_reply_to: str
    references: tuple[str, ...]
    sent_at: datetime  # aware (UTC); the Date header, else when the server got it
    text: str  # the plain-text part, or the HTML part crudely as text; "" when neither
    auto_reply: bool = False
    source_id: str = ""
    # The Authentication-Results header values, topmost (added last) first.
    authentication_results: tuple[str, ...] = ()


def parse_inbound(
    raw: bytes, *, source_id: str, mtime: datetime, limits: ParseLimits = DEFAULT_LIMITS
) -> InboundMessage:
    """Headers (as ``parse_message`` reads them) and text of one message.
    Raises InvalidData when it is not a mail, or goes beyond ``limits`` (header lines,
    nested parts: see ``connectors.mime``)."""
    check_message(raw, limits)
    head = parse_message(raw, source_id=source_id, folder="", mtime=mtime, limits=limits)
    verdicts: list[str] = []
    with contextlib.suppress(Exception):  # parse_message read these headers already
        found = read_headers(raw, limits).get_all("Authentication-Results")
        verdicts = [str(v) for v in found or []]
    return InboundMessage(
        message_id=head.message_id,
        from_addr=head.from_addr,
        to=head.to,
        cc=head.cc,
        subject=head.subject,
        in_reply_to=head.in_reply_to,
        references=head.references,
        sent_at=head.sent_at,
        text=body_text(raw, limits),
        auto_reply=head.auto_reply,
        source_id=source_id,
        authentication_results=tuple(verdicts),
    )


def _parse_or_skip(
    raw: bytes,
    source_id: str,
    folder: str,
    mtime: datetime,
    skipped: list[str],
    limits: ParseLimits = DEFAULT_LIMITS,
    with_text: bool = True,
) -> MessageData | None:
    try:
        return parse_message(raw, source_id=source_id, folder=folder, mtime=mtime,
                             limits=limits, with_text=with_text)  # fmt: skip
    except InvalidData as exc:
        skipped.append(f"{source_id}: {exc}")
    except Exception as exc:  # never let one bad message stop an import
        skipped.append(f"{source_id}: {type(exc).__name__}: {exc}")
    return None


def _mtime(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _digest(names: Iterator[str] | list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(names)).encode("utf-8", "surrogateescape")).hexdigest()[
        :24
    ]


def _load_token(token: str, kind: str) -> dict[str, Any]:
    try:
        data = json.loads(token)
    except ValueError:
        raise TokenExpired("unreadable change token") from None
    if not isinstance(data, dict) or data.get("v") != 1 or data.get("kind") != kind:
        raise TokenExpired("change token of another kind or version")
    return data


# ------------------------------------------------------------------------ maildir


@dataclass(frozen=True, slots=True)
class _File:
    folder: str
    key: str  # unique within the folder; stable across flag changes
    rel: str  # path relative to the root: the message's source_id
    mtime_ns: int


OnRead = Callable[[int, int | None], None]  # messages read so far, of how many (if known)


def _is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() and (path / "new").is_dir()


class MaildirSource:
    """Messages of a Maildir tree (Maildir++ or the plain Enron layout), read-only."""

    def __init__(
        self,
        path: Path,
        folders: Sequence[str] | None = None,
        *,
        limits: ParseLimits = DEFAULT_LIMITS,
    ) -> None:
        self.path = Path(path)
        self.folders = tuple(f.strip("/") for f in folders) if folders else None
        self.limits = limits

    def _wanted(self, folder: str) -> bool:
        if self.folders is None:
            return True
        return any(folder == f or folder.startswith(f + "/") for f in self.folders)

    def _scan(self) -> list[_File]:
        if not self.path.is_dir():
            raise NotFound(f"no mail folder at {self.path}")
        found: list[_File] = []
        self._walk(self.path, "", found, "")
        found.sort(key=lambda f: (f.folder, f.rel))
        return found

    def _walk(self, directory: Path, folder: str, found: list[_File], rel_dir: str) -> None:
        """``rel_dir``: ``directory`` relative to the root ("" for the root): a file's
        source_id is its path relative to the root, made of the names walked through."""
        maildir = _is_maildir(directory)
        name = folder or ("INBOX" if maildir else "")
        under = rel_dir + "/" if rel_dir else ""
        if maildir and self._wanted(name):
            for sub in ("new", "cur"):
                for entry in os.scandir(directory / sub):
                    if entry.is_file() and not entry.name.startswith("."):
                        rel = f"{under}{sub}/{entry.name}"
                        key = entry.name.split(":", 1)[0]
                        found.append(_File(name, key, rel, entry.stat().st_mtime_ns))
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if entry.is_dir():
                if maildir and entry.name in ("cur", "new", "tmp"):
                    continue
                if entry.name.startswith("."):
                    if not (maildir and folder == ""):
                        continue
                    sub = entry.name[1:].replace(".", "/")  # Maildir++ ".Sent.2020"
                else:
                    sub = f"{folder}/{entry.name}" if folder else entry.name
                self._walk(Path(entry.path), sub, found, under + entry.name)
            elif (
                not maildir
                and entry.is_file()
                and not entry.name.startswith(".")
                and self._wanted(folder)
            ):
                rel = under + entry.name
                found.append(_File(folder, entry.name, rel, entry.stat().st_mtime_ns))

    def changes(self, token: str | None, *, on_read: OnRead | None = None) -> MailDelta:
        """All messages (token None) or those in files not seen at ``token``; ``on_read``
        hears how many files of how many were read (a terminal shows progress). Many files
        are read by a process per core (``_read_in_pool``): the same result, in order."""
        new, next_token = self._new_files(token)
        found = _read_in_pool(self.path, new, self.limits, on_read, READ_TEXT)
        if found is None:
            found = _read_files(self.path, new, self.limits, on_read, 0, len(new), READ_TEXT)
        messages, skipped = found
        return MailDelta(
            full=token is None, messages=tuple(messages), token=next_token, skipped=tuple(skipped)
        )

    def fetch_new_bodies(self, token: str | None) -> tuple[list[InboundMessage], str]:
        """Whole messages (headers and text) in files not seen at ``token`` (None: all),
        and the next token. Flags and file names are never touched. A file that cannot be
        read or parsed is left out (and not offered again)."""
        new, next_token = self._new_files(token)
        out: list[InboundMessage] = []
        for f in new:
            try:
                raw = (self.path / f.rel).read_bytes()
                mtime = _mtime(f.mtime_ns)
                out.append(parse_inbound(raw, source_id=f.rel, mtime=mtime, limits=self.limits))
            except OSError as exc:
                log.warning("mail %s left out: cannot read (%s)", f.rel, exc.strerror)
            except InvalidData as exc:
                log.warning("mail %s left out: %s", f.rel, exc)
        return out, next_token

    def _new_files(self, token: str | None) -> tuple[list[_File], str]:
        files = self._scan()
        by_folder: dict[str, list[_File]] = {}
        for f in files:
            by_folder.setdefault(f.folder, []).append(f)
        state = _load_token(token, "maildir")["folders"] if token is not None else {}
        new: list[_File] = []
        next_state: dict[str, dict[str, Any]] = {}
        for folder, members in by_folder.items():
            old = state.get(folder)
            if old is None:
                new.extend(members)
            else:
                mark, at = int(old["m"]), set(old["at"])
                seen = [
                    f for f in members if f.mtime_ns < mark or (f.mtime_ns == mark and f.key in at)
                ]
                if _digest([f.key for f in seen]) != old["h"]:
                    raise TokenExpired(f"files in folder {folder!r} changed below the mark")
                seen_keys = {f.key for f in seen}
                new.extend(f for f in members if f.key not in seen_keys)
            mark = max(f.mtime_ns for f in members)
            next_state[folder] = {
                "m": mark,
                "at": sorted(f.key for f in members if f.mtime_ns == mark),
                "h": _digest([f.key for f in members]),
            }
        for folder, old in state.items():  # a folder now empty (or gone) must stay empty
            if folder not in by_folder and self._wanted(folder) and old["h"] != _digest([]):
                raise TokenExpired(f"folder {folder!r} lost its messages")
        next_token = json.dumps({"v": 1, "kind": "maildir", "folders": next_state}, sort_keys=True)
        return new, next_token


Read = tuple[list[MessageData], list[str]]  # the messages, and the files left out (why)

# Whether ``MaildirSource.changes`` reads the bodies for their text keys (copies, quoted
# replies). Always on in the product; ``bench/maildir.py`` turns it off in a process of its
# own to measure what reading the text costs.
READ_TEXT = True

# Below this many files one process reads them: starting workers costs more than it saves.
POOL_FILES = 1_000
_CHUNKS_PER_WORKER = 8  # small enough to share the work evenly, big enough to pickle little


def _read_files(
    root: Path,
    files: Sequence[_File],
    limits: ParseLimits,
    on_read: OnRead | None = None,
    done: int = 0,
    total: int | None = None,
    with_text: bool = True,
) -> Read:
    """Read and parse ``files`` in order; a file that cannot be read or parsed is named in
    the second list with the reason, never fatal."""
    skipped: list[str] = []
    messages: list[MessageData] = []
    for n, f in enumerate(files, done + 1):
        if on_read is not None:
            on_read(n, total)
        try:
            raw = (root / f.rel).read_bytes()
        except OSError as exc:
            skipped.append(f"{f.rel}: cannot read: {exc.strerror}")
            continue
        msg = _parse_or_skip(raw, f.rel, f.folder, _mtime(f.mtime_ns), skipped, limits, with_text)
        if msg is not None:
            messages.append(msg)
    return messages, skipped


def _workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _read_in_pool(
    root: Path,
    files: list[_File],
    limits: ParseLimits,
    on_read: OnRead | None,
    with_text: bool = True,
) -> Read | None:
    """``_read_files`` in a process per core, chunk by chunk, the results joined in file
    order; None when that would not help (few files, one core) or processes cannot start
    (then the caller reads them itself)."""
    workers = min(_workers(), 1 + len(files) // max(1, POOL_FILES // 2))  # one per 500 files
    if len(files) < POOL_FILES or workers < 2:
        return None
    size = -(-len(files) // (workers * _CHUNKS_PER_WORKER))
    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    # fork: the workers start at once with this process's modules; only when no other
    # thread runs (one could hold a lock the child would inherit held).
    method = "fork" if threading.active_count() == 1 else "spawn"
    if method not in multiprocessing.get_all_start_methods():
        method = "spawn"
    messages: list[MessageData] = []
    skipped: list[str] = []
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
            n = len(chunks)
            reads = pool.map(_read_files, [root] * n, chunks, [limits] * n, [None] * n,
                             [0] * n, [None] * n, [with_text] * n)  # fmt: skip
            for found, left_out in reads:
                messages += found
                skipped += left_out
                if on_read is not None:
                    on_read(len(messages) + len(skipped), len(files))
    except (OSError, BrokenProcessPool) as exc:
        log.warning("reading %d mail files in one process (%s)", len(files), exc)
        return None
    return messages, skipped
