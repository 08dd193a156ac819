"""Notifications as email through one of the pair's connected accounts.

The mail leaves through the organisation's own mail system (Exchange, Microsoft 365,
Gmail) instead of a separate SMTP relay. A pair chooses it in ``Pair.notify_channels``:

``"account"``
    the pair's sending-capable account: one whose settings say ``send_mail = true``,
    else the first of EWS, Graph, Gmail (mail or calendar accounts: the same settings
    and credentials serve to send);
``"account:<id>"``
    that account (it must belong to the pair);
``"ews-mail"``, ``"graph-mail"``, ``"gmail"``
    the pair's account of that provider family (``ews-mail`` also takes an ``ews``
    calendar account, ``graph-mail`` a ``graph`` one).

Every name is served by the one ``AccountMailChannel``; the outbox finds it under
``account`` for ``account:<id>`` (the part before the colon).

The Message-ID is the SMTP channel's (``assistant.domain.message_ids``), so replies thread back
and a resend is the same message. Before sending, the sender looks for that Message-ID
in the account's Sent Items: an entry retried after a crash between the provider's
acceptance and the outbox's record finds its sent copy and is not sent again (EWS and
Gmail: at once; Graph: once its asynchronous Sent Items copy is filed, seconds later).

Errors: a refused recipient (and any other refusal) is permanent; throttling is retried
after the provider's Retry-After; 5xx, time-outs and network errors are retried with the
outbox's back-off; refused credentials are retried only after ``auth_retry_seconds``
(default an hour) with the error "reconnect the account".
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from assistant.domain.message_ids import message_id_for
from assistant.domain.text import one_line
from assistant.services.accounts import keeper
from assistant.services.outbox import DeliveryError, OutboxMessage
from assistant.store.db import UnitOfWork
from assistant.store.tables import Account
from config.sealed import installed
from connectors.base import AuthExpired, ConnectorError, NotFound, RateLimited, Transient
from connectors.mail_sender import (
    SENDING_PROVIDERS,
    InvalidRecipient,
    MailSender,
    OutgoingMail,
    open_mail_sender,
)
from connectors.settings import secret

CHANNEL_NAMES = ("account", "ews-mail", "graph-mail", "gmail")
FAMILIES = {"ews-mail": ("ews-mail", "ews"), "graph-mail": ("graph-mail", "graph"),
            "gmail": ("gmail",)}  # fmt: skip
DEFAULT_AUTH_RETRY_SECONDS = 3600.0

# (provider, settings, timeout, keep_token): keep_token stores a rotated refresh token
OpenSender = Callable[[str, Mapping[str, Any], float, Callable[[str], None]], MailSender]


def _open(
    provider: str, settings: Mapping[str, Any], timeout: float, keep_token: Callable[[str], None]
) -> MailSender:
    return open_mail_sender(provider, settings, secret, timeout=timeout, keep_token=keep_token)


def mail_key(key: str) -> str:
    """The ``X-Exec-Assistant-Key`` header value for an outbox key (short, ASCII)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class _Chosen:
    id: int
    name: str
    provider: str
    settings: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.provider} account {self.name!r}"


class AccountMailChannel:
    """Sends outbox entries through the pair's connected account (see the module doc)."""

    def __init__(
        self,
        uow: UnitOfWork,
        *,
        timeout: float = 30,
        auth_retry_seconds: float = DEFAULT_AUTH_RETRY_SECONDS,
        open_sender: OpenSender = _open,
    ) -> None:
        self.uow = uow
        self.timeout = timeout
        self.auth_retry_seconds = auth_retry_seconds
        self._open = open_sender
        self._lock = threading.Lock()
        self._senders: dict[int, tuple[str, MailSender, threading.Lock]] = {}

    def __repr__(self) -> str:
        return "AccountMailChannel()"

    def close(self) -> None:
        with self._lock:
            senders, self._senders = self._senders, {}
        for _, sender, _ in senders.values():
            sender.close()

    # ------------------------------------------------------------------ the mail

    def mail_for(self, message: OutboxMessage) -> OutgoingMail:
        answered = message.payload.get("in_reply_to")
        in_reply_to = ""
        if isinstance(answered, str) and answered.strip("<> "):
            in_reply_to = f"<{answered.strip('<> ')}>"
        return OutgoingMail(
            to=message.recipient, subject=one_line(message.subject), text=message.body_text,
            html=message.body_html, message_id=message_id_for(message.key),
            key=mail_key(message.key), in_reply_to=in_reply_to,
        )  # fmt: skip

    def send(self, message: OutboxMessage) -> None:
        account = self.account_for(message)
        mail = self.mail_for(message)
        sender, lock = self._sender(account)
        try:
            with lock:
                if sender.find_sent(mail.message_id):
                    return  # sent before a crash: the copy in Sent Items says so
                sender.send(mail)
        except InvalidRecipient as exc:
            raise DeliveryError(f"{account.label}: {exc}", permanent=True) from None
        except AuthExpired as exc:
            self._forget(account.id)
            raise DeliveryError(
                f"{account.label}: {exc}; reconnect the account",
                retry_after=self.auth_retry_seconds,
            ) from None
        except RateLimited as exc:
            raise DeliveryError(f"{account.label}: {exc}", retry_after=exc.retry_after) from None
        except Transient as exc:
            raise DeliveryError(f"{account.label}: {exc}") from None
        except NotFound as exc:  # the mailbox is gone: a configuration to fix
            raise DeliveryError(f"{account.label}: {exc}", permanent=True) from None
        except ConnectorError as exc:  # any other refusal: sending again will not help
            raise DeliveryError(f"{account.label}: {exc}", permanent=True) from None

    # --------------------------------------------------------------- the account

    def account_for(self, message: OutboxMessage) -> _Chosen:
        """The account ``message`` goes through (DeliveryError, permanent, if none)."""
        if message.pair_id is None:
            raise DeliveryError(f"channel {message.channel!r} needs a pair", permanent=True)
        name, _, wanted = message.channel.partition(":")
        with self.uow.read() as session:
            rows = list(
                session.scalars(
                    select(Account).where(Account.pair_id == message.pair_id).order_by(Account.id)
                )
            )
            chosen = [
                _Chosen(r.id, r.name, r.provider, dict(r.settings or {}))
                for r in rows
                if r.provider in SENDING_PROVIDERS
            ]
        if name == "account" and wanted:
            found = [a for a in chosen if str(a.id) == wanted.strip()]
            if not found:
                raise DeliveryError(
                    f"account {wanted!r} of pair {message.pair_id} is not one that can send mail",
                    permanent=True,
                )
            return found[0]
        if name in FAMILIES:
            chosen = [a for a in chosen if a.provider in FAMILIES[name]]
        elif name != "account":
            raise DeliveryError(f"channel {message.channel!r} is not an account channel",
                                permanent=True)  # fmt: skip
        if not chosen:
            raise DeliveryError(
                f"pair {message.pair_id} has no account that can send mail for {name!r}",
                permanent=True,
            )
        marked = [a for a in chosen if a.settings.get("send_mail")]
        order = {p: i for i, p in enumerate(SENDING_PROVIDERS)}
        return (marked or sorted(chosen, key=lambda a: (order[a.provider], a.id)))[0]

    def _sender(self, account: _Chosen) -> tuple[MailSender, threading.Lock]:
        """A sender per account, kept while its provider and settings stay the same."""
        fingerprint = repr((account.provider, sorted(account.settings.items())))
        with self._lock:
            held = self._senders.get(account.id)
            if held is not None and held[0] == fingerprint:
                return held[1], held[2]
        try:
            keep = keeper(self.uow, installed, account.id)
            sender = self._open(account.provider, account.settings, self.timeout, keep)
        except AuthExpired as exc:
            raise DeliveryError(
                f"{account.label}: {exc}; reconnect the account",
                retry_after=self.auth_retry_seconds,
            ) from None
        except Transient as exc:
            raise DeliveryError(f"{account.label}: {exc}") from None
        except (ConnectorError, KeyError, ValueError) as exc:
            raise DeliveryError(
                f"{account.label}: cannot open it to send: {type(exc).__name__}: {exc}"[:300],
                permanent=True,
            ) from None
        lock = threading.Lock()
        with self._lock:
            old = self._senders.get(account.id)
            self._senders[account.id] = (fingerprint, sender, lock)
        if old is not None:
            old[1].close()
        return sender, lock

    def _forget(self, account_id: int) -> None:
        """Drop a sender whose credentials were refused: the next try signs in afresh."""
        with self._lock:
            held = self._senders.pop(account_id, None)
        if held is not None:
            held[1].close()
