"""Guessing at the login is throttled: per address, per client, and login links too.

Real app through Starlette's TestClient, real store (SQLite and PostgreSQL), time injected.
"""

from __future__ import annotations

from sqlalchemy import func, select
from starlette.testclient import TestClient

from assistant.entrypoints.web.login_guard import LoginGuard
from assistant.store.tables import LoginAttempt, OutboxEntry
from tests.support.web import PASSWORD, World, login_csrf, world_fixture  # noqa: F401

SAM = "sam@alpha.example"


def try_password(client: TestClient, email: str, password: str) -> int:
    token = login_csrf(client)
    r = client.post("/login", data={"csrf_token": token, "email": email, "password": password})
    return r.status_code


def test_five_wrong_passwords_lock_the_address_for_fifteen_minutes(world: World) -> None:
    client = world.client()
    assert [try_password(client, SAM, f"guess {i}") for i in range(5)] == [401] * 5
    token = login_csrf(client)
    r = client.post("/login", data={"csrf_token": token, "email": SAM, "password": PASSWORD})
    assert r.status_code == 429, "even the right password waits: guessing must not pay"
    assert "Too many attempts. Try again in 15 min." in r.text
    assert r.headers["Retry-After"] == "900"
    assert "ea_session" not in r.headers.get("set-cookie", "")
    # The address is not the only thing counted, but other addresses are not locked by it.
    assert try_password(world.client(), "alex@alpha.example", PASSWORD) == 303
    world.clock.advance(minutes=14)
    assert try_password(client, " SAM@alpha.example ", PASSWORD) == 429, "same address"
    world.clock.advance(minutes=1, seconds=1)
    assert try_password(client, SAM, PASSWORD) == 303


def test_a_successful_login_clears_the_count(world: World) -> None:
    client = world.client()
    for i in range(4):
        assert try_password(client, SAM, f"guess {i}") == 401
    assert try_password(client, SAM, PASSWORD) == 303
    fresh = world.client()
    assert [try_password(fresh, SAM, f"again {i}") for i in range(5)] == [401] * 5
    assert try_password(fresh, SAM, PASSWORD) == 429


def test_one_client_spraying_many_addresses_is_stopped(world: World) -> None:
    client = world.client()
    codes = [try_password(client, f"user{i}@x.example", "123456") for i in range(30)]
    assert codes == [401] * 30
    assert try_password(client, SAM, PASSWORD) == 429


def test_the_api_login_is_throttled_alike(world: World) -> None:
    client = world.client()
    for i in range(5):
        r = client.post("/api/login", json={"email": SAM, "password": f"guess {i}"})
        assert r.status_code == 401
    r = client.post("/api/login", json={"email": SAM, "password": PASSWORD})
    assert r.status_code == 429 and r.json()["retry_after_seconds"] == 900
    assert r.headers["Retry-After"] == "900"


def test_login_links_are_limited_and_the_page_tells_nothing(world: World) -> None:
    client = world.client()
    pages = []
    for _ in range(5):
        token = login_csrf(client)
        r = client.post("/login/link", data={"csrf_token": token, "email": SAM})
        pages.append((r.status_code, "a link is on its way" in r.text))
    assert pages == [(200, True)] * 5
    with world.svc.uow.read() as s:
        sent = s.scalar(
            select(func.count()).where(OutboxEntry.idempotency_key.like("login-link:%"))
        )
    assert sent == 3
    world.clock.advance(hours=1, seconds=1)
    token = login_csrf(client)
    client.post("/login/link", data={"csrf_token": token, "email": SAM})
    with world.svc.uow.read() as s:
        assert s.scalar(
            select(func.count()).where(OutboxEntry.idempotency_key.like("login-link:%"))
        ) == 4


def test_the_typed_address_is_stored_only_hashed_and_old_rows_go(world: World) -> None:
    client = world.client()
    try_password(client, "someone@secret.example", "x")
    with world.svc.uow.read() as s:
        keys = list(s.scalars(select(LoginAttempt.key)))
    assert keys and not any("secret.example" in k for k in keys)
    world.clock.advance(days=1, seconds=1)
    try_password(client, "other@x.example", "y")
    with world.svc.uow.read() as s:
        assert s.scalar(select(func.count()).select_from(LoginAttempt)) == 2  # the new ones


def test_each_refusal_after_the_lock_doubles_it_up_to_four_hours(world: World) -> None:
    client = world.client()
    assert [try_password(client, SAM, f"guess {i}") for i in range(5)] == [401] * 5
    waits = []
    for i in range(6):
        token = login_csrf(client)
        r = client.post("/login", data={"csrf_token": token, "email": SAM, "password": "x"})
        assert r.status_code == 429
        waits.append(int(r.headers["Retry-After"]))
        world.clock.advance(seconds=waits[-1] + 1)  # the lock is over: one more guess
        assert try_password(client, SAM, f"late guess {i}") == 401
    assert waits == [900, 1800, 3600, 7200, 14400, 14400], "doubled, at most 4 hours"
    token = login_csrf(client)
    r = client.post("/login", data={"csrf_token": token, "email": SAM, "password": PASSWORD})
    assert r.status_code == 429 and "Try again in 240 min." in r.text
    # The 429s themselves are not counted: asking while locked does not lengthen the lock.
    world.clock.advance(hours=4, seconds=1)
    assert try_password(client, SAM, PASSWORD) == 303
    fresh = world.client()
    assert [try_password(fresh, SAM, f"new {i}") for i in range(5)] == [401] * 5, "cleared"


def test_refusals_of_the_day_add_up_but_the_last_day_only(world: World) -> None:
    client = world.client()
    for i in range(5):
        if i:
            world.clock.advance(hours=2)  # slow guessing still reaches the lock
        assert try_password(client, SAM, f"guess {i}") == 401
    assert try_password(client, SAM, PASSWORD) == 429
    world.clock.advance(hours=16, seconds=1)  # the first refusal is over a day old now
    assert try_password(client, SAM, "guess 5") == 401, "four left in the day: heard"
    token = login_csrf(client)
    r = client.post("/login", data={"csrf_token": token, "email": SAM, "password": PASSWORD})
    assert r.status_code == 429 and r.headers["Retry-After"] == "900", "5 in the day, not 6"


def test_attempts_racing_in_several_processes_cannot_all_slip_through(world: World) -> None:
    """Each web process counts its attempt before the slow password check; one judged
    after another was counted sees it, so parallel guesses do not all pass the lock."""
    now = world.clock.now
    first = LoginGuard(world.svc.uow)
    for _ in range(4):
        attempt = first.start_password(SAM, "192.0.2.1", now)
        assert attempt.wait == 0  # then refused: the rows stay
    # Two processes take a guess at the same moment, before either has checked a password.
    a = LoginGuard(world.svc.uow).start_password(SAM, "192.0.2.2", now)
    b = LoginGuard(world.svc.uow).start_password(SAM, "192.0.2.3", now)
    assert a.wait == 0, "the 5th guess is heard"
    assert b.wait == 900, "the 6th is not, though the 5th has not been refused yet"
    with world.svc.uow.read() as s:
        keys = list(s.scalars(select(LoginAttempt.key)))
    assert len(keys) == 10 and not any(k == "ip:192.0.2.3" for k in keys), "b was taken back"
    # The 5th guess was right after all: the address's count goes, and its own client row.
    first.succeeded(SAM, a)
    with world.svc.uow.read() as s:
        keys = list(s.scalars(select(LoginAttempt.key)))
    assert sorted(keys) == ["ip:192.0.2.1"] * 4
    assert LoginGuard(world.svc.uow).start_password(SAM, "192.0.2.4", now).wait == 0


def test_login_links_racing_are_limited_alike(world: World) -> None:
    now = world.clock.now
    granted = [LoginGuard(world.svc.uow).take_link(SAM, f"192.0.2.{i}", now) for i in range(5)]
    assert granted == [True, True, True, False, False]
    assert LoginGuard(world.svc.uow).take_link("alex@alpha.example", "192.0.2.9", now)
