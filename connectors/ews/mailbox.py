"""The manager's Inbox and Sent Items on Exchange on-premises, through EWS (exchangelib).

Signing in, the fail-fast retry policy and the error mapping are the calendar
connector's (``connectors.ews.calendar``): the same settings open either.

Requests, per sync:

* per folder, one ``SyncFolderItems`` (ids only; more pages when more than
  ``sync_page`` items changed) from that folder's sync state;
* one ``GetItem`` per 100 messages created in either folder since then, for the
  properties threading needs: InternetMessageId, InReplyTo, References, ConversationId,
  From (or Sender), To, Cc, Subject, DateTimeSent, ItemClass, InternetMessageHeaders,
  and the body as text: TextBody (Exchange 2013 and later: Exchange converts an HTML
  body), or on older servers Body as the server has it (HTML is turned into text here
  by ``connectors.archive.text.html_to_text``, which leaves out ``blockquote`` parts).

Text: the whole body (quoted part included) is read in the same GetItem; at most
``MAX_TEXT_CHARS`` (100,000) characters of its text are used
(``connectors.mail_text_graph_ews``), and of them only the digests of
``assistant.domain.latency.quotes.text_keys`` are kept in ``MessageData.extra``
(``body_key``, ``text_key``, ``quote_keys``): copies of one message filed with other
recipients and no shared Message-ID count once, and a reply's ``quote_keys`` say which
message's text it quotes, even when the reply lost its subject and reply headers and so
its ConversationId. Exchange sends the body whole (exchangelib does not ask for
MaximumBodySize): where a GetItem reply for a batch would go beyond the size a reply may
have (``network.max_response_bytes``, 50 MB by default), that batch is read again without
the text and ``MailDelta.skipped`` says so; the sync goes on.

Nothing changed: one request per folder. Updates (flags, categories), read-flag changes
and deletions are not read: a message's threading properties never change, and a deleted
message does not un-answer a thread. The same message filed in both folders comes once
per folder with the same ``message_id``; the store counts it once.

The change token is JSON: the sync state of each folder, and a hash of the endpoint and
mailbox. A folder whose state the server no longer knows (ErrorInvalidSyncStateData) is
read again from the start and the delta is ``full``; a token that is not ours raises
``TokenExpired``.

``MessageData.thread_id`` is the ConversationId; ``auto_reply`` is set for out-of-office
and rule-generated replies (ItemClass ``IPM.Note.Rules.OofTemplate.Microsoft`` and
``IPM.Note.Rules.ReplyTemplate.Microsoft``), reports (``REPORT.*``: delivery and read
receipts), and messages whose headers (Auto-Submitted, X-Auto-Response-Suppress,
Precedence) or subject say so. Exchange leaves InternetMessageHeaders out of
Sent Items; there ItemClass and subject decide.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exchangelib import Message
from exchangelib import errors as ews_errors

from assistant.domain.model import MessageData
from connectors.archive.mailbox import is_auto_reply, message_ids
from connectors.base import ConnectorError, InvalidData, MailDelta, TokenExpired
from connectors.ews.account import EwsSettings, ews_settings, open_account, translated
from connectors.ews.settings import EwsMailSettings
from connectors.mail_text_graph_ews import body_keys
from connectors.netguard import NetPolicy, TooLarge
from connectors.settings import Resolver

SYNC_PAGE = 512  # the most SyncFolderItems returns at once
FETCH_CHUNK = 100
FOLDERS = {"inbox": "Inbox", "sentitems": "Sent Items"}  # distinguished id → our folder name
_STATE_KIND = "ews-mail"
_MESSAGE_FIELDS = (
    "message_id", "in_reply_to", "references", "conversation_id", "author", "sender",
    "to_recipients", "cc_recipients", "subject", "datetime_sent", "datetime_received",
    "item_class", "headers",
)  # fmt: skip
_AUTO_CLASSES = ("ipm.note.rules.ooftemplate.", "ipm.note.rules.replytemplate.", "report.")
_TRANSIENT = (
    ews_errors.ErrorServerBusy, ews_errors.ErrorTimeoutExpired,
    ews_errors.ErrorInternalServerTransientError, ews_errors.ErrorMailboxStoreUnavailable,
    ews_errors.ErrorTooManyObjectsOpened, ews_errors.ErrorExceededConnectionCount,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _New:
    """A message SyncFolderItems reported as created."""

    item_id: str
    changekey: str
    folder: str  # distinguished id: inbox, sentitems


class EwsMailbox:
    """The Inbox and Sent Items of ``settings.mailbox`` (the manager's) over EWS.

    ``folders`` are distinguished folder ids (default both); ``sync_page`` is the most
    changes one SyncFolderItems returns.
    """

    def __init__(
        self,
        settings: EwsSettings,
        *,
        timeout: float = 30,
        sync_page: int = SYNC_PAGE,
        folders: Sequence[str] = tuple(FOLDERS),
    ) -> None:
        unknown = [f for f in folders if f not in FOLDERS]
        if unknown or not folders:
            raise ConnectorError(f"EWS mail: unknown folders {unknown} (inbox, sentitems)")
        self.settings = settings
        self.timeout = timeout
        self.sync_page = sync_page
        self.folders = tuple(dict.fromkeys(folders))
        self._account: Any = None
        self._folders: dict[str, Any] = {}

    # ---------------------------------------------------------------- MailSource

    def changes(self, token: str | None) -> MailDelta:
        """Messages created since ``token`` (None: every message) in each folder."""
        states = self._load(token) if token is not None else {}
        full = token is None
        created: list[_New] = []
        next_states: dict[str, str] = {}
        for name in self.folders:
            with self._errors(f"SyncFolderItems ({name})"):
                found, state, reread = self._sync(name, states.get(name))
            full = full or reread
            created.extend(found)
            next_states[name] = state
        with self._errors("GetItem"):
            messages, skipped = self._read(created)
        next_token = json.dumps(
            {"v": 1, "kind": _STATE_KIND, "account": self._account_hash(), "folders": next_states},
            sort_keys=True,
        )
        return MailDelta(
            full=full, messages=tuple(messages), token=next_token, skipped=tuple(skipped)
        )

    # ----------------------------------------------------------------------- sync

    def _sync(self, name: str, state: str | None) -> tuple[list[_New], str, bool]:
        """(created messages, the folder's next state, whether it was read from the start)."""
        if state is None:
            return *self._sync_from(name, None), True
        try:
            return *self._sync_from(name, state), False
        except ews_errors.ErrorInvalidSyncStateData:
            return *self._sync_from(name, None), True

    def _sync_from(self, name: str, state: str | None) -> tuple[list[_New], str]:
        folder = self._folder(name)
        folder.item_sync_state = state  # exchangelib would otherwise reuse its own
        found: dict[str, _New] = {}
        for kind, item in folder.sync_items(
            sync_state=state, only_fields=[], max_changes_returned=self.sync_page
        ):
            if kind == "create":
                found[str(item.id)] = _New(str(item.id), str(item.changekey or ""), name)
            elif kind == "delete":
                found.pop(str(item.id), None)  # created and deleted between two syncs
        new_state = folder.item_sync_state
        if not new_state:
            raise InvalidData(f"EWS SyncFolderItems ({name}): the server sent no sync state")
        return list(found.values()), str(new_state)

    def _read(self, created: list[_New]) -> tuple[list[MessageData], list[str]]:
        """The new messages with their text; where the bodies of one batch make a reply
        larger than ``network.max_response_bytes``, all of them without it (said in
        ``skipped``: their copies and quoted replies are then found by headers only)."""
        if not created:
            return [], []
        try:
            return self._fetch(created, with_text=True)
        except TooLarge:
            messages, skipped = self._fetch(created, with_text=False)
            skipped.append(
                f"{len(messages)} message(s) read without their text: their bodies made a "
                "reply larger than network.max_response_bytes"
            )
            return messages, skipped

    def _fetch(
        self, created: list[_New], *, with_text: bool
    ) -> tuple[list[MessageData], list[str]]:
        fields = [*_MESSAGE_FIELDS, self._body_field()] if with_text else list(_MESSAGE_FIELDS)
        fetched: Iterator[Any] = self._mailbox().fetch(
            ids=[(n.item_id, n.changekey) for n in created],
            folder=self._folder(created[0].folder),
            only_fields=fields,
            chunk_size=FETCH_CHUNK,
        )
        messages: list[MessageData] = []
        skipped: list[str] = []
        for new, item in zip(created, fetched, strict=False):
            source_id = f"{new.folder}/{new.item_id}"
            if isinstance(item, ews_errors.ErrorItemNotFound):
                continue  # deleted since SyncFolderItems listed it
            if isinstance(item, _TRANSIENT):
                raise item  # the whole sync is tried again later
            if isinstance(item, Exception):
                skipped.append(f"{source_id}: {type(item).__name__}")
                continue
            try:
                messages.append(message_from_item(item, FOLDERS[new.folder], source_id))
            except (ValueError, TypeError, AttributeError) as exc:
                skipped.append(f"{source_id}: {exc}")
        return messages, skipped

    def _body_field(self) -> str:
        """TextBody where the server has it (Exchange 2013 and later), else Body."""
        text_body = Message.get_field_by_fieldname("text_body")
        return "text_body" if text_body.supports_version(self._mailbox().version) else "body"

    # ---------------------------------------------------------------- the account

    def _mailbox(self) -> Any:
        if self._account is None:
            self._account = open_account(self.settings)
        account = self._account
        account.protocol.TIMEOUT = self.timeout  # cached protocols are shared: set per call
        return account

    def _folder(self, name: str) -> Any:
        if name not in self._folders:
            account = self._mailbox()
            self._folders[name] = account.inbox if name == "inbox" else account.sent
        else:
            self._mailbox()
        return self._folders[name]

    def _errors(self, what: str) -> translated:
        """Translate exchangelib and transport errors into our error tree."""
        return translated(f"EWS {what}")

    # ---------------------------------------------------------------------- token

    def _account_hash(self) -> str:
        s = self.settings
        who = f"{s.service_endpoint.lower()}\n{s.mailbox.lower()}"
        return hashlib.sha256(who.encode()).hexdigest()[:16]

    def _load(self, token: str) -> dict[str, str]:
        try:
            data = json.loads(token)
        except ValueError:
            raise TokenExpired("unreadable change token") from None
        if not isinstance(data, dict) or data.get("v") != 1 or data.get("kind") != _STATE_KIND:
            raise TokenExpired("change token of another kind or version")
        if data.get("account") != self._account_hash():
            raise TokenExpired("change token of another mailbox")
        folders = data.get("folders")
        if not isinstance(folders, dict):
            raise TokenExpired("change token without folders")
        return {str(k): str(v) for k, v in folders.items() if isinstance(v, str) and v}


# ------------------------------------------------------------------------ mapping


def message_from_item(item: Any, folder: str, source_id: str) -> MessageData:
    """One exchangelib Message (or meeting message) as MessageData."""
    extra: dict[str, str] = {"ews_item_id": str(item.id or "")}
    message_id = next(iter(_ids(item.message_id)), "")
    if not message_id:
        digest = hashlib.sha256(str(item.id or source_id).encode()).hexdigest()[:32]
        message_id = f"{digest}@ews.synthesized"
        extra["message_id_source"] = "item-id"
    sent = item.datetime_sent or item.datetime_received
    if sent is None:
        raise ValueError("a message without DateTimeSent or DateTimeReceived")
    if item.datetime_sent is None:
        extra["date_source"] = "received"
    item_class = str(item.item_class or "")
    if item_class:
        extra["item_class"] = item_class
    headers = _headers(getattr(item, "headers", None))
    subject = str(item.subject or "")
    author = _address(getattr(item, "author", None)) or _address(getattr(item, "sender", None))
    conversation = getattr(item, "conversation_id", None)
    in_reply_to = next(iter(_ids(getattr(item, "in_reply_to", None))), "")
    references = _ids(getattr(item, "references", None))
    if not in_reply_to and "in-reply-to" in headers:
        in_reply_to = next(iter(_ids(headers["in-reply-to"][0])), "")
    if not references and "references" in headers:
        references = _ids(headers["references"][0])
    text_body = getattr(item, "text_body", None)
    if text_body is not None:
        extra.update(body_keys(str(text_body), "text"))
    else:  # Body: HTMLBody or Body (text), as the server has it
        body = getattr(item, "body", None)
        if body is not None:
            extra.update(body_keys(str(body), getattr(body, "body_type", "Text")))
    return MessageData(
        message_id=message_id,
        sent_at=datetime.fromtimestamp(sent.timestamp(), tz=UTC),
        from_addr=author,
        to=_addresses(getattr(item, "to_recipients", None)),
        cc=_addresses(getattr(item, "cc_recipients", None)),
        subject=subject,
        in_reply_to=in_reply_to,
        references=references,
        thread_id=str(getattr(conversation, "id", None) or ""),
        folder=folder,
        auto_reply=item_class.lower().startswith(_AUTO_CLASSES) or is_auto_reply(headers, subject),
        source_id=source_id,
        extra=extra,
    )


def _ids(value: Any) -> tuple[str, ...]:
    """Message ids from an EWS property; recorded replies escape the brackets twice."""
    if not value:
        return ()
    return message_ids(html.unescape(str(value)))


def _headers(values: Any) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for header in values or ():
        name = str(getattr(header, "name", "") or "").strip().lower()
        if name:
            found.setdefault(name, []).append(str(getattr(header, "value", "") or ""))
    return found


def _address(mailbox: Any) -> str:
    """The SMTP address of an EWS Mailbox ("" for an Exchange-internal X.500 address)."""
    raw = str(getattr(mailbox, "email_address", None) or "").strip().lower()
    if raw.startswith("smtp:"):
        raw = raw[5:]
    return raw if "@" in raw and " " not in raw and not raw.startswith("/o=") else ""


def _addresses(mailboxes: Any) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for mailbox in mailboxes or ():
        addr = _address(mailbox)
        if addr:
            found.setdefault(addr)
    return tuple(found)


def open_ews_mailbox(
    settings: EwsMailSettings, secret: Resolver, timeout: float = 30,
    policy: NetPolicy | None = None,
) -> EwsMailbox:  # fmt: skip
    """An EwsMailbox from an account's settings; ``secret`` resolves secret references."""
    return EwsMailbox(
        ews_settings(settings, secret, policy, "ews-mail"),
        timeout=timeout,
        folders=tuple(settings.folders if settings.folders is not None else FOLDERS),
    )
