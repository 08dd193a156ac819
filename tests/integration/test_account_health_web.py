"""The web shows a failing account: on the Accounts page how it is tried (since when, how
often, when next, or parked and why) with the fix, and a banner on every page of the
pair once it is unhealthy (failing for 15 minutes, or parked); in English and Russian.
A new password given on the Accounts page unparks it.

Real store (SQLite and PostgreSQL), the real app through Starlette's TestClient, the
real sync of the pair's account (its feed cannot be read), an injected clock.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.services import pipeline
from assistant.services.pairs import add_account
from assistant.store.tables import Account, OutboxEntry
from tests.support.radicale import RadicaleWithLogins
from tests.support.web import World, login, world_fixture  # noqa: F401


def _account_id(world: World) -> int:
    from sqlalchemy import select

    with world.svc.uow.read() as s:
        return s.scalars(select(Account.id).where(Account.pair_id == world.alpha.id)).one()


def test_a_failing_account_is_shown_then_bannered_then_unparked(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, aid = world.alpha, _account_id(world)
    client = world.client()
    token = login(client, "alex@alpha.example")
    assert 'id="health-banner"' not in client.get(f"/pairs/{a.id}/agenda").text

    synced = pipeline.sync_account(world.svc, aid)  # its feed cannot be read
    assert synced.error
    page = client.get(f"/pairs/{a.id}/accounts").text
    assert f'id="health-{aid}"' in page
    assert synced.failed is not None and not synced.failed.parked
    assert "Failing since Tue 24 Nov 10:00 (tries failed: 1); next try Tue 24 Nov 10:00" in page
    assert 'id="health-banner"' not in page, "not yet failing for 15 minutes"

    world.clock.advance(minutes=16)
    pipeline.sync_account(world.svc, aid)
    agenda = client.get(f"/pairs/{a.id}/agenda").text
    assert 'id="health-banner"' in agenda and "Not syncing:" in agenda
    assert f'href="/pairs/{a.id}/accounts#account-{aid}">alpha-cal</a>' in agenda
    with world.svc.uow.read() as s:
        told = [e.recipient for e in s.query(OutboxEntry).filter(
            OutboxEntry.idempotency_key.startswith(f"account-health:{aid}:"))]  # fmt: skip
    assert told == ["sam@alpha.example"], "the assistant is told once"
    # Not another pair's banner.
    other = world.client()
    login(other, "bob@bravo.example")
    assert 'id="health-banner"' not in other.get(f"/pairs/{world.bravo.id}/agenda").text

    # A feed on a server that refuses its password: after 5 tries it is parked.
    monkeypatch.setenv("ALPHA_FEED_PASSWORD", "old")
    with RadicaleWithLogins(tmp_path / "radicale", {"alex": "new"}) as radicale:
        fid = add_account(world.svc, pair=a.id, name="alpha-feed", provider="ics", settings={
            "location": radicale.new_calendar("alpha", user="alex"), "username": "alex",
            "password": {"env": "ALPHA_FEED_PASSWORD"},
        }).id  # fmt: skip
        for _ in range(5):
            synced = pipeline.sync_account(world.svc, fid)
            assert "access refused (401)" in synced.error
    assert synced.failed is not None and synced.failed.parked
    page = client.get(f"/pairs/{a.id}/accounts").text
    assert "no longer tried until they change" in page and "Reconnect" in page
    r = client.post("/me/locale", data={"csrf_token": token, "locale": "ru",
                                        "next": f"/pairs/{a.id}/accounts"})  # fmt: skip
    assert r.status_code == 303
    ru = client.get(f"/pairs/{a.id}/accounts").text
    assert "Не синхронизируются:" in ru and "сервис не пытается, пока они не изменятся" in ru
    assert "провайдер не принимает пароль или вход" in ru

    r = client.post(f"/pairs/{a.id}/accounts/{fid}/reconnect",
                    data={"csrf_token": token, "password": "the new one"})  # fmt: skip
    assert r.status_code == 303, r.text
    with world.svc.uow.read() as s:
        account = s.get(Account, fid)
        assert account is not None
        assert account.parked_reason == "" and account.next_try_at is None
    assert "сервис не пытается" not in client.get(f"/pairs/{a.id}/accounts").text
