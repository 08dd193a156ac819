"""Opening a connector for an account row's provider and settings.

Account settings hold connection details; secrets in them are references
(``{"env": NAME}``, ``{"file": PATH}``, ``{"command": CMD}``, or ``{"encrypted": TOKEN}``
for secrets the service obtained itself, see ``config.sealed``) resolved here, at the
moment of connecting, and never stored or logged in clear.

Where a connector may connect is ``policy`` (``connectors.netguard.NetPolicy``, from the
``network`` settings) narrowed to the account: an account the operator added (marked
``netguard.OPERATOR_KEY``) may read files and reach private hosts; any other account
only public addresses, checked by the connector at every connection. Without a policy
the strictest one applies (nothing listed, https only).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.sealed import UNREADABLE
from config.settings import ConfigError, SecretRef
from connectors.base import (
    DEFAULT_LIMITS,
    AuthExpired,
    CalendarSource,
    CalendarWriter,
    MailSource,
    ParseLimits,
)
from connectors.netguard import URL_SECRET_KEY, NetPolicy, with_url_secret

if TYPE_CHECKING:
    from connectors.caldav.calendar import CalDavCalendar
    from connectors.ews.calendar import EwsCalendar
    from connectors.google.calendar import GoogleCalendar
    from connectors.graph.calendar import GraphCalendar

CALENDAR_PROVIDERS = ("ics", "caldav", "ews", "google", "graph")
WRITABLE_CALENDARS = ("caldav", "ews", "google", "graph")
MAIL_PROVIDERS = ("maildir", "mbox", "imap", "gmail", "ews-mail", "graph-mail")

# Called with a refresh token the provider rotated (Microsoft does), to be stored in
# place of the account's old one; see assistant.services.accounts.token_keeper.
TokenKeeper = Callable[[str], None]


class UnknownProvider(ValueError):
    pass


def secret(value: Any) -> str:
    """Resolve a secret reference (or pass an empty value through)."""
    if not value:
        return ""
    if isinstance(value, Mapping):
        if "encrypted" in value:  # obtained by the service: unreadable means reconnect
            try:
                return SecretRef(**value).resolve().get_secret_value()
            except (ConfigError, ValueError):
                raise AuthExpired(UNREADABLE) from None
        return SecretRef(**value).resolve().get_secret_value()
    raise ValueError("secrets must be given by reference: {env=...}, {file=...} or {command=...}")


def account_policy(settings: Mapping[str, Any], policy: NetPolicy | None) -> NetPolicy:
    """Where this account's connector may connect (see the module's doc)."""
    return (policy or NetPolicy()).for_account(settings)


def location(settings: Mapping[str, Any], key: str) -> str:
    """An account's address with its sealed URL secrets (``?token=...``) put back."""
    return with_url_secret(str(settings[key]), secret(settings.get(URL_SECRET_KEY)))


def open_calendar(
    provider: str,
    settings: Mapping[str, Any],
    timeout: float = 30.0,
    *,
    keep_token: TokenKeeper | None = None,
    policy: NetPolicy | None = None,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> CalendarSource:
    if provider == "ics":
        from connectors.ics.feed import IcsFeed

        return IcsFeed(
            location(settings, "location"),
            username=str(settings.get("username", "")),
            password=secret(settings.get("password")),
            timeout=timeout,
            policy=account_policy(settings, policy),
            limits=limits,
        )
    if provider in WRITABLE_CALENDARS:
        return _writable(provider, settings, timeout, keep_token, policy, limits)
    raise UnknownProvider(f"unknown calendar provider {provider!r}")


def open_calendar_writer(
    provider: str,
    settings: Mapping[str, Any],
    timeout: float = 30.0,
    *,
    keep_token: TokenKeeper | None = None,
    policy: NetPolicy | None = None,
) -> CalendarWriter:
    if provider in WRITABLE_CALENDARS:
        return _writable(provider, settings, timeout, keep_token, policy)
    raise UnknownProvider(f"provider {provider!r} cannot write events")


def _writable(
    provider: str,
    settings: Mapping[str, Any],
    timeout: float,
    keep_token: TokenKeeper | None,
    policy: NetPolicy | None,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> CalDavCalendar | EwsCalendar | GoogleCalendar | GraphCalendar:
    if provider == "caldav":
        from connectors.caldav.calendar import CalDavCalendar

        return CalDavCalendar(
            location(settings, "url"),
            username=str(settings.get("username", "")),
            password=secret(settings.get("password")),
            timeout=timeout,
            policy=account_policy(settings, policy),
            limits=limits,
        )
    if provider == "ews":
        from connectors.ews.calendar import open_ews_calendar

        return open_ews_calendar(
            settings, secret, timeout=timeout, policy=account_policy(settings, policy)
        )
    if provider == "google":
        from connectors.google.calendar import GoogleCalendar

        return GoogleCalendar.from_settings(settings, secret, timeout=timeout)
    if provider == "graph":
        from connectors.graph.calendar import GraphCalendar

        return GraphCalendar(
            str(settings["user"]),
            tenant=str(settings["tenant"]),
            client_id=str(settings["client_id"]),
            client_secret=secret(settings.get("client_secret")),
            refresh_token=secret(settings.get("refresh_token")),
            timeout=timeout,
            on_refresh_token=keep_token,
            **{k: settings[k] for k in ("graph_url", "authority_host") if k in settings},
        )
    raise UnknownProvider(f"provider {provider!r} cannot write events")


def open_mailbox(
    provider: str,
    settings: Mapping[str, Any],
    timeout: float = 30.0,
    *,
    keep_token: TokenKeeper | None = None,
    policy: NetPolicy | None = None,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> MailSource:
    if provider == "maildir":
        from connectors.archive.mailbox import MaildirSource

        folders = settings.get("folders")
        return MaildirSource(Path(str(settings["path"])), folders=folders, limits=limits)
    if provider == "mbox":
        from connectors.archive.mailbox import MboxSource

        return MboxSource(Path(str(settings["path"])), limits=limits)
    if provider == "imap":
        from connectors.imap.mailbox import ImapMailbox

        return ImapMailbox(
            str(settings["host"]),
            str(settings["username"]),
            secret(settings.get("password")),
            port=int(settings["port"]) if settings.get("port") else None,
            security=settings.get("security", "ssl"),
            folders=settings.get("folders"),
            timeout=float(settings.get("timeout", timeout)),
            policy=account_policy(settings, policy),
            limits=limits,
        )
    if provider == "gmail":
        from connectors.google.mailbox import GmailMailbox

        return GmailMailbox.from_settings(settings, secret, timeout=timeout)
    if provider == "ews-mail":
        from connectors.ews.mailbox import open_ews_mailbox

        return open_ews_mailbox(
            settings, secret, timeout=timeout, policy=account_policy(settings, policy)
        )
    if provider == "graph-mail":
        from connectors.graph.mailbox import GraphMailbox

        return GraphMailbox(
            str(settings["user"]),
            tenant=str(settings["tenant"]),
            client_id=str(settings["client_id"]),
            client_secret=secret(settings.get("client_secret")),
            refresh_token=secret(settings.get("refresh_token")),
            timeout=timeout,
            header_senders=tuple(settings.get("header_senders", ())),
            on_refresh_token=keep_token,
            **{k: settings[k] for k in ("graph_url", "authority_host") if k in settings},
        )
    raise UnknownProvider(f"unknown mail provider {provider!r}")
