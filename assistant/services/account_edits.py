"""Changing accounts after they are added: editing their settings (checked as adding
them is), disabling and enabling them, removing them.

A disabled account (``Account.disabled``) is not polled, synced or pushed, and not
counted as unhealthy; its snapshots stay. Removing an account takes what was synced from
it (the store's cascade); it is refused while delegated tasks have checkpoint events
written into its calendar, unless the person confirmed (``force``): those events stay in
the calendar and are no longer moved or deleted.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from assistant.services.accounts import keyring_for, seal_url_credentials
from assistant.services.pairs import (
    AccountView,
    NotFoundError,
    check_locations,
    set_account_disabled,
    update_account_settings,
)
from assistant.services.push import drop_push
from assistant.store.tables import Account, Checkpoint

if TYPE_CHECKING:
    from assistant.services.deps import Deps
    from connectors.netguard import NetPolicy

log = logging.getLogger(__name__)


def edit_account(
    deps: Deps,
    account_id: int,
    changes: dict[str, Any],
    *,
    removed: Sequence[str] = (),
    name: str = "",
    pair_id: int | None = None,
    guard: NetPolicy | None = None,
) -> AccountView:
    """Change some settings of an account (``removed``: keys to drop), validated as
    adding it is: the merged settings through the provider's model (``InvalidSettings``
    names each field) and, when a user edits it (``guard``: the web app), its addresses
    against that policy; a user may change only the password of an account the operator
    added (it may reach local files and private hosts).
    Secrets in ``changes`` are references; a password written into an address is split
    out and sealed, as when adding. Changed credentials unpark the account."""
    from connectors.netguard import OPERATOR_KEY
    from connectors.registry import read_settings
    from connectors.settings import Adding

    with deps.uow.read() as session:
        row = session.get(Account, account_id)
        if row is None or (pair_id is not None and row.pair_id != pair_id):
            raise NotFoundError(f"no account {account_id}")
        provider, stored = row.provider, dict(row.settings)
    changes = {k: v for k, v in changes.items() if k != OPERATOR_KEY}
    by_operator = bool(stored.get(OPERATOR_KEY))
    if guard is not None and by_operator and (set(changes) | set(removed)) - {"password"}:
        raise ValueError("the operator added this account: its settings other than the "
                         "password are changed with `assistant account edit`")  # fmt: skip
    url_password = seal_url_credentials(deps.settings, provider, changes)
    if url_password and "password" not in changes:
        changes["password"] = keyring_for(deps.settings).seal(url_password)
    merged = {k: v for k, v in stored.items() if k not in removed} | changes
    policy = None if by_operator else guard
    normal = read_settings(provider, merged, Adding(policy)).stored()
    changes = {k: normal.get(k, v) for k, v in changes.items()}  # "993" stored as 993
    if policy is not None:
        check_locations(provider, merged, policy.for_account({}))
    return update_account_settings(
        deps, account_id, changes, pair_id=pair_id, removed=tuple(removed), name=name
    )


class AccountInUse(ValueError):
    """Removing the account would orphan checkpoint events written into its calendar."""

    def __init__(self, account_id: int, written: int) -> None:
        self.account_id = account_id
        self.written = written
        super().__init__(
            f"account {account_id} holds {written} checkpoint event(s) of delegated tasks; "
            "removed, they stay in the calendar and are no longer moved or deleted"
        )


@dataclass(frozen=True, slots=True)
class Removed:
    id: int
    name: str
    written_checkpoints: int  # left in the calendar (removed with ``force``)
    push_left: bool  # a push subscription could not be stopped (it expires by itself)


def written_checkpoints(deps: Deps, account_id: int) -> int:
    """Checkpoint events of delegated tasks written into this account's calendar."""
    with deps.uow.read() as session:
        return int(
            session.scalar(
                select(func.count(Checkpoint.id)).where(
                    Checkpoint.account_id == account_id, Checkpoint.state == "written"
                )
            )
            or 0
        )


def remove_account(
    deps: Deps, account_id: int, *, pair_id: int | None = None, force: bool = False
) -> Removed:
    """Remove an account with what was synced from it (snapshots, resources: the store's
    cascade; messages and checkpoints keep their rows without it). Refused
    (``AccountInUse``) when delegated tasks wrote checkpoint events into its calendar,
    unless ``force``. Its push subscription is stopped first, if it can be."""
    with deps.uow.read() as session:
        row = session.get(Account, account_id)
        if row is None or (pair_id is not None and row.pair_id != pair_id):
            raise NotFoundError(f"no account {account_id}")
        name, has_push = row.name, bool(row.sync_state.get("push"))
    written = written_checkpoints(deps, account_id)
    if written and not force:
        raise AccountInUse(account_id, written)
    push_left = False
    if has_push:
        try:
            drop_push(deps, account_id)
        except Exception as exc:  # the provider's side: it expires by itself
            push_left = True
            log.warning("account %s: push subscription not stopped (%s)", account_id,
                        type(exc).__name__)  # fmt: skip
    with deps.uow.begin() as session:
        session.execute(delete(Account).where(Account.id == account_id))
    return Removed(account_id, name, written, push_left)


def set_disabled(
    deps: Deps, account_id: int, disabled: bool, *, pair_id: int | None = None
) -> AccountView:
    """Disable an account (its push subscription stopped, if it can be) or enable it."""
    view = set_account_disabled(deps, account_id, disabled, pair_id=pair_id)
    if disabled:
        with contextlib.suppress(Exception):  # the upkeep drops it later (push.accounts_due)
            drop_push(deps, account_id)
    return view
