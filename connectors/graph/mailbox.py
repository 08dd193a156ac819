"""The manager's Inbox and Sent Items in Microsoft 365, through Microsoft Graph.

The same Graph connection as the calendar (``connectors.graph.client.GraphConnection``),
with its msal token handling (``Tokens``), request loop and error mapping (``fail``).

Reading: per folder, ``GET /users/{id}/mailFolders/{inbox|sentitems}/messages/delta``
with ``$select`` of what threading needs (internetMessageId, conversationId, from,
sender, toRecipients, ccRecipients, subject, sentDateTime, receivedDateTime, isDraft,
body) and ``Prefer: odata.maxpagesize, outlook.body-content-type="text"``; every
``@odata.nextLink`` is followed and the final ``@odata.deltaLink`` is that folder's
token. Nothing changed: one request per folder.

Text: the delta carries each message's ``body`` (the whole body, quoted part included:
``uniqueBody`` would leave out what a reply quotes), asked for as text. Graph documents
that preference for reading messages, not for delta, so a body that still comes as HTML
is turned into text here (``connectors.archive.text.html_to_text``, which leaves out
``blockquote`` parts). At most ``MAX_TEXT_CHARS`` (100,000) characters of text are used
(``connectors.mail_text_graph_ews``), and of them only the digests of
``assistant.domain.latency.quotes.text_keys`` are kept in ``MessageData.extra``
(``body_key``, ``text_key``, ``quote_keys``): copies of one message filed with other
recipients and no shared Message-ID count once, and a reply's ``quote_keys`` say which
message's text it quotes (the threading joins a reply to the message it quotes only when
neither has a provider thread id; here both have their ``conversationId``). The body
costs no request of its own; Graph sends it whole, so a page holds up to ``page_size``
whole bodies in memory.

The change token is JSON with both folders' delta links (version 2: the links of
version 1 do not ask for the body, so such a token is read again from the start; the
messages stored before keep no keys). A folder whose link Graph no longer knows (410
``syncStateNotFound``, also in the middle of paging) is read again from the start and
the delta is ``full``; a token that is not ours raises TokenExpired.
``@removed`` entries are ignored: a deleted message does not un-answer a thread. A
message that changed (read, flagged, categorised) comes again, with the same
``message_id``; the store keeps it once, as it does a message filed in both folders.

Headers: Graph leaves ``internetMessageHeaders`` out of delta. They are read, one
``GET /users/{id}/messages/{id}?$select=internetMessageHeaders`` each, only for Inbox
messages from ``header_senders`` (the assistant's addresses: their mail opens the
threads whose latency is measured) that the subject does not already mark as automatic.
They tell auto-replies (Auto-Submitted, X-Auto-Response-Suppress, Precedence) and carry
In-Reply-To and References; without them threading rests on ``conversationId``
(``MessageData.thread_id``) and auto-replies on the subject.

Errors: 401 renews the access token once and repeats the request; 429 and 503 with
Retry-After: RateLimited; other 5xx and transport errors are retried ``retries`` times
with exponential backoff, then Transient; timeouts: Transient at once.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC
from typing import Any, Unpack
from urllib.parse import quote

import httpx

from assistant.domain.model import MessageData
from connectors.archive.mailbox import is_auto_reply, message_ids
from connectors.base import (
    ConnectorError,
    InvalidData,
    MailDelta,
    TokenExpired,
)
from connectors.graph.client import (
    GraphConnection,
    GraphOptions,
    fail,
    graph_send,
    parse_time,
    read_delta,
)
from connectors.mail_text_graph_ews import body_keys

FOLDERS = {"inbox": "Inbox", "sentitems": "Sent Items"}  # well-known name → our folder name
SELECT = (
    "internetMessageId,conversationId,from,sender,toRecipients,ccRecipients,subject,"
    "sentDateTime,receivedDateTime,isDraft,body"
)
# The body as text (Graph converts HTML); a body that comes as HTML all the same is
# converted here (``body_keys``).
PREFER_TEXT = 'outlook.body-content-type="text"'
_TOKEN_VERSION = 2  # 1: delta links without the body
_STATE_KIND = "graph-mail"


class GraphMailbox(GraphConnection):
    """The Inbox and Sent Items of ``user`` (an id or user principal name) in Microsoft 365.

    Access and options as for every Graph connection (``GraphConnection``: application
    permission Mail.Read, or a delegated refresh token). ``header_senders`` are the
    addresses whose Inbox messages get their headers read (see the module's docstring).
    """

    def __init__(
        self,
        user: str,
        *,
        folders: Sequence[str] = tuple(FOLDERS),
        header_senders: Collection[str] = (),
        page_size: int = 100,
        **connection: Unpack[GraphOptions],
    ) -> None:
        unknown = [f for f in folders if f not in FOLDERS]
        if unknown or not folders:
            raise ConnectorError(f"Graph mail: unknown folders {unknown} (inbox, sentitems)")
        super().__init__(user, **connection)
        self.folders = tuple(dict.fromkeys(folders))
        self.header_senders = frozenset(a.strip().lower() for a in header_senders)
        self.page_size = page_size

    def __enter__(self) -> GraphMailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def refresh_token(self) -> str:
        return self._tokens.refresh_token

    # ---------------------------------------------------------------- MailSource

    def changes(self, token: str | None) -> MailDelta:
        """Messages new (or changed) since ``token`` (None: every message) per folder."""
        links = self._load(token) if token is not None else {}
        full = token is None
        messages: list[MessageData] = []
        skipped: list[str] = []
        next_links: dict[str, str] = {}
        for name in self.folders:
            link = links.get(name)
            try:
                items, next_links[name] = self._delta(name, link)
            except TokenExpired:
                if link is None:
                    raise
                link = None
                items, next_links[name] = self._delta(name, None)
            full = full or link is None
            for item in items:
                try:
                    message = self._message(item, name)
                except InvalidData as exc:
                    skipped.append(f"{name}/{item.get('id')}: {exc}")
                    continue
                if message is not None:
                    messages.append(message)
        next_token = json.dumps(
            {"v": _TOKEN_VERSION, "kind": _STATE_KIND, "user": self.user.lower(),
             "graph": self.graph_url, "folders": next_links},
            sort_keys=True,
        )  # fmt: skip
        return MailDelta(
            full=full, messages=tuple(messages), token=next_token, skipped=tuple(skipped)
        )

    # ---------------------------------------------------------------------- delta

    def _delta_url(self, name: str) -> str:
        return f"{self._user_url}/mailFolders/{name}/messages/delta"

    def _delta(self, name: str, link: str | None) -> tuple[list[dict[str, Any]], str]:
        """Every page of one folder's delta: (messages, not removed; the next delta link)."""
        url = link or self._delta_url(name)
        params: dict[str, str] | None = None if link else {"$select": SELECT}

        def page(url: str, params: dict[str, str] | None) -> dict[str, Any]:
            reply = self._send("GET", url, params=params)
            if not reply.is_success:
                fail(reply, f"messages delta ({name})", delta=True)
            return _json(reply, "messages delta")

        items, delta_link = read_delta(page, url, params, "messages delta")
        # a deleted message does not un-answer a thread: only what is there is read
        return [item for item in items.values() if item is not None], delta_link

    def _message(self, item: Mapping[str, Any], name: str) -> MessageData | None:
        if item.get("isDraft"):
            return None
        try:
            message = message_from_graph(item, FOLDERS[name], f"{name}/{item['id']}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidData(f"bad Graph message ({type(exc).__name__}: {exc})") from None
        if name == "inbox" and not message.auto_reply and message.from_addr in self.header_senders:
            message = self._with_headers(message, str(item["id"]))
        return message

    def _with_headers(self, message: MessageData, graph_id: str) -> MessageData:
        url = f"{self._user_url}/messages/{quote(graph_id, safe='')}"
        reply = self._send("GET", url, params={"$select": "internetMessageHeaders"})
        if reply.status_code == 404:
            return message  # deleted since the delta listed it: keep what we know
        if not reply.is_success:
            fail(reply, "read message headers")
        headers: dict[str, list[str]] = {}
        for header in _json(reply, "message headers").get("internetMessageHeaders") or []:
            if isinstance(header, dict) and header.get("name"):
                name = str(header["name"]).strip().lower()
                headers.setdefault(name, []).append(str(header.get("value") or ""))
        in_reply_to = message.in_reply_to or next(
            iter(message_ids(headers.get("in-reply-to", [""])[0])), ""
        )
        references = message.references or message_ids(" ".join(headers.get("references", [])))
        return MessageData(
            message_id=message.message_id,
            sent_at=message.sent_at,
            from_addr=message.from_addr,
            to=message.to,
            cc=message.cc,
            subject=message.subject,
            in_reply_to=in_reply_to,
            references=references,
            thread_id=message.thread_id,
            folder=message.folder,
            auto_reply=is_auto_reply(headers, message.subject),
            source_id=message.source_id,
            extra={**message.extra, "headers": "read"},
        )

    # ----------------------------------------------------------------------- HTTP

    def _send(
        self, method: str, url: str, *, params: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """One idempotent request: a refused token is renewed once; 5xx retried."""
        prefer = f"odata.maxpagesize={self.page_size}, {PREFER_TEXT}"
        return graph_send(self, method, url, prefer=prefer, params=params)

    # ---------------------------------------------------------------------- token

    def _load(self, token: str) -> dict[str, str]:
        try:
            data = json.loads(token)
        except ValueError:
            raise TokenExpired("unreadable change token") from None
        if not isinstance(data, dict) or data.get("kind") != _STATE_KIND:
            raise TokenExpired("change token of another kind")
        if data.get("v") != _TOKEN_VERSION:
            raise TokenExpired("change token of another version (its links may lack the body)")
        if data.get("user") != self.user.lower() or data.get("graph") != self.graph_url:
            raise TokenExpired("change token of another mailbox")
        folders = data.get("folders")
        if not isinstance(folders, dict):
            raise TokenExpired("change token without folders")
        links: dict[str, str] = {}
        for name, link in folders.items():
            if isinstance(link, str) and link.startswith(self._delta_url(str(name)) + "?"):
                links[str(name)] = link
        return links


# ------------------------------------------------------------------------ mapping


def message_from_graph(item: Mapping[str, Any], folder: str, source_id: str) -> MessageData:
    """One Graph message (as messages delta selects it) as MessageData."""
    extra: dict[str, str] = {"graph_id": str(item.get("id") or "")}
    message_id = next(iter(message_ids(str(item.get("internetMessageId") or ""))), "")
    if not message_id:
        message_id = f"{item['id']}@graph.synthesized"
        extra["message_id_source"] = "item-id"
    stamp = item.get("sentDateTime") or item.get("receivedDateTime")
    if not stamp:
        raise ValueError("a message without sentDateTime or receivedDateTime")
    if not item.get("sentDateTime"):
        extra["date_source"] = "received"
    body = item.get("body")
    if isinstance(body, dict):
        extra.update(body_keys(body.get("content"), body.get("contentType")))
    sent_at = parse_time(str(stamp))
    if sent_at.tzinfo is None:
        sent_at = sent_at.replace(tzinfo=UTC)
    subject = str(item.get("subject") or "")
    return MessageData(
        message_id=message_id,
        sent_at=sent_at.astimezone(UTC),
        from_addr=_address(item.get("from")) or _address(item.get("sender")),
        to=_addresses(item.get("toRecipients")),
        cc=_addresses(item.get("ccRecipients")),
        subject=subject,
        thread_id=str(item.get("conversationId") or ""),
        folder=folder,
        auto_reply=is_auto_reply({}, subject),
        source_id=source_id,
        extra=extra,
    )


def _address(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    raw = str((value.get("emailAddress") or {}).get("address") or "").strip().lower()
    return raw if "@" in raw and " " not in raw else ""


def _addresses(values: Any) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for value in values or ():
        addr = _address(value)
        if addr:
            found.setdefault(addr)
    return tuple(found)


def _json(reply: httpx.Response, what: str) -> dict[str, Any]:
    try:
        data = reply.json()
    except ValueError:
        raise InvalidData(f"Graph {what}: the reply is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidData(f"Graph {what}: the reply is not a JSON object")
    return data
