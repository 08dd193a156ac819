"""A protocol-level Gmail API v1 server on 127.0.0.1, for the real client library.

It speaks the REST JSON of the discovery document (``gmail/v1/users/{userId}/...``
under the root URL), the batch endpoint (``/batch/gmail/v1`` and ``/batch``:
``multipart/mixed`` of ``application/http`` parts, answered part by part with
``Content-ID: <response-...>``) and the OAuth 2.0 token endpoint (``/token``):

* A mailbox per user: messages with label ids, a thread id and an internalDate, and a
  history of changes (messageAdded, messageDeleted, labelAdded, labelRemoved) whose ids
  increase with random gaps, as Gmail's do. ``deliver`` stores an RFC 822 message
  (threaded by In-Reply-To/References onto a message already held), ``load`` stores
  Gmail message resources as given (real payloads from elsewhere).
* ``users.getProfile``; ``users.messages.list``: ``labelIds`` (all must match),
  ``q`` (a small subset: ``in:``/``label:``, ``from:``, ``to:``, ``subject:``,
  ``newer_than:``/``older_than:`` (d, m, y), ``after:``/``before:``, ``OR``, bare words),
  ``includeSpamTrash``, ``maxResults`` (default 100, at most 500), ``pageToken``; newest
  first; ``messages`` left out when there are none. ``users.messages.get``: ``format``
  full (payload tree with headers, parts, base64url bodies; an attachment, a part with a
  filename or ``Content-Disposition: attachment``, has ``body.attachmentId`` and its size
  instead of data, as Gmail's), metadata (``payload.headers`` cut to ``metadataHeaders``,
  any case), minimal, raw; 404 for a message not (or no longer) there.
  ``users.messages.attachments.get`` gives an attachment's ``data`` and ``size``. ``users.history.list``: ``startHistoryId`` (required; below the oldest
  history kept: 404 with Google's error JSON), ``historyTypes``, ``labelId``,
  ``maxResults``, ``pageToken``; ``historyId`` is the mailbox's history id when the
  listing began.
* Scopes: ``gmail.readonly``, ``gmail.modify``, ``mail.google.com`` read anything;
  ``gmail.metadata`` alone refuses ``q`` and formats full and raw (403), as Gmail does.
* ``/token``: ``refresh_token`` grant (installed apps) and the JWT bearer grant of
  service accounts (RS256 signature checked; ``sub`` only for subjects the account is
  delegated). Access tokens expire; unknown or expired ones get 401.
* Faults: ``fail_next(status, retry_after=..., times=..., method=...)`` and
  ``hang_next(seconds, method=...)`` apply to the next API calls (``method`` one of
  ``getProfile``, ``messages.list``, ``messages.get``, ``history.list``, ``batch``: the
  envelope of a batch; a part of a batch is the call it holds; None: the next of any
  kind), not to the token endpoint nor to calls made with tokens from
  ``access_token_for(..., exempt=True)``. ``delete_after_next_list`` deletes a message
  right after the next listing named it. ``replay_next_batch`` answers the next batch
  with a recorded batch reply (its parts matched to the request's by message id).

* ``users.messages.send`` (JSON ``{"raw": base64url RFC 822}``; scopes ``gmail.send``,
  ``gmail.compose``, ``gmail.modify`` or ``mail.google.com``): the message is stored with
  the SENT label (its Message-ID kept) and recorded in ``sent``; a To header with no
  address is refused (400 ``invalidArgument``). ``q`` also takes ``rfc822msgid:``.
  Faults apply to it as ``messages.send``.

``requests`` records every call as ``Logged(method, path, params, status, in_batch)``.
"""

from __future__ import annotations

import base64
import copy
import http
import json
import random
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.google_oauth import CHALLENGE, OAuthError, OAuthServer, b64decode
from tests.support.google_server import ApiError

READONLY = "https://www.googleapis.com/auth/gmail.readonly"
METADATA = "https://www.googleapis.com/auth/gmail.metadata"
MODIFY = "https://www.googleapis.com/auth/gmail.modify"
FULL_ACCESS = "https://mail.google.com/"
CONTENT_SCOPES = frozenset({READONLY, MODIFY, FULL_ACCESS})
SEND = "https://www.googleapis.com/auth/gmail.send"
COMPOSE = "https://www.googleapis.com/auth/gmail.compose"
SEND_SCOPES = frozenset({SEND, COMPOSE, MODIFY, FULL_ACCESS})
GMAIL_SCOPES = CONTENT_SCOPES | {METADATA} | SEND_SCOPES
API = "/gmail/v1/users/"
BATCH_PATHS = ("/batch/gmail/v1", "/batch")
MAX_BATCH = 100
HISTORY_TYPES = ("messageAdded", "messageDeleted", "labelAdded", "labelRemoved")
_HISTORY_KEYS = {"messageAdded": "messagesAdded", "messageDeleted": "messagesDeleted",
                 "labelAdded": "labelsAdded", "labelRemoved": "labelsRemoved"}  # fmt: skip
_SYSTEM_LABELS = ("INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT")
_MESSAGES = {"rateLimitExceeded": "Rate Limit Exceeded",
             "userRateLimitExceeded": "User Rate Limit Exceeded",
             "backendError": "Backend Error", "notFound": "Requested entity was not found."}  # fmt: skip
_DEFAULT_REASONS = {400: "badRequest", 401: "authError", 403: "rateLimitExceeded",
                    404: "notFound", 429: "rateLimitExceeded"}  # fmt: skip
_PARSER = BytesParser(policy=policy.compat32)


@dataclass(frozen=True, slots=True)
class Logged:
    method: str
    path: str
    params: dict[str, list[str]]
    status: int
    in_batch: bool = False


@dataclass(slots=True)
class _Fault:
    status: int = 0
    delay: float = 0.0
    retry_after: int | None = None
    reason: str = ""
    method: str | None = None


@dataclass(slots=True)
class StoredMessage:
    id: str
    thread_id: str
    labels: list[str]
    history_id: int
    resource: dict[str, Any]  # the Gmail resource (format full), labelIds/historyId aside
    raw: bytes | None = None
    attachments: dict[str, bytes] = field(default_factory=dict)  # attachmentId -> content


@dataclass(frozen=True, slots=True)
class Change:
    id: int
    kind: str  # one of HISTORY_TYPES
    message_id: str
    thread_id: str
    labels: tuple[str, ...]  # the message's labels after the change
    changed: tuple[str, ...] = ()  # labels added or removed


@dataclass(slots=True)
class Mailbox:
    user: str
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    history: list[Change] = field(default_factory=list)
    history_id: int = 1000
    floor: int = 0  # a startHistoryId below it is answered with 404
    seq: int = 0


class GmailServer(OAuthServer):
    """A threaded server; ``url`` is the root URL (``http://127.0.0.1:<port>/``)."""

    api_scopes = GMAIL_SCOPES
    default_scopes = frozenset({READONLY})

    def __init__(self, *, token_lifetime: int = 3600, seed: int = 7) -> None:
        super().__init__(token_lifetime=token_lifetime)
        self.requests: list[Logged] = []
        self._rng = random.Random(seed)
        self._mailboxes: dict[str, Mailbox] = {}
        self._faults: list[_Fault] = []
        self._after_list: list[tuple[str, str]] = []  # (user, message id)
        self._replays: list[str] = []
        self.sent: list[tuple[str, bytes]] = []  # (user, raw RFC 822) of messages.send

    # ------------------------------------------------------------------ mailboxes

    def mailbox(self, user: str) -> Mailbox:
        with self._lock:
            if user not in self._mailboxes:
                self._mailboxes[user] = Mailbox(user)
            return self._mailboxes[user]

    def deliver(
        self,
        user: str,
        raw: bytes | str,
        labels: Sequence[str] = ("INBOX",),
        *,
        internal_date: datetime | None = None,
        thread_id: str = "",
    ) -> str:
        """Store an RFC 822 message with ``labels``; its Gmail id."""
        data = raw.encode("utf-8") if isinstance(raw, str) else raw
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        msg = message_from_bytes(data, policy=policy.compat32)
        when = internal_date or _header_date(msg.get("Date")) or datetime.now(UTC)
        with self._lock:
            box = self.mailbox(user)
            message_id = self._new_id(box, when)
            thread = thread_id or self._thread_of(box, msg) or message_id
            attachments: dict[str, bytes] = {}
            payload = _payload(msg, "", attachments)
            resource = {
                "id": message_id,
                "threadId": thread,
                "snippet": _snippet(msg),
                "payload": payload,
                "sizeEstimate": len(data),
                "internalDate": str(int(when.timestamp() * 1000)),
            }
            stored = StoredMessage(message_id, thread, list(labels), 0, resource, data,
                                   attachments)  # fmt: skip
            box.messages[message_id] = stored
            self._change(box, stored, "messageAdded")
        return message_id

    def load(self, user: str, items: Iterable[Mapping[str, Any]]) -> list[str]:
        """Store Gmail message resources exactly as given (real payloads), unvalidated;
        their ids, historyIds and thread ids are kept."""
        ids: list[str] = []
        with self._lock:
            box = self.mailbox(user)
            for item in items:
                resource = copy.deepcopy(dict(item))
                labels = list(resource.pop("labelIds", None) or [])
                given = str(resource.pop("historyId", "") or "")
                if given.isdigit():
                    box.history_id = max(box.history_id, int(given))
                message_id = str(resource["id"])
                thread = str(resource.get("threadId") or message_id)
                stored = StoredMessage(message_id, thread, labels, 0, resource)
                box.messages[message_id] = stored
                self._change(box, stored, "messageAdded")
                ids.append(message_id)
        return ids

    def delete(self, user: str, message_id: str) -> None:
        """Delete a message for good (not to TRASH): later gets answer 404."""
        with self._lock:
            box = self.mailbox(user)
            stored = box.messages.pop(message_id)
            self._change(box, stored, "messageDeleted")

    def modify(
        self, user: str, message_id: str, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> None:
        with self._lock:
            box = self.mailbox(user)
            stored = box.messages[message_id]
            added = [x for x in add if x not in stored.labels]
            removed = [x for x in remove if x in stored.labels]
            stored.labels = [x for x in stored.labels if x not in removed] + added
            if added:
                self._change(box, stored, "labelAdded", tuple(added))
            if removed:
                self._change(box, stored, "labelRemoved", tuple(removed))

    def history_id(self, user: str) -> int:
        with self._lock:
            return self.mailbox(user).history_id

    def expire_history(self, user: str) -> None:
        """Forget the history so far: every startHistoryId below the current one is 404."""
        with self._lock:
            box = self.mailbox(user)
            box.floor = box.history_id

    def delete_after_next_list(self, user: str, message_id: str) -> None:
        """Delete ``message_id`` right after the next messages.list reply names it."""
        with self._lock:
            self._after_list.append((user, message_id))

    def fail_next(
        self,
        status: int,
        *,
        retry_after: int | None = None,
        times: int = 1,
        reason: str = "",
        method: str | None = None,
    ) -> None:
        with self._lock:
            self._faults.extend(
                _Fault(status, 0.0, retry_after, reason, method) for _ in range(times)
            )

    def hang_next(self, seconds: float, *, method: str | None = None) -> None:
        with self._lock:
            self._faults.append(_Fault(0, seconds, method=method))

    def replay_next_batch(self, recorded: str) -> None:
        """Answer the next batch with ``recorded`` (a batch reply body captured from
        Gmail): its parts are matched to the request's by message id, error parts to the
        requests left over, in order; the Content-IDs are set to the request's."""
        with self._lock:
            self._replays.append(recorded)

    def api_requests(self) -> list[Logged]:
        """What reached the server over HTTP (a batch is one), token requests aside."""
        return [r for r in self.requests if not r.in_batch and r.path != "/token"]

    def api_calls(self, method: str | None = None) -> list[Logged]:
        """API calls (the parts of a batch, not its envelope), of ``method`` if given."""
        return [
            r for r in self.requests
            if r.path.startswith(API) and (method is None or _operation(r.method, r.path) == method)
        ]  # fmt: skip

    # ------------------------------------------------------------------ dispatch

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        path = parts.path
        params = parse_qs(parts.query, keep_blank_values=True)
        if path == "/token" and method == "POST":
            try:
                status, payload = 200, self._token(body)
            except OAuthError as exc:
                status = exc.status
                payload = {"error": exc.error, "error_description": exc.description}
            with self._lock:
                self.requests.append(Logged(method, path, params, status))
            return status, _JSON, json.dumps(payload).encode()
        if path in BATCH_PATHS and method == "POST":
            return self._batch(path, headers, body)
        if _operation(method, path) == "messages.send":
            return self._send_call(method, path, params, headers, body)
        status, extra, payload = self._call(method, path, params, headers, in_batch=False)
        data = b"" if payload is None else json.dumps(payload).encode()
        return status, {**_JSON, **extra}, data

    def _call(
        self,
        method: str,
        path: str,
        params: dict[str, list[str]],
        headers: Mapping[str, str],
        *,
        in_batch: bool,
    ) -> tuple[int, dict[str, str], Any]:
        """One API call: (status, extra headers, JSON payload); logged."""
        try:
            status, payload, extra = 200, self._api(method, path, params, headers), {}
        except ApiError as exc:
            status, payload, extra = exc.status, exc.body(), exc.headers
        with self._lock:
            self.requests.append(Logged(method, path, params, status, in_batch))
        return status, extra, payload

    def _fault(self, operation: str, headers: Mapping[str, str]) -> None:
        """Apply the next fault meant for ``operation`` (sleeping, or raising)."""
        token = self._token_of(headers)
        with self._lock:
            if token is not None and token.exempt:
                return
            index = next(
                (i for i, f in enumerate(self._faults) if f.method in (None, operation)), None
            )
            fault = self._faults.pop(index) if index is not None else None
        if fault is None:
            return
        if fault.delay:
            time.sleep(fault.delay)
        if fault.status:
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
            reason = fault.reason or _DEFAULT_REASONS.get(fault.status, "backendError")
            domain = "usageLimits" if "Limit" in reason else "global"
            message = _MESSAGES.get(reason, f"HTTP {fault.status}")
            raise ApiError(fault.status, reason, message, domain=domain, headers=extra)

    def _api(
        self,
        method: str,
        path: str,
        params: dict[str, list[str]],
        headers: Mapping[str, str],
    ) -> Any:
        if not path.startswith(API):
            raise ApiError(404, "notFound", "Not Found")
        operation = _operation(method, path)
        self._fault(operation, headers)
        if not any(k.lower() == "authorization" for k in headers):
            raise ApiError(401, "required", "Login Required.", headers=CHALLENGE)
        token = self._token_of(headers)
        if token is None or token.expires_at < time.time():
            raise ApiError(401, "authError", "Invalid Credentials", headers=CHALLENGE)
        if not token.scopes & GMAIL_SCOPES:
            raise ApiError(403, "insufficientPermissions",
                           "Request had insufficient authentication scopes.")  # fmt: skip
        segments = [unquote(s) for s in path[len(API) :].split("/")]
        if segments[0] not in ("me", token.user):
            raise ApiError(403, "forbidden", f"Delegation denied for {token.user}")
        q = {k: v[-1] for k, v in params.items()}
        metadata_only = not token.scopes & CONTENT_SCOPES
        if metadata_only and q.get("q"):
            raise ApiError(403, "forbidden", "Metadata scope does not support 'q' parameter")
        with self._lock:
            box = self.mailbox(token.user)
            if operation == "getProfile":
                return {"emailAddress": box.user, "messagesTotal": len(box.messages),
                        "threadsTotal": len({m.thread_id for m in box.messages.values()}),
                        "historyId": str(box.history_id)}  # fmt: skip
            if operation == "messages.list":
                reply, named = self._list(box, params)
                for user, message_id in list(self._after_list):
                    if user == box.user and message_id in named:
                        self._after_list.remove((user, message_id))
                        self.delete(user, message_id)
                return reply
            if operation == "messages.get":
                fmt = q.get("format", "full")
                if metadata_only and fmt in ("full", "raw"):
                    raise ApiError(403, "forbidden",
                                   f"Metadata scope doesn't allow format {fmt.upper()}")  # fmt: skip
                return self._get(box, segments[2], fmt, params.get("metadataHeaders", []))
            if operation == "messages.attachments.get":
                if metadata_only:
                    raise ApiError(403, "forbidden", "Metadata scope doesn't allow attachments")
                stored = box.messages.get(segments[2])
                content = stored.attachments.get(segments[4]) if stored else None
                if content is None:
                    raise ApiError(404, "notFound", "Requested entity was not found.")
                return {"size": len(content),
                        "data": base64.urlsafe_b64encode(content).decode()}  # fmt: skip
            if operation == "history.list":
                return self._history(box, params)
        raise ApiError(404, "notFound", "Not Found")

    def _send_call(
        self, method: str, path: str, params: dict[str, list[str]], headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        """users.messages.send: authorised as any call, then the raw message stored as SENT."""
        try:
            self._fault("messages.send", headers)
            token = self._token_of(headers)
            if token is None or token.expires_at < time.time():
                raise ApiError(401, "authError", "Invalid Credentials", headers=CHALLENGE)
            if not token.scopes & SEND_SCOPES:
                raise ApiError(403, "insufficientPermissions",
                               "Request had insufficient authentication scopes.")  # fmt: skip
            user = unquote(path[len(API) :].split("/")[0])
            if user not in ("me", token.user):
                raise ApiError(403, "forbidden", f"Delegation denied for {token.user}")
            try:
                raw = b64decode(str(json.loads(body or b"{}").get("raw") or ""))
            except (ValueError, AttributeError):
                raise ApiError(400, "invalidArgument", "'raw' RFC822 payload message string "
                               "or uploading message via /upload/* URL required") from None  # fmt: skip
            msg = message_from_bytes(raw, policy=policy.compat32)
            if not raw or "@" not in str(msg.get("To", "")):
                raise ApiError(400, "invalidArgument", "Invalid To header")
            with self._lock:
                if not msg.get("From"):
                    raw = f"From: {token.user}\r\n".encode() + raw
                message_id = self.deliver(token.user, raw, ("SENT",))
                stored = self.mailbox(token.user).messages[message_id]
                self.sent.append((token.user, raw))
            status, payload, extra = 200, {"id": message_id, "threadId": stored.thread_id,
                                           "labelIds": ["SENT"]}, {}  # fmt: skip
        except ApiError as exc:
            status, payload, extra = exc.status, exc.body(), exc.headers
        with self._lock:
            self.requests.append(Logged(method, path, params, status, False))
        return status, {**_JSON, **extra}, json.dumps(payload).encode()

    # ------------------------------------------------------------------ messages

    def _list(self, box: Mailbox, params: dict[str, list[str]]) -> tuple[dict[str, Any], set[str]]:
        q = {k: v[-1] for k, v in params.items()}
        limit = _int_param(q, "maxResults", 100, 1, 500)
        wanted = params.get("labelIds", [])
        hidden = set() if q.get("includeSpamTrash") == "true" else {"SPAM", "TRASH"}
        matcher = _Query(q.get("q", ""))
        found = [
            m for m in box.messages.values()
            if all(x in m.labels for x in wanted) and not hidden & set(m.labels)
            and matcher.matches(m)
        ]  # fmt: skip
        found.sort(key=lambda m: (_internal_ms(m), m.id), reverse=True)
        offset = 0
        if q.get("pageToken"):
            offset = int(_decode_token(q["pageToken"]).get("o", 0))
        page = found[offset : offset + limit]
        reply: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if page:
            reply["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if offset + limit < len(found):
            reply["nextPageToken"] = _encode_token({"o": offset + limit})
        return reply, {m.id for m in page}

    def _get(self, box: Mailbox, message_id: str, fmt: str, names: list[str]) -> dict[str, Any]:
        stored = box.messages.get(message_id)
        if stored is None:
            raise ApiError(404, "notFound", "Requested entity was not found.")
        if fmt not in ("full", "metadata", "minimal", "raw"):
            raise ApiError(400, "invalidArgument", f"Invalid value for format: {fmt}")
        res = stored.resource
        out: dict[str, Any] = {"id": stored.id, "threadId": stored.thread_id,
                               "labelIds": list(stored.labels)}  # fmt: skip
        for key in ("snippet",):
            if key in res:
                out[key] = res[key]
        payload = res.get("payload") or {}
        if fmt == "full":
            out["payload"] = copy.deepcopy(payload)
        elif fmt == "metadata":
            wanted = {n.lower() for n in names}
            kept = [h for h in payload.get("headers") or ()
                    if not wanted or str(h.get("name", "")).lower() in wanted]  # fmt: skip
            out["payload"] = {"partId": payload.get("partId", ""),
                              "mimeType": payload.get("mimeType", "text/plain"),
                              "filename": payload.get("filename", ""), "headers": kept}  # fmt: skip
        elif fmt == "raw":
            if stored.raw is None:
                raise ApiError(400, "failedPrecondition", "Raw content not available.")
            out["raw"] = base64.urlsafe_b64encode(stored.raw).decode()
        for key in ("sizeEstimate",):
            if key in res:
                out[key] = res[key]
        out["historyId"] = str(stored.history_id)
        if "internalDate" in res:
            out["internalDate"] = res["internalDate"]
        return out

    def _history(self, box: Mailbox, params: dict[str, list[str]]) -> dict[str, Any]:
        q = {k: v[-1] for k, v in params.items()}
        start_text = q.get("startHistoryId", "")
        if not start_text:
            raise ApiError(400, "invalidArgument", "Missing required parameter: startHistoryId")
        if not start_text.isdigit():
            raise ApiError(400, "invalidArgument", "Invalid startHistoryId")
        start = int(start_text)
        if start < box.floor:
            raise ApiError(404, "notFound", "Requested entity was not found.")
        limit = _int_param(q, "maxResults", 100, 1, 500)
        types = set(params.get("historyTypes", [])) or set(HISTORY_TYPES)
        if types - set(HISTORY_TYPES):
            raise ApiError(400, "invalidArgument", "Invalid value for historyTypes")
        label = q.get("labelId")
        upto, after = box.history_id, start
        if q.get("pageToken"):
            page = _decode_token(q["pageToken"])
            upto, after = int(page["u"]), int(page["a"])
        selected = [
            c for c in box.history
            if after < c.id <= upto and c.kind in types and (not label or label in c.labels)
        ]  # fmt: skip
        reply: dict[str, Any] = {"historyId": str(upto)}
        if selected[:limit]:
            reply["history"] = [_history_record(c) for c in selected[:limit]]
        if len(selected) > limit:
            reply["nextPageToken"] = _encode_token({"u": upto, "a": selected[limit - 1].id})
        return reply

    # ------------------------------------------------------------------- batches

    def _batch(
        self, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        try:
            self._fault("batch", headers)
            if not ctype.lower().startswith("multipart/mixed"):
                raise ApiError(400, "badRequest", "Batch requests must be multipart/mixed")
            envelope = _PARSER.parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
            parts = envelope.get_payload() if envelope.is_multipart() else []
            if not parts:
                raise ApiError(400, "badRequest", "Batch request has no parts")
            if len(parts) > MAX_BATCH:
                raise ApiError(400, "badRequest",
                               f"Too many requests in batch; max is {MAX_BATCH}")  # fmt: skip
        except ApiError as exc:
            with self._lock:
                self.requests.append(Logged("POST", path, {}, exc.status))
            return exc.status, {**_JSON, **exc.headers}, json.dumps(exc.body()).encode()
        with self._lock:
            self.requests.append(Logged("POST", path, {}, 200))
            replay = self._replays.pop(0) if self._replays else None
        requests = [_inner_request(p, headers) for p in parts]
        if replay is not None:
            boundary, chunks = self._replayed(replay, requests)
        else:
            boundary = "batch_" + secrets.token_urlsafe(18)
            chunks = []
            for content_id, method, target, inner_headers in requests:
                split = urlsplit(target)
                params = parse_qs(split.query, keep_blank_values=True)
                status, extra, payload = self._call(
                    method, split.path, params, inner_headers, in_batch=True
                )
                head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
                        "Content-Type: application/json; charset=UTF-8",
                        *(f"{k}: {v}" for k, v in extra.items())]  # fmt: skip
                text = json.dumps(payload, indent=2) if payload is not None else ""
                chunks.append(_part(content_id, "\r\n".join(head) + "\r\n\r\n" + text + "\r\n"))
        data = "".join(f"--{boundary}\r\n{c}" for c in chunks) + f"--{boundary}--\r\n"
        head = {"Content-Type": f"multipart/mixed; boundary={boundary}"}
        return 200, head, data.encode("utf-8")

    def _replayed(
        self, recorded: str, requests: list[tuple[str, str, str, dict[str, str]]]
    ) -> tuple[str, list[str]]:
        boundary = recorded.lstrip().split("\n", 1)[0].strip().removeprefix("--")
        answers: list[tuple[str, str]] = []  # (message id or "", the HTTP response text)
        for chunk in recorded.split(f"--{boundary}")[1:]:
            if chunk.startswith("--"):
                break
            _head, _, response = chunk.lstrip("\r\n").partition("\n\n")
            _status, _, rest = response.partition("\n\n")
            try:
                answer_id = str(json.loads(rest).get("id") or "")
            except ValueError:
                answer_id = ""
            answers.append((answer_id, response))
        chunks: list[str] = []
        used: set[int] = set()
        for content_id, method, target, _headers in requests:
            wanted = unquote(urlsplit(target).path.rsplit("/", 1)[-1])
            index = next((i for i, (a, _) in enumerate(answers) if a == wanted and i not in used),
                         None)  # fmt: skip
            if index is None:
                index = next((i for i, (a, _) in enumerate(answers) if not a and i not in used),
                             None)  # fmt: skip
            if index is None:
                raise AssertionError(f"the recorded batch has no answer for {wanted}")
            used.add(index)
            response = answers[index][1]
            status = int(response.split(" ", 2)[1])
            with self._lock:
                self.requests.append(Logged(method, urlsplit(target).path, {}, status, True))
            # the recording lost its CRs; HTTP (and the client's parser) wants CRLF
            wired = response.replace("\r\n", "\n").rstrip("\n").replace("\n", "\r\n")
            chunks.append(_part(content_id, wired + "\r\n"))
        return boundary, chunks

    # ------------------------------------------------------------------- history

    def _new_id(self, box: Mailbox, when: datetime) -> str:
        box.seq += 1
        return f"{int(when.timestamp() * 1000) << 20 | box.seq:016x}"[-16:]

    def _thread_of(self, box: Mailbox, msg: Message) -> str:
        refs = re.findall(
            r"<([^<>]+)>", f"{msg.get('In-Reply-To', '')} {msg.get('References', '')}"
        )
        for ref in reversed(refs):
            for stored in box.messages.values():
                headers = (stored.resource.get("payload") or {}).get("headers") or ()
                for h in headers:
                    if h.get("name", "").lower() == "message-id" and ref in h.get("value", ""):
                        return stored.thread_id
        return ""

    def _change(
        self, box: Mailbox, stored: StoredMessage, kind: str, changed: tuple[str, ...] = ()
    ) -> None:
        box.history_id += 1 + self._rng.randrange(4)  # increasing, with gaps
        stored.history_id = box.history_id
        box.history.append(Change(box.history_id, kind, stored.id, stored.thread_id,
                                  tuple(stored.labels), changed))  # fmt: skip


_JSON = {"Content-Type": "application/json; charset=UTF-8"}


# --------------------------------------------------------------------- helpers


def _operation(method: str, path: str) -> str:
    segments = path[len(API) :].split("/") if path.startswith(API) else []
    if method == "GET" and segments[1:] == ["profile"]:
        return "getProfile"
    if method == "GET" and segments[1:] == ["messages"]:
        return "messages.list"
    if method == "GET" and len(segments) == 3 and segments[1] == "messages":
        return "messages.get"
    if method == "GET" and len(segments) == 5 and segments[1::2] == ["messages", "attachments"]:
        return "messages.attachments.get"
    if method == "GET" and segments[1:] == ["history"]:
        return "history.list"
    if method == "POST" and segments[1:] == ["messages", "send"]:
        return "messages.send"
    return "unknown"


def _inner_request(part: Message, outer: Mapping[str, str]) -> tuple[str, str, str, dict[str, str]]:
    """(Content-ID, method, target, headers) of one application/http part."""
    content_id = str(part.get("Content-ID", "")).strip()
    text = part.get_payload()
    if not isinstance(text, str):
        raise ApiError(400, "badRequest", "Batch part is not application/http")
    text = text.replace("\r\n", "\n")
    request_line, _, rest = text.lstrip("\n").partition("\n")
    head, _, _body = rest.partition("\n\n")
    method, target = request_line.split(" ")[:2]
    headers = {}
    for line in head.split("\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip()] = value.strip()
    if not any(k.lower() == "authorization" for k in headers):
        auth = next((v for k, v in outer.items() if k.lower() == "authorization"), "")
        if auth:
            headers["Authorization"] = auth
    return content_id, method, target, headers


def _part(content_id: str, response: str) -> str:
    cid = content_id.strip().removeprefix("<").removesuffix(">")
    return f"Content-Type: application/http\r\nContent-ID: <response-{cid}>\r\n\r\n{response}"


def _history_record(change: Change) -> dict[str, Any]:
    ref = {"id": change.message_id, "threadId": change.thread_id}
    entry: dict[str, Any] = {"message": {**ref, "labelIds": list(change.labels)}}
    if change.kind in ("labelAdded", "labelRemoved"):
        entry["labelIds"] = list(change.changed)
    return {"id": str(change.id), "messages": [ref], _HISTORY_KEYS[change.kind]: [entry]}


def _unfold(value: str) -> str:
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return re.sub(r"\r?\n", "", value)


def _payload(msg: Message, part_id: str, attachments: dict[str, bytes]) -> dict[str, Any]:
    """Gmail's MessagePart of ``msg``; the content of its attachments goes to
    ``attachments`` (by attachment id), not into the tree."""
    node: dict[str, Any] = {
        "partId": part_id,
        "mimeType": msg.get_content_type(),
        "filename": msg.get_filename() or "",
        "headers": [{"name": k, "value": _unfold(str(v))} for k, v in msg.raw_items()],
    }
    if msg.is_multipart():
        node["body"] = {"size": 0}
        children = msg.get_payload()
        assert isinstance(children, list)
        node["parts"] = [
            _payload(p, f"{part_id}.{i}" if part_id else str(i), attachments)
            for i, p in enumerate(children)
        ]
    else:
        data = msg.get_payload(decode=True)
        data = data if isinstance(data, bytes) else b""
        node["body"] = {"size": len(data)}
        if node["filename"] or msg.get_content_disposition() == "attachment":
            attachment_id = "ANGjdJ" + secrets.token_urlsafe(60)  # Gmail's are opaque and long
            attachments[attachment_id] = data
            node["body"]["attachmentId"] = attachment_id
        elif data:
            node["body"]["data"] = base64.urlsafe_b64encode(data).decode()
    return node


def _snippet(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                charset = part.get_content_charset() or "utf-8"
                return " ".join(data.decode(charset, "replace").split())[:200]
    return ""


def _header_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _internal_ms(stored: StoredMessage) -> int:
    try:
        return int(stored.resource.get("internalDate") or 0)
    except ValueError:
        return 0


def _header(stored: StoredMessage, name: str) -> str:
    headers = (stored.resource.get("payload") or {}).get("headers") or ()
    return " ".join(str(h.get("value", "")) for h in headers
                    if str(h.get("name", "")).lower() == name)  # fmt: skip


class _Query:
    """A small subset of Gmail's search: terms ANDed, ``OR`` between two terms."""

    _AGE = re.compile(r"^(\d+)([dmy])$")

    def __init__(self, text: str) -> None:
        self.groups: list[list[tuple[str, str]]] = []
        pending_or = False
        for word in text.split():
            if word == "OR" and self.groups:
                pending_or = True
                continue
            op, sep, arg = word.partition(":")
            term = (op.lower(), arg) if sep and arg else ("", word)
            if pending_or:
                self.groups[-1].append(term)
            else:
                self.groups.append([term])
            pending_or = False

    def matches(self, stored: StoredMessage) -> bool:
        return all(any(self._term(stored, op, arg) for op, arg in g) for g in self.groups)

    def _term(self, stored: StoredMessage, op: str, arg: str) -> bool:
        when = datetime.fromtimestamp(_internal_ms(stored) / 1000, UTC)
        if op in ("in", "label"):
            name = arg.upper() if arg.upper() in _SYSTEM_LABELS else arg
            return name in stored.labels
        if op == "rfc822msgid":
            return _header(stored, "message-id").strip().strip("<>") == arg.strip("<>")
        if op in ("from", "to", "subject"):
            return arg.lower() in _header(stored, op).lower()
        if op in ("newer_than", "older_than"):
            match = self._AGE.match(arg.lower())
            if not match:
                raise ApiError(400, "invalidArgument", f"Invalid query: {op}:{arg}")
            days = int(match.group(1)) * {"d": 1, "m": 31, "y": 365}[match.group(2)]
            edge = datetime.now(UTC) - timedelta(days=days)
            return when >= edge if op == "newer_than" else when < edge
        if op in ("after", "before"):
            edge = _query_date(arg)
            return when >= edge if op == "after" else when < edge
        text = f"{_header(stored, 'subject')} {stored.resource.get('snippet', '')}"
        return f"{op}:{arg}".strip(":").lower() in text.lower()


def _query_date(text: str) -> datetime:
    if text.isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    try:
        return datetime.strptime(text.replace("-", "/"), "%Y/%m/%d").replace(tzinfo=UTC)
    except ValueError:
        raise ApiError(400, "invalidArgument", f"Invalid query date: {text}") from None


def _int_param(q: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(q.get(name, default))
    except ValueError:
        raise ApiError(400, "invalidArgument", f"Invalid value for {name}") from None
    if value < low:
        raise ApiError(400, "invalidArgument", f"Invalid value for {name}")
    return min(value, high)


def _encode_token(data: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _decode_token(text: str) -> dict[str, Any]:
    try:
        data = json.loads(b64decode(text))
        if not isinstance(data, dict):
            raise ValueError(text)
        return data
    except ValueError:
        raise ApiError(400, "invalidArgument", "Invalid pageToken") from None
