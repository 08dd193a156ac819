"""Cross-site requests: every state-changing request must come from the site itself.

On top of the CSRF token (tests/integration/test_web_auth.py), an unsafe request with an
``Origin`` of another site (or ``null``) or ``Sec-Fetch-Site: cross-site`` is refused
with 403, and JSON endpoints take only ``application/json`` (415), so that a page on
another site can neither sign a victim in as the attacker (login CSRF) nor act in their
session. The routes are enumerated from the app: a route added later is covered.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from starlette.testclient import TestClient

from assistant.services.pair_settings import pair_settings
from assistant.store.tables import (
    Account,
    DelegatedTask,
    OutboxEntry,
    PriorityRule,
    User,
    WebSession,
)
from tests.security.web_routes import (
    CROSS_SITE,
    ENDS_SESSION,
    PUBLIC,
    body_for,
    call,
    fill,
    unsafe_routes,
)
from tests.support.web import PASSWORD, World, login, login_csrf, world_fixture  # noqa: F401

CROSS_SITE_HEADERS: list[dict[str, str]] = [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},  # sandboxed frames, data: URLs
    {"Origin": "http://testserver.evil.example"},
    {"Origin": "http://testserver:8080"},  # another port is another origin
    {"Origin": "https://testserver"},  # and another scheme
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://testserver", "Sec-Fetch-Site": "cross-site"},
]
SAME_SITE_HEADERS: list[dict[str, str]] = [
    {},  # not a browser: the token alone
    {"Origin": "http://testserver"},
    {"Origin": "HTTP://TESTSERVER:80", "Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "none"},  # typed into the address bar, a bookmark
]


def ids_of(world: World) -> dict[str, int | str]:
    with world.svc.uow.read() as s:
        account = s.scalars(select(Account.id).where(Account.pair_id == world.alpha.id)).first()
    assert account is not None
    a = world.alpha
    return {
        "pair_id": a.id,
        "task_id": a.task_id,
        "rule_id": a.rule_id,
        "entry_id": a.entry_id,
        "account_id": account,
        "token": "not-a-real-token",
    }


def state(world: World) -> tuple[Any, ...]:
    """Everything an unsafe route of the alpha pair or its users could change."""
    a = world.alpha.id
    with world.svc.uow.read() as s:
        return (
            s.get(OutboxEntry, world.alpha.entry_id).state,  # type: ignore[union-attr]
            sorted(s.scalars(select(PriorityRule.pattern).where(PriorityRule.pair_id == a))),
            sorted(s.scalars(select(DelegatedTask.title).where(DelegatedTask.pair_id == a))),
            sorted(
                (x.name, x.state, repr(x.settings))
                for x in s.scalars(select(Account).where(Account.pair_id == a))
            ),
            sorted((u.email, u.password_hash, u.locale, u.active) for u in s.scalars(select(User))),
            s.scalar(select(func.count()).select_from(WebSession)),
            pair_settings(world.svc, a),
        )


def test_login_api_takes_json_only(world: World) -> None:
    """The finding: a cross-site text/plain body signed anyone in as the attacker."""
    client = world.client()
    creds = {"email": "sam@alpha.example", "password": PASSWORD}
    for kwargs in (
        {"content": json.dumps(creds), "headers": {"Content-Type": "text/plain"}},
        {"content": json.dumps(creds), "headers": {"Content-Type": "text/plain;charset=UTF-8"}},
        {"data": creds},  # a plain HTML form
        {"files": {"email": (None, creds["email"]), "password": (None, creds["password"])}},
        {"content": json.dumps(creds), "headers": {"Content-Type": "application/x-json"}},
    ):
        r = client.post("/api/login", **kwargs)
        assert r.status_code == 415, (kwargs, r.status_code, r.text)
        assert "ea_session" not in r.headers.get("set-cookie", "")
        assert client.get("/api/me").status_code == 401
    r = client.post("/api/login", json=creds)
    assert r.status_code == 200 and "ea_session" in r.headers["set-cookie"]


def test_login_from_another_site_is_refused(world: World) -> None:
    creds = {"email": "sam@alpha.example", "password": PASSWORD}
    for headers in CROSS_SITE_HEADERS:
        client = world.client()
        r = client.post("/api/login", json=creds, headers=headers)
        assert r.status_code == 403, (headers, r.status_code)
        assert "ea_session" not in r.headers.get("set-cookie", "")
        token = login_csrf(client)  # the form, with a valid double-submit token
        r = client.post("/login", data={"csrf_token": token, **creds}, headers=headers)
        assert r.status_code == 403, (headers, r.status_code)
        assert client.get("/api/me").status_code == 401
    for headers in SAME_SITE_HEADERS:
        client = world.client()
        assert client.post("/api/login", json=creds, headers=headers).status_code == 200
        client = world.client()
        token = login_csrf(client)
        r = client.post("/login", data={"csrf_token": token, **creds}, headers=headers)
        assert r.status_code == 303, (headers, r.status_code)


def test_no_unsafe_route_takes_a_request_from_another_site(world: World) -> None:
    app = world.app()
    client = TestClient(app, follow_redirects=False)
    token = login(client, "alex@alpha.example")  # the manager: may change everything
    ids = ids_of(world)
    before = state(world)
    tried = 0
    for method, template in unsafe_routes(app):
        if template in CROSS_SITE:
            continue
        path = fill(template, ids)
        for headers in CROSS_SITE_HEADERS:
            r = call(client, method, path, token, headers)
            assert r.status_code == 403, (method, path, headers, r.status_code, r.text[:200])
            tried += 1
    assert tried >= 20 * len(CROSS_SITE_HEADERS)
    assert state(world) == before
    assert client.get("/api/me").status_code == 200  # not even logged out


def test_the_considered_exceptions_take_cross_site_posts(world: World) -> None:
    """Provider webhooks and the signed feedback page are posted to from elsewhere."""
    from assistant.entrypoints.web import csrf

    app = world.app()
    client = TestClient(app, follow_redirects=False)
    ids = ids_of(world)
    unsafe = {template for _, template in unsafe_routes(app)}
    assert set(CROSS_SITE) <= unsafe, "an exception listed for a route that is gone"
    for template in unsafe:
        assert csrf.cross_site_exempt(fill(template, ids)) == (template in CROSS_SITE), template
    for path in ("/feedback/", "/feedback/x/y", "/push/graph/x", "/push", "/feedbackx"):
        assert not csrf.cross_site_exempt(path), path
    for template in CROSS_SITE:
        r = client.post(fill(template, ids), json={}, headers=CROSS_SITE_HEADERS[0])
        assert "another site" not in r.text, template


def test_same_site_requests_pass(world: World) -> None:
    client = world.client()
    token = login(client, "alex@alpha.example")
    api = f"/api/pairs/{world.alpha.id}/priorities"
    page = f"/pairs/{world.alpha.id}/priorities"
    for n, headers in enumerate(SAME_SITE_HEADERS):
        rule = {"kind": "keyword", "pattern": f"api-{n}", "level": "high"}
        r = client.post(api, json=rule, headers={"X-CSRF-Token": token, **headers})
        assert r.status_code == 201, (headers, r.text)
        form = {"kind": "keyword", "pattern": f"page-{n}", "level": "high", "csrf_token": token}
        assert client.post(page, data=form, headers=headers).status_code == 303, headers
    assert len(client.get(api).json()["rules"]) == 1 + 2 * len(SAME_SITE_HEADERS)


def test_behind_a_proxy_the_public_url_is_the_origin(world: World) -> None:
    app = world.app(public_url="https://assistant.example.com/")
    creds = {"email": "sam@alpha.example", "password": PASSWORD}
    for origin, status in [
        ("https://assistant.example.com", 200),
        ("https://ASSISTANT.example.com:443", 200),
        ("http://testserver", 403),  # what the app saw behind the proxy: not the site
        ("http://assistant.example.com", 403),
    ]:
        client = TestClient(app, follow_redirects=False)
        r = client.post("/api/login", json=creds, headers={"Origin": origin})
        assert r.status_code == status, origin


def test_every_unsafe_route_needs_the_token(world: World) -> None:
    app = world.app()
    client = TestClient(app, follow_redirects=False)
    token = login(client, "alex@alpha.example")
    ids = ids_of(world)
    before = state(world)
    tried = 0
    for method, template in unsafe_routes(app):
        if template in CROSS_SITE or template == "/api/login":
            continue  # their own authority (PUBLIC); /api/login: JSON only and Origin
        path = fill(template, ids)
        for wrong in ("", "x" + token, token[:-1]):
            r = call(client, method, path, wrong)
            assert r.status_code == 403, (method, path, r.status_code, r.text[:200])
            tried += 1
    assert tried >= 60
    assert state(world) == before
    assert set(PUBLIC) - {t for _, t in unsafe_routes(app)} <= {
        "/health",
        "/api/openapi.json",
        "/ics/{token}.ics",
        "/static/accounts.js",
    }


def test_json_routes_take_application_json_only(world: World) -> None:
    app = world.app()
    client = TestClient(app, follow_redirects=False)
    token = login(client, "alex@alpha.example")
    ids = ids_of(world)
    before = state(world)
    tried = 0
    for method, template in unsafe_routes(app):
        if not template.startswith("/api/") or template in ENDS_SESSION:
            continue
        path = fill(template, ids)
        body = body_for(path)
        h = {"X-CSRF-Token": token}
        for kwargs in (
            {"content": json.dumps(body), "headers": {**h, "Content-Type": "text/plain"}},
            {"data": body or {"x": "1"}, "headers": h},
            {"content": json.dumps(body or {"x": 1}), "headers": h},  # no type at all
        ):
            r = client.request(method, path, **kwargs)
            assert r.status_code == 415, (method, path, kwargs, r.status_code, r.text[:200])
            tried += 1
    assert tried >= 18
    assert state(world) == before
    # the same requests as application/json pass the type check
    r = client.post(
        f"/api/pairs/{world.alpha.id}/priorities",
        content=json.dumps({"kind": "keyword", "pattern": "typed", "level": "high"}),
        headers={"X-CSRF-Token": token, "Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 201
    # a bodiless POST needs no type
    a = world.alpha
    r = client.post(f"/api/pairs/{a.id}/outbox/{a.entry_id}/retry", headers=h)
    assert r.status_code == 200
