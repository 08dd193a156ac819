"""A world for the web app tests: two pairs with data, users, a clock, a TestClient.

Everything is real: the migrated database (SQLite and PostgreSQL through ``uow``), the
services that create pairs, users, tasks and rules, and the app over Starlette's
TestClient. Rows the sync would write (snapshots, changes, outbox, messages) are
inserted as the sync writes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from assistant.bootstrap import Service
from assistant.entrypoints.web.app import create_app
from assistant.services.delegation import create_task
from assistant.services.pairs import add_account, add_pair
from assistant.services.priorities import add_rule
from assistant.services.users import (
    add_membership,
    add_organisation,
    add_user,
    assign_pair,
    hash_password,
)
from assistant.store.db import UnitOfWork
from assistant.store.tables import (
    ChangeBatch,
    EventSnapshot,
    Message,
    OutboxEntry,
    ScheduleChange,
)
from config.settings import Settings, WebSettings

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # Tuesday, 10:00 in Berlin
PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)  # hashed once: argon2 is slow on purpose


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@dataclass
class Pair:
    id: int
    name: str
    task_id: int = 0
    rule_id: int = 0
    entry_id: int = 0
    secrets: list[str] = field(default_factory=list)  # strings only this pair's people may see


@dataclass
class World:
    svc: Service
    clock: Clock
    alpha: Pair
    bravo: Pair
    tmp: Path

    def app(self, **web: Any) -> Any:
        if web:
            self.svc.settings = self.svc.settings.model_copy(
                update={"web": self.svc.settings.web.model_copy(update=web)}
            )
        return create_app(self.svc)

    def client(self) -> TestClient:
        return TestClient(self.app(), follow_redirects=False)


def login_csrf(client: TestClient) -> str:
    page = client.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def login(client: TestClient, email: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token."""
    token = login_csrf(client)
    r = client.post(
        "/login", data={"csrf_token": token, "email": email, "password": password, "next": "/"}
    )
    assert r.status_code == 303, r.text
    me = client.get("/api/me")
    assert me.status_code == 200
    return str(me.json()["csrf_token"])


def _event(
    account_id: int, uid: str, summary: str, start: datetime, hours: float = 1, **kw: Any
) -> EventSnapshot:
    return EventSnapshot(
        account_id=account_id,
        uid=uid,
        summary=summary,
        start_utc=start,
        end_utc=start + timedelta(hours=hours),
        timezone="Europe/Berlin",
        content_hash=uid,
        seen_at=NOW,
        **kw,
    )


def _seed_pair(svc: Service, name: str, manager: str, assistant: str) -> Pair:
    uow = svc.uow
    pair = add_pair(
        svc,
        name=name,
        manager_email=manager,
        assistant_email=assistant,
        manager_name=name.title() + " Manager",
        timezone="Europe/Berlin",
    )
    account = add_account(
        svc,
        pair=pair.id,
        name=f"{name}-cal",
        provider="ics",
        settings={"url": f"file:///{name}.ics"},
    )
    p = Pair(id=pair.id, name=name)
    title = name.title()
    p.secrets = [
        f"{title} board meeting",
        f"{title} doctor visit",
        f"{title} clinic",
        f"{title} merger talk",
        f"{title} budget question",
        f"{title} task",
    ]
    day = NOW.replace(hour=0)
    with uow.begin() as s:
        s.add(_event(account.id, f"{name}-board", p.secrets[0], day + timedelta(hours=9)))
        s.add(
            _event(
                account.id,
                f"{name}-doctor",
                p.secrets[1],
                day + timedelta(hours=12),
                private=True,
                location=p.secrets[2],
            )
        )
        s.add(
            _event(
                account.id,
                f"{name}-clash",
                "Overlapping call",
                day + timedelta(hours=9, minutes=30),
            )
        )
        s.add(
            _event(
                account.id,
                f"{name}-rl",
                "Red Line: something",
                day + timedelta(hours=15),
                own_marker="1:red_line",
            )
        )
        batch = ChangeBatch(
            pair_id=pair.id, account_id=account.id, detected_at=NOW - timedelta(hours=1)
        )
        s.add(batch)
        s.flush()
        before = {
            "uid": f"{name}-merger",
            "summary": p.secrets[3],
            "start": (day + timedelta(hours=13)).isoformat(),
            "end": (day + timedelta(hours=14)).isoformat(),
            "location": "",
            "private": False,
            "kinds": ["moved"],
        }
        after = before | {
            "start": (day + timedelta(hours=16)).isoformat(),
            "end": (day + timedelta(hours=17)).isoformat(),
        }
        s.add(_event(account.id, f"{name}-merger", p.secrets[3], day + timedelta(hours=16)))
        change = ScheduleChange(
            batch_id=batch.id,
            pair_id=pair.id,
            kind="moved",
            uid=f"{name}-merger",
            summary=p.secrets[3],
            starts_at=day + timedelta(hours=16),
            before=before,
            after=after,
            detected_at=NOW - timedelta(hours=1),
            state="sent",
        )
        s.add(change)
        s.flush()
        entry = OutboxEntry(
            idempotency_key=f"{name}-1",
            pair_id=pair.id,
            channel="smtp",
            recipient=assistant,
            subject=f"Moved: {p.secrets[3]}",
            state="dead",
            attempts=8,
            next_attempt_at=NOW,
            created_at=NOW - timedelta(hours=1),
            last_error="550 mailbox unavailable",
            payload={"change_ids": [change.id]},
        )
        s.add(entry)
        ask = Message(
            pair_id=pair.id,
            message_id=f"<{name}-1@x>",
            subject=p.secrets[4],
            from_addr=assistant,
            to_addrs=[manager],
            sent_at=NOW - timedelta(days=7),
            direction="assistant_to_manager",
        )
        reply = Message(
            pair_id=pair.id,
            message_id=f"<{name}-2@x>",
            in_reply_to=f"<{name}-1@x>",
            subject="Re: " + p.secrets[4],
            from_addr=manager,
            to_addrs=[assistant],
            sent_at=NOW - timedelta(days=7) + timedelta(minutes=20),
            direction="manager_to_assistant",
        )
        waiting = Message(
            pair_id=pair.id,
            message_id=f"<{name}-3@x>",
            subject=f"{title} open question",
            from_addr=assistant,
            to_addrs=[manager],
            sent_at=NOW - timedelta(hours=1),
            direction="assistant_to_manager",
        )
        s.add_all([ask, reply, waiting])
        s.flush()
        p.entry_id = entry.id
    p.rule_id = add_rule(
        svc,
        pair=pair.id,
        kind="person",
        pattern=f"ceo@{name}.example",
        level="high",
        note=f"{title} note",
    )
    task = create_task(
        svc,
        pair=pair.id,
        title=p.secrets[5],
        delegate=assistant,
        term_start=NOW,
        deadline=NOW + timedelta(days=6),
    )
    p.task_id = task.id
    return p


@pytest.fixture(name="world")
def world_fixture(uow: UnitOfWork, tmp_path: Path) -> World:
    clock = Clock(NOW)
    settings = Settings(data_dir=tmp_path, web=WebSettings())
    svc = Service(settings=settings, engine=uow.engine, uow=uow, clock=clock, channels={})
    alpha = _seed_pair(svc, "alpha", "alex@alpha.example", "sam@alpha.example")
    bravo = _seed_pair(svc, "bravo", "bea@bravo.example", "bob@bravo.example")
    add_organisation(svc, "Agency")
    assign_pair(svc, bravo.id, "Agency")
    for email, role, pair, pair_role in [
        ("sam@alpha.example", "assistant", alpha.id, "assistant"),
        ("alex@alpha.example", "manager", alpha.id, "manager"),
        ("bob@bravo.example", "assistant", bravo.id, "assistant"),
    ]:
        add_user(svc, email=email, role=role, password_hash=PASSWORD_HASH)
        add_membership(svc, user=email, pair=pair, role=pair_role)
    add_user(
        svc,
        email="ada@agency.example",
        role="admin",
        organisation="Agency",
        password_hash=PASSWORD_HASH,
    )
    return World(svc=svc, clock=clock, alpha=alpha, bravo=bravo, tmp=tmp_path)
