"""A Gmail mailbox (API v1) as a mail source, through google-api-python-client.

Every request goes through the real client library (``googleapiclient.discovery.build``
with the discovery document shipped in the package) over an ``httplib2.Http`` with a
timeout, wrapped by ``google_auth_httplib2.AuthorizedHttp``: a 401 is answered by one
token refresh and one retry; a second 401, or a refresh the token endpoint refuses, is
``AuthExpired``. Credentials are an installed app's OAuth refresh token or a service
account with domain-wide delegation acting as the manager (as in ``google_calendar``).

The change token is the mailbox's ``historyId`` (decimal digits, as Gmail gives it).

* First sync (token None): ``users.getProfile`` for the current historyId (taken first,
  so nothing that arrives during the listing is missed: it shows up in the next
  history), then ``users.messages.list`` per configured label (``INBOX`` and ``SENT``;
  ``labelIds`` with several values would mean *all* of them), with ``q`` when a query
  such as ``newer_than:90d`` is configured (``q`` needs the ``gmail.readonly`` scope,
  the ``gmail.metadata`` scope refuses it), paged.
* Incremental: ``users.history.list(startHistoryId, historyTypes=messageAdded)``, paged;
  the added messages carrying one of the labels are read (with no labels, only a query:
  every added message but drafts, spam and chats; the query limits the first sync only).
  A 404 (history too old or unknown) is ``TokenExpired``: the caller then syncs fully.
  Nothing new costs one request.
* Reading: ``users.messages.get(format=full)`` in batches (``BatchHttpRequest``,
  ``batch_size`` per HTTP request; Gmail takes up to 100 and advises 50). Of the headers,
  those of ``METADATA_HEADERS`` are handed to ``mail_archive.parse_message`` (threading
  headers, auto-reply detection: the same as with ``format=metadata``, so a message's
  synthesized Message-ID does not depend on the format); ``threadId`` becomes
  ``MessageData.thread_id`` and ``internalDate`` stands in for a missing or unreadable
  Date. A message deleted between listing and reading (404 on its get) is left out; one
  whose headers cannot be read is named in ``MailDelta.skipped``.
* The text: ``format=full`` gives each MIME part's content inline, base64url, except
  attachments (an ``attachmentId`` instead, never fetched). The text/plain part (else
  the text/html one, as text) is read, at most ``payload.MAX_TEXT_BYTES`` of it decoded
  and 100,000 characters kept (``connectors.google.payload``), for the text keys of
  ``assistant.domain.latency.quotes`` (issue 14: copies of one message are one message; a
  reply that quotes a message pairs with it even with a blank subject). Only the
  ``gmail.readonly`` scope (or a wider one) allows ``format=full``: with ``gmail.metadata``
  alone (configured so, or Gmail refusing the first batch of full gets with 403) the
  messages are read with ``format=metadata, metadataHeaders=...``, without text keys, and
  that is logged once per mailbox object.

Errors: 429, and 403 with a rate-limit reason, are ``RateLimited`` (with Retry-After);
other 401/403 ``AuthExpired``; 5xx, timeouts and network errors ``Transient``; one
failed get in a batch (other than 404) fails the whole call, and the token is not
advanced, so a retry reads everything again.
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import google.auth.credentials
import google.auth.exceptions
import httplib2
from googleapiclient.errors import BatchError, HttpError
from googleapiclient.http import BatchHttpRequest

from assistant.domain.latency.quotes import text_keys
from assistant.domain.model import MessageData
from connectors.archive.mailbox import parse_message
from connectors.base import (
    AuthExpired,
    ConnectorError,
    InvalidData,
    MailDelta,
    NotFound,
    RateLimited,
    TokenExpired,
    Transient,
)
from connectors.google.common import (
    RATE_REASONS,
    SignsIn,
    build_service,
    credentials_for,
    error_detail,
    google_error,
)
from connectors.google.payload import payload_text
from connectors.google.settings import GmailSettings
from connectors.settings import Resolver, parse

READONLY_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
METADATA_SCOPE = "https://www.googleapis.com/auth/gmail.metadata"
SCOPES = (READONLY_SCOPE,)
# Scopes that may read a message's content (format=full)
CONTENT_SCOPES = frozenset({READONLY_SCOPE, "https://www.googleapis.com/auth/gmail.modify",
                            "https://mail.google.com/"})  # fmt: skip
DEFAULT_ROOT = "https://gmail.googleapis.com/"
BATCH_PATH = "batch/gmail/v1"
DEFAULT_LABELS = ("INBOX", "SENT")
METADATA_HEADERS = (
    "From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
    "Auto-Submitted", "X-Auto-Response-Suppress", "Precedence",
)  # fmt: skip
_WANTED_HEADERS = frozenset(h.lower() for h in METADATA_HEADERS)
MAX_BATCH = 100  # Gmail's limit of calls in one batch
MAX_PAGES = 10_000

_NEVER_COUNTED = frozenset({"DRAFT", "SPAM", "CHAT"})  # unless asked for by label
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

RequestHook = Callable[[str, str, int], None]
Item = dict[str, Any]
log = logging.getLogger("connectors.google.mailbox")


class _TextRefused(Exception):
    """Gmail refused every get of a batch with format=full (403, not a rate limit): the
    credentials hold the gmail.metadata scope only."""


class GmailMailbox(SignsIn):
    """The Gmail mailbox of ``user_id`` ("me": the credentials' user) as a MailSource.

    ``labels`` are the label ids whose messages count (default INBOX and SENT);
    ``query`` an optional Gmail search limiting the first sync (``newer_than:90d``).
    ``api_root`` is where the API lives (tests point it at a local server).
    ``on_request(method, url, status)`` is called for every HTTP response received
    (a batch is one); ``requests`` counts them.
    """

    PRODUCT = "Gmail"
    SCOPES = SCOPES

    def __init__(
        self,
        credentials: google.auth.credentials.Credentials,
        user_id: str = "me",
        *,
        api_root: str = DEFAULT_ROOT,
        labels: Sequence[str] = DEFAULT_LABELS,
        query: str = "",
        timeout: float = 30,
        page_size: int = 500,
        batch_size: int = 50,
        on_request: RequestHook | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        self.user_id = user_id
        self.labels = tuple(dict.fromkeys(str(label) for label in labels))
        self.query = query.strip()
        if not self.labels and not self.query:
            raise ValueError("a Gmail mailbox needs labels or a query")
        self.page_size = page_size
        self.batch_size = batch_size
        self.requests = 0
        self._on_request = on_request
        self._credentials = credentials
        root = api_root if api_root.endswith("/") else api_root + "/"
        # The discovery document's batchPath is joined to its own rootUrl, not to the
        # endpoint given here: the batch URI is built from ``root`` instead.
        self._batch_uri = root + BATCH_PATH
        self._service, self._http = build_service(
            "gmail", "v1", credentials, timeout=timeout, hook=self._count, endpoint=root
        )
        self._users = self._service.users()
        granted = getattr(credentials, "scopes", None) or ()
        metadata_only = METADATA_SCOPE in granted and not CONTENT_SCOPES.intersection(granted)
        self._format = "full"
        if metadata_only:
            self._metadata_only("the credentials hold the gmail.metadata scope only")

    # ------------------------------------------------------------------ factories

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any] | GmailSettings, secret: Resolver, *, timeout: float = 30
    ) -> GmailMailbox:
        """From an account's settings (``connectors.google.settings``, a model or the
        stored dict); ``secret`` resolves secret references."""
        conf = settings
        if not isinstance(conf, GmailSettings):
            conf = parse(GmailSettings, "gmail", conf, None)
        scopes = tuple(conf.scopes) if conf.scopes is not None else SCOPES
        return cls(
            credentials_for(conf, secret, scopes, "Gmail"), conf.user_id,
            api_root=conf.api_root or DEFAULT_ROOT,
            labels=tuple(conf.labels) if conf.labels is not None else DEFAULT_LABELS,
            query=conf.query, timeout=timeout,
        )  # fmt: skip

    # ----------------------------------------------------------------- MailSource

    def changes(self, token: str | None) -> MailDelta:
        """Every message of the labels (token None) or those added since ``token``."""
        if token is None:
            return self._full()
        start = token.strip()
        if not start.isdigit() or not start.isascii():
            raise TokenExpired("unreadable Gmail change token")
        ids, history_id = self._history(start)
        if not ids:
            return MailDelta(full=False, token=history_id)
        messages, skipped = self._read(ids)
        return MailDelta(full=False, messages=messages, token=history_id, skipped=skipped)

    def close(self) -> None:
        """Drop the HTTP connections (the next call opens new ones)."""
        self._service.close()

    def __enter__(self) -> GmailMailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------- syncing

    def _full(self) -> MailDelta:
        profile = self._execute(self._users.getProfile(userId=self.user_id), "getProfile")
        history_id = str(profile.get("historyId") or "")
        if not history_id.isdigit():
            raise InvalidData("Gmail getProfile: no historyId in the reply")
        ids: dict[str, None] = {}
        for label in self.labels or (None,):
            ids.update(dict.fromkeys(self._list(label)))
        messages, skipped = self._read(list(ids))
        return MailDelta(full=True, messages=messages, token=history_id, skipped=skipped)

    def _list(self, label: str | None) -> list[str]:
        """The ids of all messages with ``label`` (and matching the query), all pages."""
        found: list[str] = []
        page: str | None = None
        what = f"messages.list {label or self.query}"
        for _ in range(MAX_PAGES):
            reply = self._execute(
                self._users.messages().list(
                    userId=self.user_id, labelIds=[label] if label else None,
                    q=self.query or None, maxResults=self.page_size, pageToken=page,
                ),
                what,
            )  # fmt: skip
            found.extend(str(m["id"]) for m in reply.get("messages") or () if m.get("id"))
            page = reply.get("nextPageToken")
            if not page:
                return found
        raise ConnectorError(f"Gmail {what}: more than {MAX_PAGES} pages")

    def _history(self, start: str) -> tuple[list[str], str]:
        """Ids of the messages added since ``start`` with one of our labels; the new
        historyId."""
        wanted = set(self.labels)
        never = _NEVER_COUNTED - wanted
        ids: dict[str, None] = {}
        page: str | None = None
        for _ in range(MAX_PAGES):
            reply = self._execute(
                self._users.history().list(
                    userId=self.user_id, startHistoryId=start, historyTypes=["messageAdded"],
                    labelId=self.labels[0] if len(self.labels) == 1 else None,
                    maxResults=self.page_size, pageToken=page,
                ),
                "history.list",
                missing=TokenExpired,
            )  # fmt: skip
            for record in reply.get("history") or ():
                for added in record.get("messagesAdded") or ():
                    message = added.get("message") or {}
                    labels = message.get("labelIds")
                    if not message.get("id"):
                        continue
                    if labels is not None and (
                        never.intersection(labels) or (wanted and not wanted.intersection(labels))
                    ):
                        continue  # a draft, chat, spam, or mail filtered away from our labels
                    ids.setdefault(str(message["id"]))
            page = reply.get("nextPageToken")
            if not page:
                history_id = str(reply.get("historyId") or "")
                if not history_id.isdigit():
                    raise InvalidData("Gmail history.list: no historyId in the reply")
                return list(ids), history_id
        raise ConnectorError(f"Gmail history.list: more than {MAX_PAGES} pages")

    def _metadata_only(self, why: str) -> None:
        """Read with format=metadata from now on (no text keys); said once."""
        self._format = "metadata"
        log.warning(
            "Gmail %s: %s; messages are read without their text, so copies and quoted "
            "replies are matched by their headers only (grant gmail.readonly to read it)",
            self.user_id, why,
        )  # fmt: skip

    def _read(self, ids: Sequence[str]) -> tuple[tuple[MessageData, ...], tuple[str, ...]]:
        """The messages with ``ids`` (those deleted meanwhile left out), and what could
        not be read, with the reason."""
        items: list[tuple[Item, bool]] = []  # (the reply, whether it holds the text)
        for i in range(0, len(ids), self.batch_size):
            batch = ids[i : i + self.batch_size]
            if self._format == "full":
                try:
                    items.extend((item, True) for item in self._get_batch(batch, "full"))
                    continue
                except _TextRefused:
                    self._metadata_only("Gmail refused format=full (403)")
            items.extend((item, False) for item in self._get_batch(batch, "metadata"))
        messages: list[MessageData] = []
        skipped: list[str] = []
        for item, with_text in items:
            try:
                messages.append(self._message(item, with_text))
            except InvalidData as exc:
                skipped.append(f"{item.get('id')}: {exc}")
            except Exception as exc:  # one bad message never stops a sync
                skipped.append(f"{item.get('id')}: {type(exc).__name__}: {exc}")
        messages.sort(key=lambda m: (m.sent_at, m.source_id))
        return tuple(messages), tuple(skipped)

    def _get_batch(self, ids: Sequence[str], fmt: str) -> list[Item]:
        """One batch of gets in format ``fmt``; 404s (deleted meanwhile) left out. Raises
        ``_TextRefused`` when every get of a full batch was refused for its scope."""
        replies: dict[str, tuple[Any, HttpError | None]] = {}

        def done(request_id: str, response: Any, exception: HttpError | None) -> None:
            replies[request_id] = (response, exception)

        batch = BatchHttpRequest(callback=done, batch_uri=self._batch_uri)
        headers = list(METADATA_HEADERS) if fmt == "metadata" else None
        for message_id in ids:
            batch.add(
                self._users.messages().get(
                    userId=self.user_id, id=message_id, format=fmt, metadataHeaders=headers,
                ),
                request_id=message_id,
            )  # fmt: skip
        self._execute(batch, f"batch of {len(ids)} messages.get", batch=True)
        items: list[Item] = []
        failures: list[ConnectorError] = []
        refused = 0  # gets refused with a 403 that is not a rate limit
        for message_id in ids:
            response, error = replies.get(message_id, (None, None))
            if error is not None:
                if int(error.resp.status) == 404:
                    continue  # deleted since it was listed
                reason = error_detail(error.content)[0]
                if int(error.resp.status) == 403 and reason not in RATE_REASONS:
                    refused += 1
                failures.append(_translate(error, f"messages.get {message_id}", NotFound))
            elif not isinstance(response, dict):
                failures.append(InvalidData(f"Gmail messages.get {message_id}: no reply"))
            else:
                items.append(response)
        if fmt == "full" and failures and refused == len(failures):
            raise _TextRefused
        limited = [f for f in failures if isinstance(f, RateLimited)]
        if limited:  # slowing down matters most: wait as long as the longest asks
            raise max(limited, key=lambda f: f.retry_after or 0.0)
        if failures:
            raise failures[0]
        return items

    def _message(self, item: Item, with_text: bool) -> MessageData:
        message_id = str(item.get("id") or "")
        payload = item.get("payload") or {}
        raw = _header_block(payload.get("headers") or [])
        if not raw:
            raise InvalidData("the reply holds no headers")
        internal = _internal_date(item.get("internalDate"))
        msg = parse_message(
            raw, source_id=message_id, folder=self._folder(item), mtime=internal or _EPOCH
        )
        extra = dict(msg.extra)
        extra.pop("body_hash", None)  # the raw body is never read
        text = payload_text(payload) if with_text else None
        if text is not None:
            extra.update(text_keys(text))
        if extra.get("date_source") == "mtime":
            if internal is None:
                raise InvalidData("neither a Date header nor an internalDate")
            extra["date_source"] = "internaldate"
        extra["gmail_id"] = message_id
        return replace(msg, thread_id=str(item.get("threadId") or ""), extra=extra)

    def _folder(self, item: Item) -> str:
        labels = item.get("labelIds") or ()
        for label in ("SENT", "INBOX", *self.labels):
            if label in labels:
                return str(label)
        return ""

    # ------------------------------------------------------------------ requests

    def _execute(
        self,
        request: Any,
        what: str,
        *,
        missing: type[ConnectorError] = NotFound,
        batch: bool = False,
    ) -> Any:
        """Run one request (or batch); every failure becomes an error of our tree."""
        try:
            if batch:
                return request.execute(http=self._http)
            return request.execute(num_retries=0)
        except BatchError as exc:  # a batch reply the client could not take apart
            raise InvalidData(f"Gmail {what}: malformed batch reply ({exc.reason})") from None
        except HttpError as exc:
            raise _translate(exc, what, missing) from None
        except google.auth.exceptions.RefreshError as exc:
            if getattr(exc, "retryable", False):
                raise Transient(f"Gmail {what}: token refresh failed, try again") from None
            raise AuthExpired(f"Gmail {what}: the token refresh was refused") from None
        except google.auth.exceptions.TransportError:
            raise Transient(f"Gmail {what}: the token endpoint could not be reached") from None
        except TimeoutError:
            raise Transient(f"Gmail {what}: timed out") from None
        except (httplib2.HttpLib2Error, http.client.HTTPException, OSError) as exc:
            raise Transient(f"Gmail {what}: {type(exc).__name__}") from None
        except (ValueError, IndexError, KeyError):  # not JSON; a batch part not HTTP
            raise InvalidData(f"Gmail {what}: malformed reply") from None

    def _count(self, method: str, uri: str, status: int) -> None:
        self.requests += 1
        if self._on_request is not None:
            self._on_request(method, uri, status)


# ------------------------------------------------------------------------ helpers


def _header_block(headers: Iterable[Any]) -> bytes:
    """RFC 822 header lines from Gmail's ``payload.headers`` (values are unfolded), of
    ``METADATA_HEADERS`` only, in their order: what ``format=metadata`` gives."""
    lines: list[str] = []
    for header in headers:
        if not isinstance(header, Mapping):
            continue
        name = str(header.get("name") or "").strip()
        if not name or any(c in name for c in ":\r\n ") or name.lower() not in _WANTED_HEADERS:
            continue
        value = " ".join(str(header.get("value") or "").splitlines())
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") if lines else b""


def _internal_date(value: Any) -> datetime | None:
    """Gmail's ``internalDate`` (ms since the epoch, a string) as an aware UTC datetime."""
    try:
        return datetime.fromtimestamp(int(str(value)) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _translate(exc: HttpError, what: str, missing: type[ConnectorError]) -> ConnectorError:
    """The error of our tree that a Gmail error reply stands for."""
    return google_error(
        exc, f"Gmail {what}", {404: lambda where, _: missing(f"{where}: not found")}
    )
