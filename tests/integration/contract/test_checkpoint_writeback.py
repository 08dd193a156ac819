"""Delegation checkpoints written to every writable calendar provider (contract backends).

The task's two events land at the planned slots, move in place with the deadline (same
UIDs, never duplicated) and are removed on cancel — through CalDAV (Radicale, Xandikos),
EWS, Graph and Google, each through our connector over real HTTP.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from assistant.bootstrap import Service
from assistant.services import delegation, delegation_views
from assistant.services.pairs import add_account, add_pair
from assistant.store.db import UnitOfWork
from config.settings import Settings
from tests.integration.contract.backend import ContractBackend
from tests.support.deps import deps_for

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # a Monday


def test_checkpoints_follow_the_task_in_every_writable_calendar(
    backend: ContractBackend, sqlite_uow: UnitOfWork, tmp_path: Path
) -> None:
    writer = backend.writer()
    if writer is None:
        pytest.skip(f"{backend.name} is read-only")
    svc = Service(settings=Settings(data_dir=tmp_path), engine=sqlite_uow.engine, uow=sqlite_uow,
                  clock=lambda: NOW)  # fmt: skip
    add_pair(deps_for(sqlite_uow, NOW), name="p", manager_email="alex@example.com",
             assistant_email="sam@example.com", timezone=backend.zone)  # fmt: skip
    # A writable account row (its own settings are not used: the backend's writer is).
    add_account(deps_for(sqlite_uow, NOW), pair="p", name="cal", provider="caldav",
                settings={"url": "http://127.0.0.1:9/unused/"})  # fmt: skip
    task = delegation.create_task(svc, pair="p", title="Board pack", delegate="",
                                  term_start=NOW + timedelta(days=1),
                                  deadline=NOW + timedelta(days=4, hours=8))  # fmt: skip
    first = delegation.reconcile_checkpoints(svc, task.id, writer)
    assert len(first.written) == 2
    view = delegation_views.task_view(svc, task.id)
    uids = {c.kind: c.event_uid for c in view.checkpoints}
    held = {k: writer.get_event(u) for k, u in uids.items()}
    assert all(e is not None and e.own_marker for e in held.values())
    starts = {k: e.start for k, e in held.items() if e is not None}
    planned = {c.kind: datetime.fromisoformat(c.start or "").astimezone(UTC) for c in view.checkpoints}
    assert starts == planned
    # Deadline two days later: both updated in place.
    delegation.update_task(svc, task.id, deadline=NOW + timedelta(days=6, hours=8))
    moved = delegation.reconcile_checkpoints(svc, task.id, writer)
    assert sorted(moved.written) == sorted(uids.values())
    after = {k: writer.get_event(u) for k, u in uids.items()}
    assert all(e is not None for e in after.values())
    assert after["dead_line"] is not None and after["dead_line"].start > starts["dead_line"]
    # Written again: nothing new; cancelled: both gone.
    assert delegation.reconcile_checkpoints(svc, task.id, writer).written == []
    delegation.cancel_task(svc, task.id)
    assert len(delegation.reconcile_checkpoints(svc, task.id, writer).removed) == 2
    assert all(writer.get_event(u) is None for u in uids.values())
