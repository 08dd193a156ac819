"""Opening a connector for an account row's provider and settings.

Account settings are read through the provider's typed model (``SETTINGS``; see
``connectors.settings``): the registry builds every connector from the model, so a
stored account whose settings the model refuses raises ``InvalidSettings`` (a
``ConnectorError``: the sync records it on the account) instead of failing somewhere
inside its connector. ``read_settings`` with ``Adding`` is what the CLI and the web form
validate a new account with.

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
from typing import TYPE_CHECKING, Any

from connectors.archive.settings import MaildirSettings, MboxSettings
from connectors.base import (
    DEFAULT_LIMITS,
    CalendarSource,
    CalendarWriter,
    MailSource,
    ParseLimits,
)
from connectors.caldav.settings import CalDavSettings, IcsSettings
from connectors.ews.settings import EwsCalendarSettings, EwsMailSettings
from connectors.google.settings import GmailSettings, GoogleCalendarSettings
from connectors.graph.settings import GraphMailSettings, GraphSettings
from connectors.imap.settings import ImapSettings
from connectors.netguard import OPERATOR_KEY, NetPolicy
from connectors.settings import AccountSettings, Adding, location, parse, resolve, secret

if TYPE_CHECKING:
    from connectors.caldav.calendar import CalDavCalendar
    from connectors.ews.calendar import EwsCalendar
    from connectors.google.calendar import GoogleCalendar
    from connectors.graph.calendar import GraphCalendar

CALENDAR_PROVIDERS = ("ics", "caldav", "ews", "google", "graph")
WRITABLE_CALENDARS = ("caldav", "ews", "google", "graph")
MAIL_PROVIDERS = ("maildir", "mbox", "imap", "gmail", "ews-mail", "graph-mail")

# Each provider's settings model.
SETTINGS: dict[str, type[AccountSettings]] = {
    "ics": IcsSettings,
    "caldav": CalDavSettings,
    "ews": EwsCalendarSettings,
    "google": GoogleCalendarSettings,
    "graph": GraphSettings,
    "maildir": MaildirSettings,
    "mbox": MboxSettings,
    "imap": ImapSettings,
    "gmail": GmailSettings,
    "ews-mail": EwsMailSettings,
    "graph-mail": GraphMailSettings,
}

# Called with a refresh token the provider rotated (Microsoft does), to be stored in
# place of the account's old one; see assistant.services.accounts.token_keeper.
TokenKeeper = Callable[[str], None]


class UnknownProvider(ValueError):
    pass


def read_settings(
    provider: str, settings: Mapping[str, Any], check: Adding | None = None
) -> AccountSettings:
    """An account's settings read through its provider's model (``InvalidSettings`` names
    each field it refuses); ``check``: the account is being added (see ``Adding``)."""
    model = SETTINGS.get(provider)
    if model is None:
        known = ", ".join(CALENDAR_PROVIDERS + MAIL_PROVIDERS)
        raise UnknownProvider(f"unknown provider {provider!r} (known: {known})")
    return parse(model, provider, settings, check)


def account_policy(settings: AccountSettings, policy: NetPolicy | None) -> NetPolicy:
    """Where this account's connector may connect (see the module's doc)."""
    return (policy or NetPolicy()).for_account({OPERATOR_KEY: settings.added_by_operator})


def open_calendar(
    provider: str,
    settings: Mapping[str, Any],
    timeout: float = 30.0,
    *,
    keep_token: TokenKeeper | None = None,
    policy: NetPolicy | None = None,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> CalendarSource:
    if provider not in CALENDAR_PROVIDERS:
        raise UnknownProvider(f"unknown calendar provider {provider!r}")
    conf = read_settings(provider, settings)
    if isinstance(conf, IcsSettings):
        from connectors.ics.feed import IcsFeed

        return IcsFeed(
            location(conf.location, conf.url_secret),
            username=conf.username,
            password=resolve(secret, conf.password),
            timeout=timeout,
            policy=account_policy(conf, policy),
            limits=limits,
        )
    return _writable(conf, timeout, keep_token, policy, limits)


def open_calendar_writer(
    provider: str,
    settings: Mapping[str, Any],
    timeout: float = 30.0,
    *,
    keep_token: TokenKeeper | None = None,
    policy: NetPolicy | None = None,
) -> CalendarWriter:
    if provider not in WRITABLE_CALENDARS:
        raise UnknownProvider(f"provider {provider!r} cannot write events")
    return _writable(read_settings(provider, settings), timeout, keep_token, policy)


def _writable(
    conf: AccountSettings,
    timeout: float,
    keep_token: TokenKeeper | None,
    policy: NetPolicy | None,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> CalDavCalendar | EwsCalendar | GoogleCalendar | GraphCalendar:
    if isinstance(conf, CalDavSettings):
        from connectors.caldav.calendar import CalDavCalendar

        return CalDavCalendar(
            location(conf.url, conf.url_secret),
            username=conf.username,
            password=resolve(secret, conf.password),
            timeout=timeout,
            policy=account_policy(conf, policy),
            limits=limits,
        )
    if isinstance(conf, EwsCalendarSettings):
        from connectors.ews.calendar import open_ews_calendar

        return open_ews_calendar(conf, secret, timeout=timeout, policy=account_policy(conf, policy))
    if isinstance(conf, GoogleCalendarSettings):
        from connectors.google.calendar import GoogleCalendar

        return GoogleCalendar.from_settings(conf, secret, timeout=timeout)
    if isinstance(conf, GraphSettings):
        from connectors.graph.calendar import GraphCalendar
        from connectors.graph.client import open_graph

        return open_graph(GraphCalendar, conf, secret, timeout=timeout, keep_token=keep_token)
    raise UnknownProvider(f"provider {type(conf).__name__} cannot write events")


def open_mailbox(
    provider: str,
    settings: Mapping[str, Any],
    timeout: float = 30.0,
    *,
    keep_token: TokenKeeper | None = None,
    policy: NetPolicy | None = None,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> MailSource:
    if provider not in MAIL_PROVIDERS:
        raise UnknownProvider(f"unknown mail provider {provider!r}")
    conf = read_settings(provider, settings)
    if isinstance(conf, MaildirSettings):
        from connectors.archive.mailbox import MaildirSource

        return MaildirSource(conf.path, folders=conf.folders, limits=limits)
    if isinstance(conf, MboxSettings):
        from connectors.archive.mbox import MboxSource

        return MboxSource(conf.path, limits=limits)
    if isinstance(conf, ImapSettings):
        from connectors.imap.mailbox import ImapMailbox

        return ImapMailbox(
            conf.host,
            conf.username,
            resolve(secret, conf.password),
            port=conf.port,
            security=conf.security,
            folders=conf.folders,
            timeout=conf.timeout if conf.timeout is not None else timeout,
            policy=account_policy(conf, policy),
            limits=limits,
        )
    if isinstance(conf, GmailSettings):
        from connectors.google.mailbox import GmailMailbox

        return GmailMailbox.from_settings(conf, secret, timeout=timeout)
    if isinstance(conf, EwsMailSettings):
        from connectors.ews.mailbox import open_ews_mailbox

        return open_ews_mailbox(conf, secret, timeout=timeout, policy=account_policy(conf, policy))
    assert isinstance(conf, GraphMailSettings)
    from connectors.graph.client import open_graph
    from connectors.graph.mailbox import GraphMailbox

    return open_graph(
        GraphMailbox, conf, secret, timeout=timeout, keep_token=keep_token,
        header_senders=tuple(conf.header_senders),
    )  # fmt: skip
