"""A login link handed over directly (``assistant demo --serve`` prints one per user):
it signs in once, lands on the page it names but never on another site, and expires."""

from __future__ import annotations

import re
from urllib.parse import quote

from sqlalchemy import select

from assistant.entrypoints.web.auth import issue_login_link
from assistant.store.tables import User
from tests.support.web import World, world_fixture  # noqa: F401


def user_id(world: World, email: str) -> int:
    with world.svc.uow.read() as s:
        return s.scalars(select(User.id).where(User.email == email)).one()


def follow(world: World, token: str, target: str) -> tuple[int, str]:
    client = world.client()
    page = client.get(f"/login/link/{token}?next={quote(target, safe='')}")
    fields = dict(re.findall(r'name="(csrf_token|next)" value="([^"]*)"', page.text))
    done = client.post(f"/login/link/{token}", data=fields)
    if done.status_code == 303:
        assert client.get("/api/me").json()["email"] == "sam@alpha.example"
    return done.status_code, done.headers.get("location", "")


def test_a_handed_link_signs_in_once_onto_its_page(world: World) -> None:
    sam = user_id(world, "sam@alpha.example")
    token = issue_login_link(world.svc, sam)
    target = f"/pairs/{world.alpha.id}/week?date=2026-11-23"
    assert follow(world, token, target) == (303, target)
    assert follow(world, token, target)[0] == 400  # spent


def test_a_handed_link_never_leads_to_another_site(world: World) -> None:
    sam = user_id(world, "sam@alpha.example")
    for target in ("https://evil.example/", "//evil.example", "/\\evil.example"):
        assert follow(world, issue_login_link(world.svc, sam), target) == (303, "/")


def test_a_handed_link_expires(world: World) -> None:
    token = issue_login_link(world.svc, user_id(world, "sam@alpha.example"), minutes=5)
    world.clock.advance(minutes=6)
    assert follow(world, token, "/")[0] == 400
