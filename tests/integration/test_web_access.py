"""Access: one pair's people never read or change another pair's data, through any route.

The routes are enumerated from the app itself, so a route added later is tried too.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select
from starlette.routing import Route
from starlette.testclient import TestClient

from assistant.services.pair_settings import pair_settings
from assistant.store.tables import Account, DelegatedTask, OutboxEntry, PriorityRule
from tests.support.web import World, login, world_fixture  # noqa: F401

PUBLIC = {
    "/health",
    "/api/openapi.json",
    "/login",
    "/login/link",
    "/login/link/{token}",
    "/api/login",
    "/feedback/{token}",
    "/ics/{token}.ics",  # no login: the signed feed URL is the authority (test_checkpoint_feed.py)  # no login: the signed link is the authority (tests/integration/test_feedback.py)
    # Provider webhooks: no login; each notification carries its subscription's clientState
    # (Graph) or its channel's token (Google), forged ones get 403 (test_push_service.py).
    "/push/graph",
    "/push/google",
}
ENDS_SESSION = {"/logout", "/api/logout"}

# A body each unsafe route would accept, so that only the access check can refuse it.
BODIES: dict[str, dict[str, Any]] = {
    "priorities": {"kind": "keyword", "pattern": "intruder", "level": "high"},
    "tasks": {"title": "intruder task", "deadline": "2026-12-10T17:00"},
    "settings": {"sla_minutes": 5, "timezone": "UTC"},
    # a complete account form, and a new password for an account's reconnect
    "accounts": {"provider": "ics", "name": "intruder feed", "location": "https://x.example/f.ics"},
    "reconnect": {"password": "intruder password"},
    "connect": {"part": "calendar"},
}


def routes(app: Any) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:
        assert isinstance(route, Route), route
        for method in sorted(route.methods or {"GET"}):
            if method != "HEAD":
                out.append((method, route.path))
    return out


def fill(path: str, ids: dict[str, int]) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: str(ids[m.group(1)]), path)


def call(client: TestClient, method: str, path: str, token: str) -> Any:
    kind = next((k for k in BODIES if path.rstrip("/").endswith(k)), "")
    body = BODIES.get(kind, {})
    if path.startswith("/api/"):
        return client.request(method, path, json=body, headers={"X-CSRF-Token": token})
    if method == "GET":
        return client.get(path)
    data: dict[str, Any] = {"csrf_token": token, **body}
    if kind == "settings":
        data = {
            "csrf_token": token,
            "timezone": "UTC",
            "sla_minutes": "5",
            "channels": "smtp",
            "locale": "en",
            "hours_mon": "09:00-17:00",
        }
    return client.request(method, path, data=data)


def bravo_account(world: World) -> int:
    with world.svc.uow.read() as s:
        found = s.scalars(select(Account.id).where(Account.pair_id == world.bravo.id)).first()
    assert found is not None
    return found


def bravo_state(world: World) -> tuple[Any, ...]:
    with world.svc.uow.read() as s:
        rows = (
            s.get(OutboxEntry, world.bravo.entry_id).state,  # type: ignore[union-attr]
            sorted(
                s.scalars(
                    select(PriorityRule.pattern).where(PriorityRule.pair_id == world.bravo.id)
                )
            ),
            sorted(
                s.scalars(
                    select(DelegatedTask.title).where(DelegatedTask.pair_id == world.bravo.id)
                )
            ),
            sorted(
                (a.name, a.state, repr(a.settings))
                for a in s.scalars(select(Account).where(Account.pair_id == world.bravo.id))
            ),
        )
    return (*rows, pair_settings(world.svc, world.bravo.id))


@pytest.mark.parametrize("who", ["sam@alpha.example", "alex@alpha.example"])
def test_no_route_reveals_or_changes_another_pairs_data(world: World, who: str) -> None:
    app = world.app()
    client = TestClient(app, follow_redirects=False)
    token = login(client, who)
    before = bravo_state(world)
    bravo = world.bravo
    other_ids = {
        "pair_id": bravo.id,
        "task_id": bravo.task_id,
        "rule_id": bravo.rule_id,
        "entry_id": bravo.entry_id,
        "account_id": bravo_account(world),
    }
    # the other pair's ids under one's own pair, too
    mixed = other_ids | {"pair_id": world.alpha.id}
    tried = 0
    for method, template in routes(app):
        if template in PUBLIC or template in ENDS_SESSION:
            continue
        variants = [other_ids, mixed] if "{pair_id" in template else [other_ids]
        for ids in variants:
            if ids is mixed and template.count("{") == 1:
                continue  # nothing but the own pair: allowed, checked below for leaks only
            path = fill(template, ids)
            r = call(client, method, path, token)
            tried += 1
            for secret in [*bravo.secrets, "bravo"]:
                assert secret.lower() not in r.text.lower(), (method, path, r.status_code)
            if "{pair_id" in template:
                assert r.status_code in (403, 404), (method, path, r.status_code, r.text[:300])
        # routes with the own pair only (and no other id) must not leak either
        if "{pair_id" in template and template.count("{") == 1 and method == "GET":
            r = call(client, method, fill(template, mixed), token)
            assert r.status_code in (200, 303), (template, r.status_code)
            for secret in bravo.secrets:
                assert secret.lower() not in r.text.lower(), template
    assert tried > 30
    assert bravo_state(world) == before
    # still logged in, and one's own pair still readable
    assert client.get(f"/api/pairs/{world.alpha.id}/tasks").status_code == 200


def test_agency_admin_sees_only_their_organisations_pairs(world: World) -> None:
    client = TestClient(world.app(), follow_redirects=False)
    login(client, "ada@agency.example")
    assert [p["name"] for p in client.get("/api/pairs").json()] == ["bravo"]
    assert client.get(f"/api/pairs/{world.bravo.id}/tasks").status_code == 200
    for path in ("agenda", "changes", "tasks", "latency", "priorities", "accounts", "settings"):
        assert client.get(f"/api/pairs/{world.alpha.id}/{path}").status_code == 404
        assert client.get(f"/pairs/{world.alpha.id}/{path}").status_code == 404


def test_private_event_is_busy_time_to_the_assistant(world: World) -> None:
    a = world.alpha
    doctor, clinic = a.secrets[1], a.secrets[2]
    assistant = TestClient(world.app(), follow_redirects=False)
    login(assistant, "sam@alpha.example")
    for path in (
        f"/pairs/{a.id}/agenda",
        f"/pairs/{a.id}/agenda?view=week",
        f"/api/pairs/{a.id}/agenda?days=7",
    ):
        r = assistant.get(path)
        assert r.status_code == 200
        assert doctor not in r.text and clinic not in r.text
        assert "Busy (private)" in r.text
    event = next(
        e
        for d in assistant.get(f"/api/pairs/{a.id}/agenda").json()["days"]
        for e in d["events"]
        if e["uid"] == "alpha-doctor"
    )
    assert event["start"].startswith("2026-11-24T13:00") and event["busy"]

    manager = TestClient(world.app(), follow_redirects=False)
    token = login(manager, "alex@alpha.example")
    assert doctor in manager.get(f"/pairs/{a.id}/agenda").text
    # the manager allows details: now the assistant sees them
    r = manager.put(
        f"/api/pairs/{a.id}/settings",
        json={"share_private_details": True},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 200 and r.json()["share_private_details"] is True
    assert doctor in assistant.get(f"/pairs/{a.id}/agenda").text


def test_assistant_may_not_share_private_details_or_edit_by_default(world: World) -> None:
    a = world.alpha
    client = TestClient(world.app(), follow_redirects=False)
    token = login(client, "sam@alpha.example")
    h = {"X-CSRF-Token": token}
    assert (
        client.put(
            f"/api/pairs/{a.id}/settings", json={"share_private_details": True}, headers=h
        ).status_code
        == 403
    )
    assert (
        client.post(
            f"/api/pairs/{a.id}/priorities", json=BODIES["priorities"], headers=h
        ).status_code
        == 403
    )
    assert (
        client.post(f"/api/pairs/{a.id}/tasks", json=BODIES["tasks"], headers=h).status_code == 403
    )
    page = client.get(f"/pairs/{a.id}/priorities")
    assert 'id="read-only"' in page.text and "add-priority" not in page.text
    # retrying a dead notification of one's own pair is allowed to every member
    assert client.post(f"/api/pairs/{a.id}/outbox/{a.entry_id}/retry", headers=h).status_code == 200


def test_user_service_rules(world: World) -> None:
    from assistant.services.users import add_user, list_users, password_matches, set_password
    from assistant.store.tables import User

    uow = world.svc.uow
    with pytest.raises(ValueError, match="role"):
        add_user(world.svc, email="x@x.example", role="root")
    with pytest.raises(ValueError, match="at least"):
        add_user(world.svc, email="x@x.example", role="manager", password="short")
    add_user(
        world.svc,
        email="Lone@Admin.example",
        role="admin",
        password="long enough pw",
    )
    with pytest.raises(ValueError, match="exists"):
        add_user(world.svc, email="lone@admin.example", role="admin")
    set_password(world.svc, "lone@admin.example", "another long one")
    with uow.read() as s:
        stored = s.scalars(
            select(User.password_hash).where(User.email == "lone@admin.example")
        ).one()
    assert stored.startswith("$argon2id$") and password_matches(stored, "another long one")
    assert not password_matches(stored, "long enough pw")
    users = {u.email: u for u in list_users(world.svc)}
    assert users["sam@alpha.example"].pairs == ("alpha:assistant",)
    # an admin of no organisation sees no pair at all
    client = TestClient(world.app(), follow_redirects=False)
    login(client, "lone@admin.example", "another long one")
    assert client.get("/api/pairs").json() == []
    assert client.get(f"/api/pairs/{world.alpha.id}/agenda").status_code == 404
