"""Stale sessions: a password change or reset ends the user's other sessions; a disabled
user is out at once and cannot log in again.

The web app through TestClient, the CLI through its real entry point (a process).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from starlette.testclient import TestClient

from assistant.store.tables import OutboxEntry, User, WebSession
from tests.support.web import PASSWORD, World, login, login_csrf, world_fixture  # noqa: F401

NEW = "a brand new passphrase"


def signed_in(client: TestClient) -> bool:
    return bool(client.get("/api/me").status_code == 200)


def password_works(world: World, email: str, password: str) -> bool:
    r = world.client().post("/api/login", json={"email": email, "password": password})
    return bool(r.status_code == 200)


def test_changing_ones_password_ends_the_other_sessions(world: World) -> None:
    here, laptop, phone = world.client(), world.client(), world.client()
    token = login(here, "sam@alpha.example")
    login(laptop, "sam@alpha.example")
    login(phone, "sam@alpha.example")
    other_user = world.client()
    login(other_user, "alex@alpha.example")
    r = here.post(
        "/api/me/password",
        json={"current_password": PASSWORD, "new_password": NEW},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 200, r.text
    assert signed_in(here)  # the browser that changed it stays
    assert not signed_in(laptop) and not signed_in(phone)
    assert signed_in(other_user)  # nobody else's sessions
    assert not password_works(world, "sam@alpha.example", PASSWORD)
    assert password_works(world, "sam@alpha.example", NEW)


def test_the_password_page_needs_the_current_password(world: World) -> None:
    here, laptop = world.client(), world.client()
    token = login(here, "sam@alpha.example")
    login(laptop, "sam@alpha.example")
    page = here.get("/me/password")
    assert page.status_code == 200 and 'name="current_password"' in page.text
    r = here.post(
        "/me/password",
        data={"csrf_token": token, "current_password": "not my password", "new_password": NEW},
    )
    assert r.status_code == 400 and "current password is wrong" in r.text
    assert signed_in(laptop) and password_works(world, "sam@alpha.example", PASSWORD)
    short = {"csrf_token": token, "current_password": PASSWORD, "new_password": "short"}
    assert here.post("/me/password", data=short).status_code == 400
    assert signed_in(laptop)
    r = here.post(
        "/me/password",
        data={"csrf_token": token, "current_password": PASSWORD, "new_password": NEW},
    )
    assert r.status_code == 303 and r.headers["location"] == "/me/password?changed=1"
    assert signed_in(here) and not signed_in(laptop)
    assert password_works(world, "sam@alpha.example", NEW)


def test_guessing_the_current_password_is_throttled_like_a_login(world: World) -> None:
    here = world.client()
    token = login(here, "sam@alpha.example")
    h = {"X-CSRF-Token": token}
    statuses = [
        here.post(
            "/api/me/password",
            json={"current_password": f"guess number {n}", "new_password": NEW},
            headers=h,
        ).status_code
        for n in range(7)
    ]
    assert statuses[:5] == [400] * 5 and statuses[-1] == 429
    right = {"current_password": PASSWORD, "new_password": NEW}
    assert here.post("/api/me/password", json=right, headers=h).status_code == 429
    world.clock.advance(minutes=16)  # the address was locked 15 minutes
    assert here.post("/api/me/password", json=right, headers=h).status_code == 200


class Cli:
    """``assistant`` as the operator runs it, on the world's database."""

    def __init__(self, world: World, home: Path) -> None:
        url = world.svc.engine.url.render_as_string(hide_password=False)
        config = home / "assistant.toml"
        config.write_text(f'data_dir = "{world.tmp}"\n[database]\nurl = "{url}"\n')
        self.env = {**os.environ, "ASSISTANT_CONFIG": str(config), "NO_COLOR": "1"}

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "assistant.entrypoints.cli.app", *args],
            env=self.env | env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip


def test_cli_passwd_resets_a_password_and_ends_every_session(
    world: World, tmp_path: Path
) -> None:
    cli = Cli(world, tmp_path)
    laptop, phone = world.client(), world.client()
    login(laptop, "sam@alpha.example")
    login(phone, "sam@alpha.example")
    other_user = world.client()
    login(other_user, "alex@alpha.example")
    done = cli("user", "passwd", "sam@alpha.example", "--password-env", "NEW_PW", NEW_PW=NEW)
    assert done.returncode == 0, done.stderr
    assert "2 session(s) ended" in done.stdout
    assert not signed_in(laptop) and not signed_in(phone) and signed_in(other_user)
    assert password_works(world, "sam@alpha.example", NEW)
    assert not password_works(world, "sam@alpha.example", PASSWORD)
    # one clear line for mistakes, and nothing changed
    empty = cli("user", "passwd", "sam@alpha.example", "--password-env", "UNSET_VARIABLE_X")
    assert empty.returncode == 1 and "empty or not set" in empty.stderr
    short = cli("user", "passwd", "sam@alpha.example", "--password-env", "PW", PW="short")
    assert short.returncode == 1 and "at least" in short.stderr
    nobody = cli("user", "passwd", "nobody@x.example", "--password-env", "PW", PW=NEW)
    assert nobody.returncode == 1 and "no user" in nobody.stderr
    assert "Traceback" not in empty.stderr + short.stderr + nobody.stderr
    assert password_works(world, "sam@alpha.example", NEW)


def test_cli_disable_ends_sessions_at_once_and_blocks_every_login(
    world: World, tmp_path: Path
) -> None:
    cli = Cli(world, tmp_path)
    browser, untouched = world.client(), world.client()
    token = login(browser, "sam@alpha.example")
    login(untouched, "sam@alpha.example")
    # a login link asked for before being disabled
    asking = world.client()
    asking.post("/login/link", data={"csrf_token": login_csrf(asking), "email": "sam@alpha.example"})
    done = cli("user", "disable", "sam@alpha.example")
    assert done.returncode == 0, done.stderr
    with world.svc.uow.read() as s:
        sam = s.scalars(select(User.id).where(User.email == "sam@alpha.example")).one()
        assert s.scalars(select(WebSession).where(WebSession.user_id == sam)).all() == []
    assert not signed_in(browser)
    r = browser.post(
        f"/api/pairs/{world.alpha.id}/outbox/{world.alpha.entry_id}/retry",
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 401
    assert not password_works(world, "sam@alpha.example", PASSWORD)
    with world.svc.uow.read() as s:
        mail = s.scalars(
            select(OutboxEntry.body_text).where(OutboxEntry.idempotency_key.like("login-link:%"))
        ).one()
    link = re.search(r"(/login/link/\S+)", mail)
    assert link
    late = world.client()
    r = late.post(link.group(1), data={"csrf_token": login_csrf(late)})
    assert r.status_code == 400 and not signed_in(late)
    # enabled again: the password works (the old sessions stay ended)
    assert cli("user", "enable", "sam@alpha.example").returncode == 0
    assert password_works(world, "sam@alpha.example", PASSWORD)
    assert not signed_in(browser) and not signed_in(untouched)
