"""The push entry of an account, kept in ``Account.sync_state["push"]`` beside the sync
service's keys: read, and written only in one locked transaction (so that neither side loses
the other's keys); a failure is recorded on it with the time of the next attempt.

Used by ``assistant.services.push``; nothing here talks to a provider.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from assistant.store.tables import Account

if TYPE_CHECKING:
    from assistant.store.db import UnitOfWork

log = logging.getLogger("assistant.services.push")  # the push service's one logger

RETRY_FIRST = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=1)


def load_entry(
    uow: UnitOfWork, account_id: int
) -> tuple[str, Mapping[str, Any], Mapping[str, Any]] | None:
    """(provider, settings, stored push entry) of an account, or None."""
    with uow.read() as session:
        account = session.get(Account, account_id)
        if account is None:
            return None
        return account.provider, dict(account.settings), dict(push_of(account.sync_state))


@contextmanager
def locked_account(uow: UnitOfWork, account_id: int) -> Iterator[Account | None]:
    """The account row, locked for update, in a transaction that commits on success."""
    with uow.begin() as session:
        stmt = select(Account).where(Account.id == account_id).with_for_update()
        yield session.scalars(stmt).one_or_none()


def store_entry(
    uow: UnitOfWork,
    account_id: int,
    base_id: str,
    entry: dict[str, Any],
    *,
    pending_id: str | None = None,
) -> bool:
    """Store ``entry`` if the stored one is still ``base_id`` (and ``pending_id`` ours)."""
    with locked_account(uow, account_id) as account:
        if account is None:
            return False
        push = push_of(account.sync_state)
        if str(push.get("id") or "") != base_id:
            return False
        pending = push.get("pending")
        if pending_id is not None and (
            not isinstance(pending, Mapping) or pending.get("id") != pending_id
        ):
            return False
        if push.get("stale"):
            entry = {**entry, "stale": push["stale"]}
        account.sync_state = {**account.sync_state, "push": entry}
        return True


def set_pending(
    uow: UnitOfWork, account_id: int, base_id: str, channel_id: str, token: str
) -> bool:
    with locked_account(uow, account_id) as account:
        if account is None:
            return False
        push = dict(push_of(account.sync_state))
        if str(push.get("id") or "") != base_id:
            return False
        push["pending"] = {"id": channel_id, "secret": token}
        account.sync_state = {**account.sync_state, "push": push}
        return True


def clear_pending(uow: UnitOfWork, account_id: int, channel_id: str) -> None:
    with locked_account(uow, account_id) as account:
        if account is None:
            return
        push = dict(push_of(account.sync_state))
        pending = push.get("pending")
        if isinstance(pending, Mapping) and pending.get("id") == channel_id:
            push.pop("pending")
            account.sync_state = {**account.sync_state, "push": push}


def record_failure(uow: UnitOfWork, account_id: int, exc: Exception, now: datetime) -> None:
    """Note the failure on the entry; the upkeep tries again after a growing pause."""
    log.warning("push for account %s: %s", account_id, exc)
    with locked_account(uow, account_id) as account:
        if account is None:
            return
        push = dict(push_of(account.sync_state))
        failures = int(push.get("failures") or 0) + 1
        pause = min(RETRY_MAX, RETRY_FIRST * 2 ** min(failures - 1, 16))
        push.update(failures=failures, error=str(exc)[:300], retry_at=(now + pause).isoformat())
        account.sync_state = {**account.sync_state, "push": push}


def push_of(state: Any) -> Mapping[str, Any]:
    push = state.get("push") if isinstance(state, Mapping) else None
    return push if isinstance(push, Mapping) else {}


def stored_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
