"""Logging in and out, sessions that expire, CSRF, cookie flags, email login links."""

from __future__ import annotations

import re

from sqlalchemy import select

from assistant.store.tables import OutboxEntry
from tests.support.web import PASSWORD, World, login, login_csrf, world_fixture  # noqa: F401


def test_log_in_see_own_pair_and_log_out(world: World) -> None:
    client = world.client()
    assert client.get("/").status_code == 303  # to /login
    token = login(client, "sam@alpha.example")
    home = client.get("/")
    assert home.status_code == 200
    assert "alpha" in home.text and "bravo" not in home.text
    r = client.post("/logout", data={"csrf_token": token})
    assert r.status_code == 303
    assert client.get("/").headers["location"].startswith("/login")
    assert client.get("/api/me").status_code == 401


def test_wrong_password_and_unknown_user_are_refused_alike(world: World) -> None:
    client = world.client()
    for email, password in [
        ("sam@alpha.example", "wrong password!"),
        ("nobody@x.example", PASSWORD),
    ]:
        token = login_csrf(client)
        r = client.post("/login", data={"csrf_token": token, "email": email, "password": password})
        assert r.status_code == 401
        assert "Wrong email or password" in r.text
        assert "ea_session" not in r.headers.get("set-cookie", "")
    assert client.get("/api/me").status_code == 401
    api = client.post(
        "/api/login", json={"email": "sam@alpha.example", "password": "nope nope nope"}
    )
    assert api.status_code == 401


def test_session_expires_after_its_lifetime_and_when_idle(world: World) -> None:
    client = world.client()
    login(client, "sam@alpha.example")
    for _ in range(12):  # active every 59 minutes: the idle limit never bites...
        world.clock.advance(minutes=59)
        assert client.get("/api/me").status_code == 200
    world.clock.advance(minutes=13)  # ...but 12 hours after logging in the session is over
    assert client.get("/api/me").status_code == 401
    assert client.get(f"/pairs/{world.alpha.id}/agenda").status_code == 303

    login(client, "sam@alpha.example")
    world.clock.advance(minutes=121)  # idle longer than session_idle_minutes
    assert client.get("/api/me").status_code == 401


def test_cookie_flags(world: World) -> None:
    client = world.client()
    token = login_csrf(client)
    r = client.post(
        "/login", data={"csrf_token": token, "email": "sam@alpha.example", "password": PASSWORD}
    )
    cookie = r.headers["set-cookie"]
    assert "ea_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie and "Max-Age=43200" in cookie

    secure = world.app(public_url="https://assistant.example.com")
    from starlette.testclient import TestClient

    c2 = TestClient(secure, base_url="https://testserver", follow_redirects=False)
    token = login_csrf(c2)
    r = c2.post(
        "/login", data={"csrf_token": token, "email": "sam@alpha.example", "password": PASSWORD}
    )
    assert r.status_code == 303
    assert "Secure" in r.headers["set-cookie"]


def test_csrf_missing_or_wrong_is_refused(world: World) -> None:
    client = world.client()
    # the login form itself
    login_csrf(client)
    r = client.post("/login", data={"email": "sam@alpha.example", "password": PASSWORD})
    assert r.status_code == 403
    r = client.post(
        "/login", data={"csrf_token": "forged", "email": "sam@alpha.example", "password": PASSWORD}
    )
    assert r.status_code == 403
    # logged-in forms and API calls
    token = login(client, "alex@alpha.example")
    url = f"/pairs/{world.alpha.id}/priorities"
    rule = {"kind": "keyword", "pattern": "board", "level": "high"}
    assert client.post(url, data=rule).status_code == 403
    assert client.post(url, data=rule | {"csrf_token": "x" + token}).status_code == 403
    api = f"/api/pairs/{world.alpha.id}/priorities"
    assert client.post(api, json=rule).status_code == 403
    assert client.post(api, json=rule, headers={"X-CSRF-Token": token[:-1]}).status_code == 403
    assert client.post("/logout", data={}).status_code == 403
    assert "board" not in client.get(api).text
    # the right token works
    assert client.post(url, data=rule | {"csrf_token": token}).status_code == 303
    assert (
        client.post(
            api, json=rule | {"pattern": "budget"}, headers={"X-CSRF-Token": token}
        ).status_code
        == 201
    )
    patterns = [r["pattern"] for r in client.get(api).json()["rules"]]
    assert "board" in patterns and "budget" in patterns


def test_one_time_email_link(world: World) -> None:
    client = world.client()
    token = login_csrf(client)
    r = client.post("/login/link", data={"csrf_token": token, "email": "sam@alpha.example"})
    assert r.status_code == 200
    token = login_csrf(client)
    client.post("/login/link", data={"csrf_token": token, "email": "nobody@x.example"})
    with world.svc.uow.read() as s:
        mails = list(
            s.scalars(select(OutboxEntry).where(OutboxEntry.idempotency_key.like("login-link:%")))
        )
    assert [m.recipient for m in mails] == ["sam@alpha.example"]
    link = re.search(r"http://testserver(/login/link/\S+)", mails[0].body_text)
    assert link
    form = client.get(link.group(1))  # a GET (a mail scanner) does not log in
    assert form.status_code == 200
    assert client.get("/api/me").status_code == 401
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    r = client.post(link.group(1), data={"csrf_token": token})
    assert r.status_code == 303
    assert client.get("/api/me").json()["email"] == "sam@alpha.example"
    # spent: a second use is refused
    other = world.client()
    token = login_csrf(other)
    assert other.post(link.group(1), data={"csrf_token": token}).status_code == 400
    # and an expired one too
    token = login_csrf(other)
    other.post("/login/link", data={"csrf_token": token, "email": "bob@bravo.example"})
    with world.svc.uow.read() as s:
        body = s.scalars(
            select(OutboxEntry.body_text).where(
                OutboxEntry.recipient == "bob@bravo.example",
                OutboxEntry.idempotency_key.like("login-link:%"),
            )
        ).one()
    path = re.search(r"(/login/link/\S+)", body).group(1)  # type: ignore[union-attr]
    world.clock.advance(minutes=16)
    token = login_csrf(other)
    assert other.post(path, data={"csrf_token": token}).status_code == 400


def test_login_redirects_only_within_the_site(world: World) -> None:
    for target, expected in [("/pairs/1/tasks", "/pairs/1/tasks"), ("https://evil.example/", "/"),
                             ("//evil.example", "/"), ("/\\evil.example", "/")]:  # fmt: skip
        client = world.client()
        token = login_csrf(client)
        r = client.post("/login", data={"csrf_token": token, "email": "sam@alpha.example",
                                        "password": PASSWORD, "next": target})  # fmt: skip
        assert r.headers["location"] == expected
