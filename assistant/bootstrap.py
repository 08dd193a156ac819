"""The composition root: builds the service's parts from settings, never at import time."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from assistant.store.db import UnitOfWork, make_engine
from config import keyfile
from config.settings import Settings

if TYPE_CHECKING:
    from assistant.services.outbox import Channel

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Service:
    """Everything a use case or a job needs, built once per process."""

    settings: Settings
    engine: Engine
    uow: UnitOfWork
    clock: Clock = system_clock
    channels: Mapping[str, Channel] = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock()


def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    channels: Mapping[str, Channel] | None = None,
) -> Service:
    from assistant.adapters import keys

    keyfile.tighten(settings)  # the data folder 0700, database and key files 0600
    engine = make_engine(
        settings.database_url, echo=settings.database.echo, background_checkpoints=True
    )  # the WAL checkpointed by a thread of its own, stopped by engine.dispose()
    try:  # a lost or different key stops start-up before anything is made with a new one
        keys.check(settings, engine, (clock or system_clock)())
    except BaseException:
        engine.dispose()
        raise
    uow = UnitOfWork(engine)
    service = Service(
        settings=settings,
        engine=engine,
        uow=uow,
        clock=clock or system_clock,
        channels=dict(channels) if channels is not None else default_channels(settings, uow),
    )
    from assistant.services.accounts import install_keyring
    from config import sealed
    from config.settings import ConfigError

    try:  # {"encrypted": ...} account secrets open with the app's key
        install_keyring(settings)
        # after `assistant keys rotate` in another process; never makes a key
        sealed.reload_with(lambda: sealed.Keyring(keyfile.all_keys(settings, create=False)))
    except (ConfigError, OSError) as exc:  # accounts with such secrets report it when synced
        logging.getLogger(__name__).warning("no key for encrypted account secrets: %s", exc)
    return service


def default_channels(settings: Settings, uow: UnitOfWork | None = None) -> dict[str, Channel]:
    from assistant.adapters.channels.smtp import SmtpChannel

    smtp = settings.smtp
    channels: dict[str, Channel] = {
        "smtp": SmtpChannel(
            host=smtp.host,
            port=smtp.port,
            from_address=smtp.from_address,
            username=smtp.username,
            password=smtp.password.resolve() if smtp.password else None,
            starttls=smtp.starttls,
            ssl=smtp.ssl,
            timeout=smtp.timeout_seconds,
        )
    }
    if settings.webhook.url and settings.webhook.secret is not None:
        from assistant.adapters.channels.webhook import WebhookChannel

        channels["webhook"] = WebhookChannel(
            url=settings.webhook.url,
            secret=settings.webhook.secret.resolve(),
            timeout=settings.webhook.timeout_seconds,
        )
    if settings.chat.urls:
        from assistant.adapters.channels.chat import AppriseChannel

        channels["chat"] = AppriseChannel(
            [ref.resolve().get_secret_value() for ref in settings.chat.urls],
            config_key="chat.urls",
        )
    if uow is not None:  # mail through the pair's connected account (Exchange, 365, Gmail)
        from assistant.adapters.channels.account_mail import CHANNEL_NAMES, AccountMailChannel

        account_mail = AccountMailChannel(uow)
        for name in CHANNEL_NAMES:  # "account:<id>" reaches it as "account"
            channels.setdefault(name, account_mail)
    return channels


# Libraries that write a line per task or per request at INFO: Huey ("Executing ...",
# "... executed in", "Added task ... to schedule" for every poll) and the HTTP clients
# (each request's URL, which may hold a credential). They speak at WARNING unless the
# service is told DEBUG.
CHATTY_LIBRARIES = (
    "huey", "httpx", "httpcore", "urllib3", "requests", "niquests", "exchangelib", "caldav",
    "googleapiclient", "google_auth_httplib2", "msal", "imapclient", "aiosmtpd", "mail.log",
)  # fmt: skip


def configure_logging(level: str) -> None:
    """The process's log: ``level`` for the service's own loggers (INFO: changes, sends and
    state changes; a poll that found nothing is DEBUG), the chatty libraries at WARNING
    unless ``level`` is DEBUG."""
    numeric = getattr(logging, level, logging.INFO)
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(numeric)  # also when a handler was installed before us
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(
            logging.NOTSET if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
        )
    # apprise tells why a chat message failed only through its WARNING records, which the
    # chat channel captures into the outbox entry's error: they must be emitted whatever
    # the level; the root's handlers print only what ``level`` asks for.
    logging.getLogger("apprise").setLevel(min(numeric, logging.WARNING))
    for handler in logging.getLogger().handlers:
        handler.setLevel(numeric)
