"""``assistant doctor``'s push line per account: a missing, unreadable or expired
subscription is a ✗ with the fix; a live one a ✓ (a real store, SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from assistant.entrypoints.cli.doctor import _push
from assistant.services.pairs import add_account, add_pair
from assistant.store.db import UnitOfWork
from assistant.store.tables import Account
from tests.support.deps import deps_for

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_each_push_account_is_a_line_and_a_bad_stored_time_is_no_crash(uow: UnitOfWork) -> None:
    deps = deps_for(uow, NOW)
    add_pair(deps, name="alex", manager_email="alex@example.com", assistant_email="sam@example.com")
    states = {
        "none": {},
        "garbage": {"push": {"id": "sub-1", "expires": "not a time"}},
        "expired": {"push": {"id": "sub-2", "expires": (NOW - timedelta(hours=1)).isoformat()}},
        "live": {"push": {"id": "sub-3", "expires": (NOW + timedelta(days=2)).isoformat()}},
    }
    for name, state in states.items():
        account = add_account(deps, pair="alex", name=name, provider="graph",
                              settings={"user": "alex@example.com"})  # fmt: skip
        with uow.begin() as session:
            row = session.get(Account, account.id)
            assert row is not None
            row.sync_state = state
    checks = {c.name.split()[-1]: c for c in _push(uow, NOW)}
    assert {k: c.ok for k, c in checks.items()} == {
        "none": False, "garbage": False, "expired": False, "live": True,
    }
    assert "no subscription" in checks["garbage"].detail
    assert checks["expired"].detail == "subscription expired at 2026-12-07 11:00 UTC"
    assert "renews" in checks["expired"].fix
    assert checks["live"].detail == "subscribed until 2026-12-09 12:00 UTC"
