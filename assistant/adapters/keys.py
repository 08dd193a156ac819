"""The app's key and what the database holds that needs it: the start-up check, rotation,
reset. Where the key lives and how it is made is :mod:`config.keyfile`.

The key is never generated again behind the operator's back: when the database holds
secrets sealed with a key, or feedback links signed with one, and the key is missing or
is another one, :func:`check` stops start-up with a :class:`KeyProblem` naming the problem
and the fix (restore the key; without it, ``assistant keys reset`` and reconnect).
"""

from __future__ import annotations

import logging
import re
import secrets as random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from assistant.store.db import READ_ONLY
from config.keyfile import (
    KeyProblem,
    all_keys,
    describe,
    fingerprint,
    from_settings,
    key_path,
    read_key,
    retired_keys,
    retired_path,
    write_private,
)
from config.sealed import Keyring, UnreadableSecret

if TYPE_CHECKING:
    from config.settings import Settings

log = logging.getLogger(__name__)

# a feedback link in a prompt's text: /feedback/v1.<body>.<mac>
_LINK = re.compile(r"/feedback/(v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")
LINKS_CHECKED = 20


# ----------------------------------------------------------------------- what was sealed


@dataclass
class Sealed:
    """Where one ``{"encrypted": token}`` sits: account ``account_id``, at ``path``."""

    account_id: int
    path: tuple[str | int, ...]
    token: str


def _walk(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, dict):
        if set(value) == {"encrypted"} and isinstance(value["encrypted"], str):
            yield path, value["encrypted"]
            return
        for k, v in value.items():
            yield from _walk(v, (*path, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, (*path, i))


def sealed_secrets(session: Session) -> list[Sealed]:
    from assistant.store.tables import Account

    found: list[Sealed] = []
    for account_id, conf in session.execute(select(Account.id, Account.settings)):
        for path, token in _walk(conf or {}, ()):
            found.append(Sealed(account_id, path, token))
    return found


def _replace(value: Any, path: tuple[str | int, ...], new: Any) -> Any:
    """A copy of ``value`` with the item at ``path`` replaced by ``new``."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, list):
        copy_l = list(value)
        copy_l[int(head)] = _replace(copy_l[int(head)], rest, new)
        return copy_l
    copy_d = dict(value)
    copy_d[head] = _replace(copy_d[head], rest, new)
    return copy_d


def sent_links(session: Session, now: datetime, limit: int = LINKS_CHECKED) -> list[str]:
    """Tokens of feedback links in prompts already queued or sent whose links have not
    expired yet (newest first): what a new key would silently break."""
    from assistant.services.feedback import LINK_VALID_AFTER_DEADLINE
    from assistant.store.tables import DelegatedTask, OutboxEntry

    rows = session.execute(
        select(OutboxEntry.body_text, OutboxEntry.payload)
        .where(OutboxEntry.idempotency_key.startswith("prompt:"))
        .order_by(OutboxEntry.id.desc())
        .limit(limit * 5)
    ).all()
    task_ids = {int((p or {}).get("task_id", 0)) for _, p in rows}
    live = set(
        session.scalars(
            select(DelegatedTask.id).where(
                DelegatedTask.id.in_(task_ids),
                DelegatedTask.deadline > now - LINK_VALID_AFTER_DEADLINE,
            )
        )
    )
    tokens: list[str] = []
    for body, payload in rows:
        if int((payload or {}).get("task_id", 0)) in live:
            tokens += _LINK.findall(body or "")
    return list(dict.fromkeys(tokens))[:limit]


# ------------------------------------------------------------------------------- check


@dataclass
class Inventory:
    sealed: list[Sealed] = field(default_factory=list)
    links: list[str] = field(default_factory=list)


def inventory(engine: Engine, now: datetime) -> Inventory:
    """What the database holds that needs the key; nothing for a database without tables."""
    try:
        with Session(engine.execution_options(**{READ_ONLY: True})) as session:
            return Inventory(sealed_secrets(session), sent_links(session, now))
    except SQLAlchemyError:  # not migrated yet: nothing can have been sealed
        return Inventory()


def _accounts(items: list[Sealed]) -> str:
    ids = sorted({s.account_id for s in items})
    shown = ", ".join(str(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
    return f"account{'s' if len(ids) != 1 else ''} {shown}"


def check(settings: Settings, engine: Engine, now: datetime) -> None:
    """Stop start-up when the key cannot serve what the database holds (see the module
    docstring); on a fresh install the key is generated here, once."""
    from assistant.domain.signing import ExpiredToken, TokenError, WrongPurpose, verify

    held = inventory(engine, now)
    where = describe(settings)
    missing = not from_settings(settings) and read_key(key_path(settings)) is None
    if missing and (held.sealed or held.links):
        raise KeyProblem(
            f"the app's key {where} is missing, but the database holds {_what(held)} made "
            "with it; no new key is made while they exist. Restore the file from a backup; "
            "without the old key, run `assistant keys reset` and reconnect the accounts"
        )
    keys = all_keys(settings)  # a fresh install's key is generated here
    ring = Keyring(keys)
    unreadable = []
    for item in held.sealed:
        try:
            ring.open(item.token)
        except UnreadableSecret:
            unreadable.append(item)
    if unreadable:
        raise KeyProblem(
            f"the app's key ({where}) does not open {len(unreadable)} of {len(held.sealed)} "
            f"sealed secrets ({_accounts(unreadable)}): it is not the key they were sealed "
            "with. Restore that key (or list it in web.previous_secret_keys); without it, run "
            "`assistant keys reset` and reconnect those accounts"
        )
    if held.links and not held.sealed:
        genuine = 0
        for token in held.links:
            try:
                verify(keys, "feedback", token, now)
                genuine += 1
            except (ExpiredToken, WrongPurpose):
                genuine += 1  # signed with one of our keys
            except TokenError:
                pass
        if not genuine:
            raise KeyProblem(
                f"the app's key ({where}) did not sign the {len(held.links)} feedback links "
                "already sent: it is not the key they were signed with. Restore that key (or "
                "list it in web.previous_secret_keys); without it, run `assistant keys reset` "
                "(those links will stop working)"
            )


def _what(held: Inventory) -> str:
    parts = []
    if held.sealed:
        parts.append(f"{len(held.sealed)} sealed secret(s) of {_accounts(held.sealed)}")
    if held.links:
        parts.append(f"{len(held.links)} feedback link(s) already sent")
    return " and ".join(parts)


# ---------------------------------------------------------------------- rotate, reset


@dataclass(frozen=True)
class RotateReport:
    resealed: int
    accounts: int
    retired: int  # retired keys kept (they verify links and open nothing sealed any more)
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return {"resealed": self.resealed, "accounts": self.accounts,
                "retired_keys": self.retired, "key": self.fingerprint}  # fmt: skip


def rotate(settings: Settings, engine: Engine, now: datetime) -> RotateReport:
    """A new key for the key file; every sealed secret re-sealed with it in one transaction;
    the old key kept as a retired key (links signed with it work until they expire)."""
    if from_settings(settings):
        raise KeyProblem(
            "the app's key is web.secret_key in the settings: put a new value there and the "
            "old one in web.previous_secret_keys, then run `assistant keys reseal`"
        )
    old = all_keys(settings, create=False)
    if not old:
        raise KeyProblem(
            f"there is no key to rotate at {key_path(settings)}: restore it from a backup, or "
            "run `assistant keys reset`"
        )
    new = random.token_urlsafe(48)
    ring = Keyring([new, *old])
    with Session(engine) as session, session.begin():
        resealed, accounts = _reseal(session, ring)
        # The old key is kept before the new one replaces it: if anything below fails the
        # transaction rolls back and the old key still opens every secret.
        retired = retired_path(settings)
        before = retired.read_text(encoding="utf-8") if retired.exists() else ""
        write_private(retired, before + f"{now.isoformat(timespec='seconds')} {old[0]}\n")
        write_private(key_path(settings), new)
    return RotateReport(resealed, accounts, len(retired_keys(settings)), fingerprint(new))


def reseal(settings: Settings, engine: Engine) -> RotateReport:
    """Every sealed secret sealed again with the current key (after the key in the settings
    changed, its predecessor listed in web.previous_secret_keys)."""
    keys = all_keys(settings)
    with Session(engine) as session, session.begin():
        resealed, accounts = _reseal(session, Keyring(keys))
    return RotateReport(resealed, accounts, len(keys) - 1, fingerprint(keys[0]))


def _reseal(session: Session, ring: Keyring) -> tuple[int, int]:
    from assistant.store.tables import Account

    items = sealed_secrets(session)
    by_account: dict[int, list[Sealed]] = {}
    for item in items:
        by_account.setdefault(item.account_id, []).append(item)
    unreadable = []
    for account_id, found in by_account.items():
        account = session.get(Account, account_id)
        assert account is not None
        conf: Any = account.settings
        for item in found:
            try:
                conf = _replace(conf, item.path, {"encrypted": ring.rotate(item.token)})
            except UnreadableSecret:
                unreadable.append(item)
        account.settings = conf
    if unreadable:
        raise KeyProblem(
            f"{len(unreadable)} sealed secrets ({_accounts(unreadable)}) do not open with the "
            "app's key, so they cannot be sealed again; nothing was changed. Restore the key "
            "they were sealed with, or run `assistant keys reset` and reconnect those accounts"
        )
    session.flush()
    return len(items), len(by_account)


@dataclass(frozen=True)
class ResetReport:
    dropped: int
    accounts: list[int]
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return {"dropped_secrets": self.dropped, "accounts_to_reconnect": self.accounts,
                "new_key": self.created}  # fmt: skip


def reset(settings: Settings, engine: Engine) -> ResetReport:
    """The operator gives up on a lost key: a key is made if there is none, and the secrets
    it does not open are removed; their accounts say "reconnect" until they are."""
    from assistant.store.tables import Account
    from config.sealed import UNREADABLE

    created = not from_settings(settings) and read_key(key_path(settings)) is None
    ring = Keyring(all_keys(settings))
    dropped: list[Sealed] = []
    with Session(engine) as session, session.begin():
        for item in sealed_secrets(session):
            try:
                ring.open(item.token)
            except UnreadableSecret:
                dropped.append(item)
        for account_id in sorted({d.account_id for d in dropped}):
            account = session.get(Account, account_id)
            assert account is not None
            conf: Any = account.settings
            for item in (d for d in dropped if d.account_id == account_id):
                conf = _replace(conf, item.path, None)
            account.settings = {k: v for k, v in conf.items() if v is not None}
            account.state = "error"
            account.last_error = UNREADABLE
    return ResetReport(len(dropped), sorted({d.account_id for d in dropped}), created)
