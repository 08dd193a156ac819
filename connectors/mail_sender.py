"""Sending one mail through a connected account: Exchange (EWS), Microsoft 365 (Graph), Gmail.

The account is one the pair already connected for reading (the same settings and
credentials); the mail leaves through the organisation's own mail system. Every sender
offers two calls:

``find_sent(message_id)``
    Whether the mailbox already holds a sent mail with this Message-ID (angle brackets
    included). A retry after a crash between the provider's acceptance and our record
    of it asks this first, so the mail is not sent twice.
``send(mail)``
    Send, keeping a copy in Sent Items (that copy is what ``find_sent`` finds).

Per provider:

* **EWS**: ``CreateItem`` of a Message with ``MessageDisposition=SendAndSaveCopy`` into
  Sent Items, ``InternetMessageId`` set to ours (Exchange 2013 and later accept it on
  create; a server that refuses it with ErrorInvalidPropertySet gets the mail without
  it, and then duplicates cannot be recognised), ``InReplyTo``/``References`` for
  threading. ``find_sent``: ``FindItem`` in Sent Items restricted on InternetMessageId.
* **Graph**: ``POST /users/{id}/sendMail`` with ``saveToSentItems``; the message carries
  ``internetMessageId`` (writable while a message is a draft, which a sendMail message is)
  and ``internetMessageHeaders`` with ``X-Exec-Assistant-Key`` (Graph accepts only
  ``X-`` headers there: no In-Reply-To, so no threading). ``sendMail`` answers 202 and
  files the Sent Items copy asynchronously: ``find_sent``
  (``GET .../mailFolders/sentitems/messages?$filter=internetMessageId eq '...'``) can
  miss a copy only seconds old.
* **Gmail**: ``users.messages.send`` of the raw RFC 822 message (Message-ID,
  In-Reply-To, References, Auto-Submitted); ``find_sent``: ``users.messages.list`` with
  ``q=rfc822msgid:...`` (needs a read scope besides ``gmail.send``).

Errors are those of ``connectors.base`` plus ``InvalidRecipient`` (the provider refused
the address: sending again will not help).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any, Protocol, Unpack

import httpx

from assistant.domain.text import one_line, shown
from connectors.base import ConnectorError, Transient
from connectors.ews.settings import EwsAccountSettings
from connectors.google.settings import GmailSettings
from connectors.graph.client import (
    GraphConnection,
    GraphOptions,
    fail,
    graph_send,
    odata_literal,
    open_graph,
)
from connectors.graph.settings import GraphSettings

if TYPE_CHECKING:
    from connectors.ews.account import translated

SENDING_PROVIDERS = ("ews-mail", "ews", "graph-mail", "graph", "gmail")
KEY_HEADER = "X-Exec-Assistant-Key"
SEND_SCOPE = "https://www.googleapis.com/auth/gmail.send"
READ_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"


class InvalidRecipient(ConnectorError):
    """The provider refused a recipient address."""


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """One mail to send. ``message_id`` and ``in_reply_to`` carry their angle brackets;
    ``key`` is a short, header-safe token naming the notification."""

    to: str
    subject: str
    text: str
    message_id: str
    key: str
    html: str = ""
    in_reply_to: str = ""


class MailSender(Protocol):
    def find_sent(self, message_id: str) -> bool: ...

    def send(self, mail: OutgoingMail) -> None: ...

    def close(self) -> None: ...


def open_mail_sender(
    provider: str,
    settings: Mapping[str, Any],
    secret: Callable[[Any], str],
    timeout: float = 30,
    *,
    keep_token: Callable[[str], None] | None = None,
) -> MailSender:
    """A sender for an account row's provider and settings (``secret`` resolves references;
    ``keep_token`` stores a refresh token Microsoft rotated)."""
    from connectors.registry import read_settings

    if provider not in SENDING_PROVIDERS:
        raise ConnectorError(
            f"provider {provider!r} cannot send mail ({', '.join(SENDING_PROVIDERS)})"
        )
    conf = read_settings(provider, settings)
    if isinstance(conf, EwsAccountSettings):
        from connectors.ews.account import ews_settings

        return EwsMailSender(ews_settings(conf, secret), timeout=timeout)
    if isinstance(conf, GraphSettings):
        return open_graph(GraphMailSender, conf, secret, timeout=timeout, keep_token=keep_token)
    if isinstance(conf, GmailSettings):
        from connectors.google.mailbox import GmailMailbox

        scopes = conf.send_scopes or [READ_SCOPE, SEND_SCOPE]
        mailbox = GmailMailbox.from_settings(
            conf.model_copy(update={"scopes": list(scopes)}), secret, timeout=timeout
        )
        return GmailMailSender(mailbox)
    raise ConnectorError(f"provider {provider!r} cannot send mail ({', '.join(SENDING_PROVIDERS)})")


def mime_message(mail: OutgoingMail, sender: str = "", now: datetime | None = None) -> bytes:
    """The RFC 822 bytes of ``mail`` (multipart/alternative when there is HTML)."""
    msg = EmailMessage()
    if sender:
        msg["From"] = one_line(sender)
    msg["To"] = one_line(mail.to)
    msg["Subject"] = one_line(mail.subject)  # a title never makes a header of its own
    msg["Date"] = format_datetime((now or datetime.now(UTC)).astimezone(UTC))
    msg["Message-ID"] = mail.message_id
    if mail.in_reply_to:
        msg["In-Reply-To"] = mail.in_reply_to
        msg["References"] = mail.in_reply_to
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    msg[KEY_HEADER] = mail.key
    msg.set_content(shown(mail.text or ""))
    if mail.html:
        msg.add_alternative(shown(mail.html), subtype="html")
    return bytes(msg)


# ------------------------------------------------------------------------------- EWS


class EwsMailSender:
    """Sends from ``settings.mailbox`` over EWS (delegate or impersonation access)."""

    def __init__(self, settings: Any, *, timeout: float = 30) -> None:
        self.settings = settings
        self.timeout = timeout
        self.message_id_settable = True
        self._account: Any = None

    def close(self) -> None:
        self._account = None

    def find_sent(self, message_id: str) -> bool:
        if not self.message_id_settable:
            return False
        with self._errors("FindItem (Sent Items)"):
            return bool(self._mailbox().sent.filter(message_id=message_id).exists())

    def send(self, mail: OutgoingMail) -> None:
        from exchangelib import Body, HTMLBody, Message
        from exchangelib import errors as ews_errors
        from exchangelib.properties import Mailbox

        account = self._mailbox()
        fields: dict[str, Any] = {
            "subject": mail.subject,
            "body": HTMLBody(mail.html) if mail.html else Body(mail.text),
            "to_recipients": [Mailbox(email_address=mail.to)],
        }
        if mail.in_reply_to:
            fields.update(in_reply_to=mail.in_reply_to, references=mail.in_reply_to)
        with self._errors("CreateItem (SendAndSaveCopy)"):
            try:
                message = Message(
                    account=account, folder=account.sent,
                    message_id=mail.message_id if self.message_id_settable else None, **fields,
                )  # fmt: skip
                message.send_and_save()
            except ews_errors.ErrorInvalidPropertySet:
                if not self.message_id_settable:
                    raise
                self.message_id_settable = False  # an older Exchange: send without it
                Message(account=account, folder=account.sent, **fields).send_and_save()
            except ews_errors.ErrorInvalidRecipients:
                raise InvalidRecipient(f"EWS: recipient {mail.to!r} refused") from None

    def _mailbox(self) -> Any:
        from connectors.ews.account import open_account

        if self._account is None:
            with self._errors("sign-in"):
                self._account = open_account(self.settings)
        self._account.protocol.TIMEOUT = self.timeout
        return self._account

    def _errors(self, what: str) -> translated:
        from connectors.ews.account import translated

        return translated(f"EWS {what}")


# ----------------------------------------------------------------------------- Graph


class GraphMailSender(GraphConnection):
    """Sends from ``user`` (an id or user principal name) through Microsoft Graph.

    Needs Mail.Send (and Mail.ReadBasic or Mail.Read for ``find_sent``). A refused token
    is renewed once; a failed GET is retried (twice unless ``retries`` says otherwise), a
    failed sendMail is not (it is not idempotent: the outbox retries after asking
    ``find_sent``).
    """

    def __init__(self, user: str, **connection: Unpack[GraphOptions]) -> None:
        connection.setdefault("retries", 2)
        super().__init__(user, **connection)

    def find_sent(self, message_id: str) -> bool:
        params = {
            "$filter": f"internetMessageId eq {odata_literal(message_id)}",
            "$select": "id,internetMessageId",
            "$top": "1",
        }
        reply = self._request("GET", f"{self._user_url}/mailFolders/sentitems/messages", params)
        if not reply.is_success:
            fail(reply, "find sent mail")
        try:
            found = reply.json().get("value") or []
        except (ValueError, AttributeError):
            raise Transient("Graph find sent mail: the reply is not JSON") from None
        return bool(found)

    def send(self, mail: OutgoingMail) -> None:
        html = bool(mail.html)
        body = {
            "message": {
                "subject": mail.subject,
                "body": {
                    "contentType": "HTML" if html else "Text",
                    "content": mail.html if html else mail.text,
                },
                "toRecipients": [{"emailAddress": {"address": mail.to}}],
                "internetMessageId": mail.message_id,
                "internetMessageHeaders": [
                    {"name": KEY_HEADER, "value": mail.key},
                    {"name": "X-Auto-Response-Suppress", "value": "All"},
                ],
            },
            "saveToSentItems": True,
        }
        reply = self._request("POST", f"{self._user_url}/sendMail", json_body=body)
        if reply.is_success:
            return
        code = ""
        with suppress(ValueError, AttributeError):
            code = str((reply.json().get("error") or {}).get("code") or "")
        if reply.status_code == 400 and "recipient" in code.lower():
            raise InvalidRecipient(f"Graph sendMail: recipient {mail.to!r} refused ({code})")
        fail(reply, "sendMail")

    def _request(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """Through ``graph_send``: sendMail (a POST) is never repeated after a 5xx."""
        return graph_send(self, method, url, prefer='outlook.timezone="UTC"', params=params,
                          json_body=json_body, idempotent=method == "GET")  # fmt: skip


# ----------------------------------------------------------------------------- Gmail


class GmailMailSender:
    """Sends as the Gmail user of ``mailbox`` (a GmailMailbox: its credentials and client)."""

    def __init__(self, mailbox: Any) -> None:
        self._mailbox = mailbox

    def close(self) -> None:
        self._mailbox.close()

    def find_sent(self, message_id: str) -> bool:
        m = self._mailbox
        request = m._users.messages().list(
            userId=m.user_id, q=f"rfc822msgid:{message_id.strip('<>')}",
            includeSpamTrash=True, maxResults=1,
        )  # fmt: skip
        reply = m._execute(request, "messages.list (sent copy)")
        return bool((reply or {}).get("messages"))

    def send(self, mail: OutgoingMail) -> None:
        m = self._mailbox
        raw = base64.urlsafe_b64encode(mime_message(mail)).decode("ascii")
        request = m._users.messages().send(userId=m.user_id, body={"raw": raw})
        try:
            m._execute(request, "messages.send")
        except ConnectorError as exc:
            if type(exc) is ConnectorError and "invalidArgument" in str(exc):
                raise InvalidRecipient(str(exc)) from None
            raise
