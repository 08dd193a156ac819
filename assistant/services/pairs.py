"""Pairs and accounts: creating and listing them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.services.account_health import unpark
from assistant.store.tables import Account, Pair
from connectors.base import ConnectorError
from connectors.netguard import OPERATOR_KEY, NetPolicy
from connectors.registry import CALENDAR_PROVIDERS, MAIL_PROVIDERS
from connectors.registry import WRITABLE_CALENDARS as WRITABLE_PROVIDERS

if TYPE_CHECKING:
    from assistant.services.deps import Deps

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
SECRET_WORDS = ("password", "secret", "token", "key")


class NotFoundError(LookupError):
    """A pair, account or task named by the user does not exist."""


@dataclass(frozen=True, slots=True)
class PairView:
    """A pair as the entry points show it (its settings: ``pair_settings.PairSettings``)."""

    id: int
    name: str
    manager_email: str
    assistant_email: str
    manager_name: str
    assistant_name: str
    timezone: str
    assistant_timezone: str
    sla_minutes: int
    locale: str
    manager_aliases: tuple[str, ...] = ()
    assistant_aliases: tuple[str, ...] = ()

    @classmethod
    def of(cls, pair: Pair) -> PairView:
        return cls(
            id=pair.id,
            name=pair.name,
            manager_email=pair.manager_email,
            assistant_email=pair.assistant_email,
            manager_name=pair.manager_name,
            assistant_name=pair.assistant_name,
            timezone=pair.timezone,
            assistant_timezone=pair.assistant_timezone,
            sla_minutes=pair.sla_minutes,
            locale=pair.locale,
            manager_aliases=tuple(pair.manager_aliases or ()),
            assistant_aliases=tuple(pair.assistant_aliases or ()),
        )


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account as stored: ``settings`` hold secret references, never secrets (print
    them through ``public_settings``)."""

    id: int
    pair_id: int
    name: str
    provider: str
    kind: str  # calendar | mail
    writable: bool
    state: str
    last_sync_at: datetime | None
    last_error: str
    settings: dict[str, Any] = field(hash=False)
    disabled: bool = False
    failures: int = 0  # failed tries in a row (account health)
    next_try_at: datetime | None = None  # when a failing account is tried again
    parked: str = ""  # why it is no longer tried until its credentials change ("" = it is)

    @property
    def health(self) -> str:
        """``disabled``, ``parked``, ``retrying`` (failing, backed off) or the sync state."""
        if self.disabled:
            return "disabled"
        if self.parked:
            return "parked"
        return "retrying" if self.failures else self.state

    @classmethod
    def of(cls, account: Account) -> AccountView:
        return cls(
            id=account.id,
            pair_id=account.pair_id,
            name=account.name,
            provider=account.provider,
            kind=account.kind,
            writable=account.writable,
            state=account.state,
            last_sync_at=account.last_sync_at,
            last_error=account.last_error,
            settings=dict(account.settings),
            disabled=bool(account.disabled),
            failures=int(account.failures or 0),
            next_try_at=account.next_try_at,
            parked=account.parked_reason or "",
        )


def check_email(value: str, what: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.match(value):
        raise ValueError(f"{what} {value!r} is not an email address")
    return value


def check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)"
        ) from None
    return value


def add_pair(
    deps: Deps,
    *,
    name: str,
    manager_email: str,
    assistant_email: str,
    manager_name: str = "",
    assistant_name: str = "",
    timezone: str = "UTC",
    assistant_timezone: str = "",
    sla_minutes: int = 30,
    locale: str = "en",
    working_hours: dict[str, Any] | None = None,
    manager_aliases: Sequence[str] = (),
    assistant_aliases: Sequence[str] = (),
) -> PairView:
    now = deps.now()
    if not name.strip():
        raise ValueError("a pair needs a name")
    if name.strip().isdigit():
        raise ValueError("a pair's name must not be a number (numbers are pair ids)")
    if sla_minutes <= 0:
        raise ValueError("the SLA must be a positive number of minutes")
    if locale not in ("en", "ru"):
        raise ValueError("locale must be en or ru")
    pair = Pair(
        name=name.strip(),
        manager_email=check_email(manager_email, "manager address"),
        assistant_email=check_email(assistant_email, "assistant address"),
        manager_name=manager_name,
        assistant_name=assistant_name,
        timezone=check_zone(timezone),
        assistant_timezone=check_zone(assistant_timezone) if assistant_timezone else "",
        sla_minutes=sla_minutes,
        locale=locale,
        created_at=now,
        manager_aliases=_aliases(manager_aliases, "manager alias"),
        assistant_aliases=_aliases(assistant_aliases, "assistant alias"),
    )
    if working_hours is not None:
        from assistant.services.hours import hours_for

        hours_for(working_hours, pair.timezone, (now.year,))  # validates, holidays too
        pair.working_hours = working_hours
    with deps.uow.begin() as session:
        if session.scalars(select(Pair).where(Pair.name == pair.name)).first():
            raise ValueError(f"a pair named {pair.name!r} exists already")
        session.add(pair)
        session.flush()
        return PairView.of(pair)


def _aliases(values: Sequence[str], what: str) -> list[str]:
    return sorted({check_email(v.strip(), what).lower() for v in values})


def set_aliases(
    deps: Deps,
    pair_ref: str | int | None,
    *,
    manager: Sequence[str] | None = None,
    assistant: Sequence[str] | None = None,
) -> PairView:
    """Replace the manager's and/or the assistant's other addresses (None: keep)."""
    with deps.uow.begin() as session:
        pair = find_pair(session, pair_ref)
        if manager is not None:
            pair.manager_aliases = _aliases(manager, "manager alias")
        if assistant is not None:
            pair.assistant_aliases = _aliases(assistant, "assistant alias")
        session.flush()
        return PairView.of(pair)


def find_pair(session: Session, ref: str | int | None) -> Pair:
    """A pair by id or name; with no reference, the only pair there is."""
    if ref is None:
        pairs = list(session.scalars(select(Pair).order_by(Pair.id).limit(2)))
        if len(pairs) == 1:
            return pairs[0]
        raise NotFoundError("no pairs yet: add one with `assistant pair add`" if not pairs
                            else "several pairs exist: name one with --pair")  # fmt: skip
    # An int is an id; a string is a name first, then (all digits) an id. A name that
    # looks like another pair's id therefore never hides that the string meant the name.
    pair = None
    if isinstance(ref, int):
        pair = session.get(Pair, ref)
    else:
        pair = session.scalars(select(Pair).where(Pair.name == ref)).first()
        if pair is None and ref.isdigit():
            pair = session.get(Pair, int(ref))
    if pair is None:
        raise NotFoundError(f"no pair {ref!r}")
    return pair


def list_pairs(deps: Deps) -> list[PairView]:
    with deps.uow.read() as session:
        return [PairView.of(p) for p in session.scalars(select(Pair).order_by(Pair.id))]


def add_account(
    deps: Deps,
    *,
    pair: str | int | None,
    name: str,
    provider: str,
    settings: dict[str, Any],
    guard: NetPolicy | None = None,
) -> AccountView:
    """Add an account to a pair.

    ``guard`` None: the operator adds it (the CLI, the configuration, the operator's
    code): it is marked so (``netguard.OPERATOR_KEY``) and may read local files and reach
    private hosts. A policy: a user adds it (the web app, an API): its locations are
    checked against the policy now, and again by its connector at every connection.
    """
    if provider in CALENDAR_PROVIDERS:
        kind = "calendar"
    elif provider in MAIL_PROVIDERS:
        kind = "mail"
    else:
        known = ", ".join(CALENDAR_PROVIDERS + MAIL_PROVIDERS)
        raise ValueError(f"unknown provider {provider!r} (known: {known})")
    check_secret_refs(settings)
    settings = {k: v for k, v in settings.items() if k != OPERATOR_KEY}
    if guard is None:
        settings[OPERATOR_KEY] = True
    else:
        check_locations(provider, settings, guard.for_account({}))
    now = deps.now()
    with deps.uow.begin() as session:
        p = find_pair(session, pair)
        if session.scalars(
            select(Account).where(Account.pair_id == p.id, Account.name == name)
        ).first():
            raise ValueError(f"pair {p.name!r} has an account named {name!r} already")
        account = Account(
            pair_id=p.id,
            name=name,
            provider=provider,
            kind=kind,
            settings=settings,
            writable=provider in WRITABLE_PROVIDERS,
            created_at=now,
        )
        session.add(account)
        session.flush()
        return AccountView.of(account)


def check_locations(provider: str, settings: dict[str, Any], policy: NetPolicy) -> None:
    """Where an account a user adds may connect (``netguard``): raises ValueError."""
    try:
        if provider in ("ics", "caldav"):
            policy.check_location(str(settings.get("location" if provider == "ics" else "url")))
        elif provider in ("ews", "ews-mail"):
            if settings.get("autodiscover"):
                raise ValueError("autodiscover is only for accounts added with the CLI")
            policy.check_location(str(settings.get("service_endpoint", "")))
        elif provider == "imap":
            security = str(settings.get("security", "ssl"))
            port = int(settings.get("port") or (993 if security == "ssl" else 143))
            policy.check_server(str(settings.get("host", "")), port, tls=security != "none")
        elif provider in ("maildir", "mbox"):
            raise ValueError("local mail folders are only for accounts added with the CLI")
    except ConnectorError as exc:
        raise ValueError(str(exc)) from None


def is_secret_key(key: str) -> bool:
    return any(key == w or key.endswith("_" + w) for w in SECRET_WORDS)


def check_secret_refs(settings: dict[str, Any]) -> None:
    """Secrets in account settings are references: env, file, command or encrypted."""
    from pydantic import ValidationError

    from config.settings import SecretRef

    for key, value in settings.items():
        if not is_secret_key(key) or not value:
            continue
        if isinstance(value, str):
            raise ValueError(
                f"{key} must be a reference (env, file, command or encrypted), not a value"
            )
        if isinstance(value, dict):
            try:
                SecretRef(**value)
            except (ValidationError, TypeError):
                raise ValueError(
                    f"{key}: give exactly one of env, file, command or encrypted"
                ) from None


def update_account_settings(
    deps: Deps,
    account_id: int,
    changes: dict[str, Any],
    *,
    pair_id: int | None = None,
    removed: Sequence[str] = (),
    name: str = "",
) -> AccountView:
    """Merge ``changes`` into an account's settings, drop the ``removed`` keys (a
    reconnect: new token or password; an edit), rename it when ``name`` is given.

    The account starts over as "new" with no error and, if it was parked, is tried at the
    next poll (``account_health.unpark``); its change token is kept."""
    check_secret_refs(changes)
    changes = {k: v for k, v in changes.items() if k != OPERATOR_KEY}  # only add_account marks
    with deps.uow.begin() as session:
        account = session.get(Account, account_id)
        if account is None or (pair_id is not None and account.pair_id != pair_id):
            raise NotFoundError(f"no account {account_id}")
        if name and name != account.name:
            if session.scalars(
                select(Account.id).where(Account.pair_id == account.pair_id, Account.name == name)
            ).first():
                raise ValueError(f"the pair has an account named {name!r} already")
            account.name = name
        kept = {k: v for k, v in account.settings.items() if k not in removed or k == OPERATOR_KEY}
        account.settings = {**kept, **changes}
        account.state = "new"
        account.last_error = ""
        unpark(account)  # new credentials: tried at the next poll
        return AccountView.of(account)


def set_account_disabled(
    deps: Deps, account_id: int, disabled: bool, *, pair_id: int | None = None
) -> AccountView:
    """Turn an account off (not polled, synced or pushed; its snapshots are kept) or on
    again (tried at the next poll, from a clean slate: "new", not parked, no back-off)."""
    with deps.uow.begin() as session:
        account = session.get(Account, account_id)
        if account is None or (pair_id is not None and account.pair_id != pair_id):
            raise NotFoundError(f"no account {account_id}")
        if account.disabled != disabled:
            account.disabled = disabled
            if not disabled:
                account.failing_since = None
                account.alerted_at = None
                unpark(account)
        return AccountView.of(account)


def trust_account(deps: Deps, account_id: int) -> AccountView:
    """Mark an account as the operator's (``netguard.OPERATOR_KEY``): only the CLI does."""
    with deps.uow.begin() as session:
        account = session.get(Account, account_id)
        if account is None:
            raise NotFoundError(f"no account {account_id}")
        account.settings = {**account.settings, OPERATOR_KEY: True}
        account.state = "new"
        account.last_error = ""
        return AccountView.of(account)


def list_accounts(deps: Deps, pair: str | int | None = None) -> list[AccountView]:
    with deps.uow.read() as session:
        stmt = select(Account).order_by(Account.id)
        if pair is not None:
            stmt = stmt.where(Account.pair_id == find_pair(session, pair).id)
        return [AccountView.of(a) for a in session.scalars(stmt)]


def public_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Account settings safe to print: secret references shown by kind only, credentials
    in URLs (``user:pw@``, ``?token=``) replaced by ``***``."""
    from connectors.netguard import redact_text

    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and ({"env", "file", "command", "encrypted"} & value.keys()):
            out[key] = "<" + ",".join(sorted(value)) + " reference>"
        elif isinstance(value, str):
            out[key] = redact_text(value)
        else:
            out[key] = value
    return out
