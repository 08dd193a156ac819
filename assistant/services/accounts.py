"""Connecting accounts from the web app: secrets encrypted at rest, connection checks.

Secrets the service obtains itself (OAuth refresh tokens, typed-in passwords) are stored
as ``{"encrypted": ...}`` references (``config.sealed``), encrypted with a key derived
from the app's secret. ``check_account`` opens an account's connector once and says in
plain words whether the server let us in.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from assistant.services.account_health import unpark
from assistant.services.pairs import (
    AccountView,
    NotFoundError,
    add_account,
    update_account_settings,
)
from assistant.store.tables import Account
from config.sealed import UNREADABLE, Keyring, install
from config.settings import ConfigError
from connectors.base import (
    AuthExpired,
    ConnectorError,
    InvalidData,
    NotFound,
    ParseLimits,
    RateLimited,
    TokenExpired,
    Transient,
    Window,
)
from connectors.netguard import URL_SECRET_KEY, NetPolicy, split_url_credentials
from connectors.settings import InvalidSettings

if TYPE_CHECKING:
    from assistant.services.deps import Deps
    from assistant.store.db import UnitOfWork
    from config.settings import Settings

log = logging.getLogger(__name__)

# What a form may create, and the settings keys each provider's form fills in.
FORM_PROVIDERS: dict[str, tuple[str, ...]] = {
    "imap": ("host", "port", "security", "username", "password"),
    "caldav": ("url", "username", "password"),
    "ics": ("location", "username", "password"),
    "ews": ("mailbox", "service_endpoint", "username", "password"),
    "ews-mail": ("mailbox", "service_endpoint", "username", "password"),
}
NEEDS_PASSWORD = frozenset({"imap", "ews", "ews-mail"})  # the form's own requirement
OAUTH_PROVIDERS = ("google", "gmail", "graph", "graph-mail")


# --------------------------------------------------------------------------- keyring


def keyring_for(settings: Settings) -> Keyring:
    """The keyring of the app's secret (first: encrypts) and the retired ones."""
    from assistant.services.feedback import secret_keys

    keys = list(secret_keys(settings))
    keys += [r.resolve().get_secret_value() for r in settings.web.previous_secret_keys]
    return Keyring.from_secrets(keys)


def install_keyring(settings: Settings) -> Keyring:
    """Install the process's keyring (the composition root calls this once)."""
    keyring = keyring_for(settings)
    install(keyring)
    return keyring


# ------------------------------------------------------------------- storing accounts


def account_of_pair(deps: Deps, pair_id: int, account_id: int) -> AccountView:
    with deps.uow.read() as session:
        account = session.get(Account, account_id)
        if account is None or account.pair_id != pair_id:
            raise NotFoundError(f"no account {account_id}")
        return AccountView.of(account)


def find_account_by_identity(deps: Deps, pair_id: int, provider: str, identity: str) -> int | None:
    """An account of the pair for the same provider and user (connecting again = reconnect)."""
    with deps.uow.read() as session:
        for account in session.scalars(
            select(Account).where(Account.pair_id == pair_id, Account.provider == provider)
        ):
            if identity and str(account.settings.get("identity", "")).lower() == identity.lower():
                return account.id
    return None


def save_oauth_account(
    deps: Deps,
    pair_id: int,
    *,
    provider: str,
    name: str,
    identity: str,
    settings: dict[str, Any],
    refresh_token: str,
    account_id: int | None,
) -> int:
    """Store a new OAuth account, or the new token of an existing one (reconnect)."""
    sealed = keyring_for(deps.settings).seal(refresh_token)
    conf = {**settings, "identity": identity, "refresh_token": sealed}
    if account_id is None:
        account_id = find_account_by_identity(deps, pair_id, provider, identity)
    if account_id is not None:
        return update_account_settings(deps, account_id, conf, pair_id=pair_id).id
    from connectors.registry import read_settings

    read_settings(provider, conf)  # what the sign-in gave is what the connector reads
    return add_account(
        deps, pair=pair_id, name=_unique_name(deps, pair_id, name), provider=provider,
        settings=conf, guard=net_policy(deps.settings),
    ).id  # fmt: skip


def token_keeper(deps: Deps, account_id: int) -> Callable[[str], None]:
    """What a connector calls with a refresh token its provider rotated (Microsoft does).

    The new token is stored encrypted in place of the old one at once, in a unit of work
    of its own (a sync that fails later must not lose it), also when the old one came by
    reference (``{env=...}``): the old token may stop working. Storing never breaks the
    caller: a failure is logged (never the token) and the old token stays.
    """

    return keeper(deps.uow, lambda: keyring_for(deps.settings), account_id)


def keeper(
    uow: UnitOfWork, keyring: Callable[[], Keyring | None], account_id: int
) -> Callable[[str], None]:
    """``token_keeper`` for callers without a ``Deps`` (a channel holds a unit of work
    and the process's installed keyring)."""

    def keep(token: str) -> None:
        try:
            ring = keyring()
            if ring is None:
                raise LookupError("no keyring installed")
            sealed = ring.seal(token)
            with uow.begin() as session:
                account = session.get(Account, account_id)
                if account is None:
                    return
                account.settings = {**account.settings, "refresh_token": sealed}
                unpark(account)
        except Exception as exc:
            log.error(
                "account %s: the provider renewed its refresh token, which could not be "
                "stored (%s); reconnect the account if it stops working",
                account_id,
                type(exc).__name__,
            )
        else:
            log.info("account %s: the provider renewed its refresh token; stored", account_id)

    return keep


def _unique_name(deps: Deps, pair_id: int, name: str) -> str:
    name = name[:90]
    with deps.uow.read() as session:
        taken = set(session.scalars(select(Account.name).where(Account.pair_id == pair_id)))
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    return candidate


def save_form_account(deps: Deps, pair_id: int, provider: str, form: dict[str, str]) -> int:
    """A credential account from the web form, validated with the provider's settings
    model (``connectors.registry.read_settings``: a ValueError naming each field); the
    password is encrypted before storing."""
    from connectors.registry import read_settings
    from connectors.settings import Adding

    if provider not in FORM_PROVIDERS:
        raise ValueError(f"choose one of: {', '.join(FORM_PROVIDERS)}")
    values = {k: str(form.get(k, "")).strip() for k in FORM_PROVIDERS[provider]}
    values["password"] = str(form.get("password", ""))  # passwords are not trimmed
    name = str(form.get("name", "")).strip() or f"{provider} {values.get('username') or ''}"
    conf: dict[str, Any] = {k: v for k, v in values.items() if v and k != "password"}
    if provider == "imap" and values["security"] not in ("ssl", "starttls", "none"):
        conf["security"] = "ssl"
    if provider in ("ews", "ews-mail"):
        conf["auth"] = "basic"
    if provider == "ics" and conf.get("location", "").lower().startswith("webcal://"):
        conf["location"] = "https://" + conf["location"][len("webcal://") :]  # what webcal means
    url_password = seal_url_credentials(deps.settings, provider, conf)
    password = values["password"] or url_password
    if password:
        conf["password"] = keyring_for(deps.settings).seal(password)
    try:
        checked = read_settings(provider, conf, Adding(net_policy(deps.settings)))
    except InvalidSettings as exc:
        raise ValueError(form_problems(exc.problems, provider, bool(password))) from None
    if provider in NEEDS_PASSWORD and not password:
        raise ValueError(form_problems([], provider, False))
    return add_account(
        deps, pair=pair_id, name=name.strip()[:100], provider=provider,
        settings=checked.stored(), guard=net_policy(deps.settings),
    ).id  # fmt: skip


def form_problems(problems: list[tuple[str, str]], provider: str, password: bool) -> str:
    """What the form says: the fields to fill in first, then each field's other problem."""
    from connectors.settings import REQUIRED

    missing = [field for field, reason in problems if reason == REQUIRED]
    if provider in NEEDS_PASSWORD and not password:
        missing.append("password")
    said = [f"please fill in: {', '.join(f.replace('_', ' ') for f in missing)}"] if missing else []
    said += [f"{field}: {reason}" for field, reason in problems if reason != REQUIRED]
    return "; ".join(said)


def net_policy(settings: Settings) -> NetPolicy:
    """Where accounts users add may connect (``network`` settings)."""
    return NetPolicy.from_settings(settings.network)


# The setting holding each provider's address (credentials written into it are split out).
URL_SETTINGS = {"ics": "location", "caldav": "url", "ews": "service_endpoint",
                "ews-mail": "service_endpoint"}  # fmt: skip


def seal_url_credentials(settings: Settings, provider: str, conf: dict[str, Any]) -> str:
    """Take credentials out of the account's address, in place: ``user:pw@`` becomes the
    username (unless one is given) and the password returned (to be sealed by the
    caller); secret query parameters (``?token=``, ``?key=``...) are sealed into
    ``netguard.URL_SECRET_KEY`` and put back only when connecting."""
    key = URL_SETTINGS.get(provider)
    if key is None or not conf.get(key):
        return ""
    split = split_url_credentials(str(conf[key]))
    conf[key] = split.url
    if split.username and not conf.get("username"):
        conf["username"] = split.username
    if split.secret_query:
        conf[URL_SECRET_KEY] = keyring_for(settings).seal(split.secret_query)
    return split.password


def replace_password(deps: Deps, pair_id: int, account_id: int, password: str) -> None:
    account = account_of_pair(deps, pair_id, account_id)
    if account.provider not in FORM_PROVIDERS:
        raise ValueError("this account signs in with its provider: use Reconnect")
    if not password:
        raise ValueError("please fill in: password")
    sealed = keyring_for(deps.settings).seal(password)
    update_account_settings(deps, account_id, {"password": sealed}, pair_id=pair_id)


# ------------------------------------------------------------------------ checking


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    note: str  # a key of the UI strings: check_ok, check_auth, ...


def note_for(exc: BaseException) -> str:
    """Our error tree in words (UI string keys)."""
    if isinstance(exc, AuthExpired):
        return "check_secret" if str(exc) == UNREADABLE else "check_auth"
    if isinstance(exc, RateLimited):
        return "check_rate"
    if isinstance(exc, Transient):
        return "check_unreachable"
    if isinstance(exc, NotFound):
        return "check_not_found"
    if isinstance(exc, InvalidData):
        return "check_invalid"
    if isinstance(exc, ConfigError | InvalidSettings):
        return "check_config"
    return "check_failed"


def check_account(deps: Deps, pair_id: int, account_id: int) -> CheckResult:
    """Open the account's connector and ask for its changes once (a tiny window).

    A failure is recorded on the account as a sync failure would be (not as a try of its
    health: no back-off, no parking); success leaves the account's state to the next
    sync, and a parked account is polled again."""
    from assistant.services.sync import record_failure
    from connectors.registry import open_calendar, open_mailbox

    account = account_of_pair(deps, pair_id, account_id)
    conf, provider, kind = dict(account.settings), account.provider, account.kind
    with deps.uow.read() as session:
        a = session.get(Account, account_id)
        zone = a.pair.timezone if a is not None else "UTC"
    timeout = min(deps.settings.sync.http_timeout_seconds, 20.0)
    now = deps.now()
    policy = net_policy(deps.settings)
    try:
        keep = token_keeper(deps, account_id)
        if kind == "calendar":
            limits = ParseLimits.of(deps.settings.limits)
            source = open_calendar(
                provider, conf, timeout, keep_token=keep, limits=limits, policy=policy
            )
            window = Window(now, now + timedelta(minutes=1), ZoneInfo(zone).key)
            source.changes(None, window)
        else:
            limits = ParseLimits.of(deps.settings.limits)
            mailbox = open_mailbox(
                provider, conf, timeout, keep_token=keep, limits=limits, policy=policy
            )
            mailbox.changes(None)
    except TokenExpired:
        _unpark(deps, account_id)
        return CheckResult(True, "check_ok")  # the server answered: the login works
    except (ConnectorError, ConfigError) as exc:
        error: Exception = exc
        if isinstance(exc, ConfigError):
            error = ConnectorError(f"a secret of the account cannot be read: {exc}")
        record_failure(deps.uow, account_id, error, now)
        return CheckResult(False, note_for(exc))
    except (KeyError, ValueError) as exc:
        record_failure(deps.uow, account_id, ConnectorError(f"incomplete settings: {exc}"), now)
        return CheckResult(False, "check_config")
    finally:
        _close_quietly(locals().get("source"), locals().get("mailbox"))
    _unpark(deps, account_id)
    return CheckResult(True, "check_ok")


def _unpark(deps: Deps, account_id: int) -> None:
    """The server let us in: a parked account is polled again (the credentials it refers
    to were mended outside the service, say)."""
    with deps.uow.begin() as session:
        account = session.get(Account, account_id)
        if account is not None and account.parked_reason:
            unpark(account)


def _close_quietly(*things: Any) -> None:
    for thing in things:
        close = getattr(thing, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):  # a check's connection: nothing to keep
                close()
