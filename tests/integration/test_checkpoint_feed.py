"""The signed ICS feed of a pair's checkpoints: stable UIDs, follows the task, refuses forgeries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from assistant.bootstrap import Service
from assistant.entrypoints.web.ics import routes
from assistant.services import delegation
from assistant.services.checkpoint_feed import feed_url
from assistant.services.pairs import add_pair
from assistant.store.db import UnitOfWork
from config.settings import Settings
from tests.support.deps import deps_for

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.fixture
def svc(uow: UnitOfWork, tmp_path: Path) -> Service:
    s = Service(settings=Settings(data_dir=tmp_path), engine=uow.engine, uow=uow, clock=lambda: NOW)
    for name in ("alex", "blake"):
        add_pair(deps_for(uow, NOW), name=name, manager_email=f"{name}@example.com",
                 assistant_email=f"pa-{name}@example.com", timezone="Europe/Berlin")  # fmt: skip
    return s


def events(client: TestClient, url: str) -> dict[str, icalendar.Event]:
    reply = client.get(url.removeprefix("http://127.0.0.1:8000"))
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/calendar")
    cal = icalendar.Calendar.from_ical(reply.text)
    return {str(e["UID"]): e for e in cal.walk("VEVENT")}


def test_the_feed_follows_the_task_with_stable_uids(svc: Service) -> None:
    client = TestClient(Starlette(routes=routes(svc)))
    task = delegation.create_task(svc, pair="alex", title="Board pack", delegate="",
                                  term_start=NOW, deadline=NOW + timedelta(days=4))  # fmt: skip
    url = feed_url(svc, "alex")
    first = events(client, url)
    assert len(first) == 2
    assert {str(e["SUMMARY"]).split(":")[0] for e in first.values()} == {"Red Line", "Dead Line, acceptance"}
    assert all("/feedback/" in str(e["DESCRIPTION"]) for e in first.values())
    delegation.update_task(svc, task.id, deadline=NOW + timedelta(days=6))
    moved = events(client, url)
    assert set(moved) == set(first), "same UIDs: subscribers see updates, not duplicates"
    assert any(moved[u]["DTSTART"].dt != first[u]["DTSTART"].dt for u in first)
    delegation.cancel_task(svc, task.id)
    assert events(client, url) == {}
    # Another pair's feed holds none of alex's tasks; a forged token gets nothing.
    delegation.create_task(svc, pair="alex", title="Visa", delegate="", term_start=NOW,
                           deadline=NOW + timedelta(days=2))  # fmt: skip
    assert events(client, feed_url(svc, "blake")) == {}
    token = url.rsplit("/", 1)[1].removesuffix(".ics")
    assert client.get(f"/ics/{token[:-2]}xx.ics").status_code == 404
