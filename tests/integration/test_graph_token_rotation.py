"""Microsoft rotates refresh tokens: the rotated one is stored, encrypted, and used next time.

The path is the production one: the account is stored by the service
(``save_oauth_account``, as the OAuth connect flow does), synced by the sync use case
(``runner.sync_now``: the registry opens the connector with the account's token keeper),
against the protocol-level Graph server over real HTTPS. The server is told to refuse a
refresh token once it has been redeemed (``single_use_refresh_tokens``), so a client that
does not keep the rotated token is locked out. Database: SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from assistant.services import accounts as account_service
from assistant.services import delegation
from assistant.services.runner import sync_now
from assistant.store.tables import Account, Base, Checkpoint, EventSnapshot, Message
from config import sealed
from config.settings import SecretRef
from tests.support.graph_server import GraphServer, trust_for_stored_accounts
from tests.support.web import NOW, World, world_fixture  # noqa: F401

START = NOW + timedelta(days=2)


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphServer]:
    with GraphServer(tmp_path) as g:
        trust_for_stored_accounts(g, monkeypatch)
        g.single_use_refresh_tokens = True
        yield g


@pytest.fixture(autouse=True)
def keyring(world: World) -> Iterator[None]:
    """The process's keyring, as the composition root installs it (secrets resolve)."""
    previous = sealed.installed()
    account_service.install_keyring(world.svc.settings)
    yield
    sealed.install(previous)


def store_account(world: World, graph: GraphServer, provider: str = "graph") -> tuple[int, str]:
    """A Microsoft account as the connect flow stores it; returns (id, its refresh token)."""
    token = graph.issue_refresh_token()
    settings = {
        "user": graph.user,
        "tenant": graph.tenant,
        "client_id": graph.client_id,
        "client_secret": {"env": "TEST_MS_CLIENT_SECRET"},
        "authority_host": graph.authority_host,
        "graph_url": graph.graph_url,
    }
    account_id = account_service.save_oauth_account(
        world.svc, world.alpha.id, provider=provider, name=f"Microsoft 365 {provider}",
        identity=graph.user, settings=settings, refresh_token=token, account_id=None,
    )  # fmt: skip
    return account_id, token


def stored_secret(world: World, account_id: int) -> tuple[dict[str, Any], str]:
    """(the stored reference, the token it decrypts to)."""
    with world.svc.uow.read() as session:
        account = session.get(Account, account_id)
        assert account is not None
        ref = dict(account.settings["refresh_token"])
    return ref, SecretRef(**ref).resolve().get_secret_value()


def sync(world: World, account_id: int) -> dict[str, Any]:
    rows = sync_now(world.svc, account_id=account_id, send=False)
    [row] = [r.to_json() for r in rows.lines if r.account.startswith(f"{account_id} ")]
    return row


def redeem(graph: GraphServer, refresh_token: str) -> httpx.Response:
    """What Microsoft answers to this refresh token now (a direct grant over HTTPS)."""
    return httpx.post(
        graph.token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": graph.client_id,
            "client_secret": graph.client_secret,
            "refresh_token": refresh_token,
            "scope": "https://graph.microsoft.com/Calendars.ReadWrite offline_access",
        },
        verify=ssl.create_default_context(cafile=graph.ca_file),
        timeout=10,
    )


def database_text(world: World) -> str:
    parts = []
    with world.svc.uow.read() as session:
        for table in Base.metadata.sorted_tables:
            parts.append(repr(session.execute(select(table)).all()))
    return "\n".join(parts)


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)


def test_a_rotated_token_is_stored_encrypted_and_the_next_sync_works_with_it(
    world: World, graph: GraphServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    account_id, first = store_account(world, graph)
    graph.create_event("Quarterly review", START, START + timedelta(hours=1))

    row = sync(world, account_id)
    assert "error" not in row, row
    ref, second = stored_secret(world, account_id)
    assert set(ref) == {"encrypted"}, "stored like every secret the service obtained"
    assert second != first and second.startswith("rt-")
    # Microsoft refuses the old token now; the stored one is the one that works.
    old = redeem(graph, first)
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant"
    assert graph.live_refresh_tokens() == {second}

    graph.create_event("Board call", START + timedelta(hours=3), START + timedelta(hours=4))
    graph.expire_access_tokens()  # the next sync has to redeem the stored refresh token
    row = sync(world, account_id)
    assert "error" not in row, row
    with world.svc.uow.read() as session:
        titles = set(session.scalars(select(EventSnapshot.summary).where(
            EventSnapshot.account_id == account_id)))  # fmt: skip
    assert {"Quarterly review", "Board call"} <= titles
    _, third = stored_secret(world, account_id)
    assert third not in (first, second) and graph.live_refresh_tokens() == {third}
    assert redeem(graph, second).status_code == 400, "the token the last sync used is spent"
    assert graph.token_requests.count("refresh_token") == 4  # 2 syncs + 2 probes above

    with world.svc.uow.read() as session:
        account = session.get(Account, account_id)
        assert account is not None
        assert account.state == "ok", account.last_error
    text = logged(caplog)
    assert "renewed its refresh token; stored" in text
    for token in (first, second, third):
        assert token not in text, "a refresh token in the log"
        assert token not in database_text(world), "a refresh token in clear in the database"


def test_the_rotated_token_is_kept_when_the_sync_itself_fails(
    world: World, graph: GraphServer
) -> None:
    """Stored in its own unit of work: the sync's failure does not take it back."""
    account_id, first = store_account(world, graph)
    graph.fail_next(403)  # the calendar request fails after the sign-in rotated the token
    row = sync(world, account_id)
    assert "error" in row
    _, kept = stored_secret(world, account_id)
    assert kept != first and graph.live_refresh_tokens() == {kept}
    assert "error" not in sync(world, account_id), "the next sync signs in with the kept token"


def test_a_mailbox_keeps_its_rotated_token_too(world: World, graph: GraphServer) -> None:
    account_id, first = store_account(world, graph, provider="graph-mail")
    graph.deliver("inbox", "Budget", "dana@example.com", [graph.user], NOW - timedelta(hours=2))
    assert "error" not in sync(world, account_id)
    _, second = stored_secret(world, account_id)
    assert second != first and graph.live_refresh_tokens() == {second}
    graph.deliver("inbox", "Budget v2", "dana@example.com", [graph.user], NOW - timedelta(hours=1))
    graph.expire_access_tokens()
    assert "error" not in sync(world, account_id)
    with world.svc.uow.read() as session:
        subjects = set(session.scalars(select(Message.subject).where(
            Message.account_id == account_id)))  # fmt: skip
    assert {"Budget", "Budget v2"} <= subjects


def test_a_token_that_cannot_be_stored_is_logged_plainly_and_the_sync_goes_on(
    world: World,
    graph: GraphServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graph.single_use_refresh_tokens = False  # the old token keeps working here
    account_id, first = store_account(world, graph)
    before, _ = stored_secret(world, account_id)

    def broken(settings: Any) -> Any:
        raise RuntimeError("keyring unavailable")

    monkeypatch.setattr(account_service, "keyring_for", broken)
    caplog.set_level(logging.DEBUG)
    graph.create_event("Quarterly review", START, START + timedelta(hours=1))
    row = sync(world, account_id)
    assert "error" not in row and row["events"] == 1, row
    after, token = stored_secret(world, account_id)
    assert after == before and token == first, "nothing stored; the old token stays"
    [failure] = [r for r in caplog.records if "could not be stored" in r.getMessage()]
    assert failure.levelno == logging.ERROR
    assert f"account {account_id}:" in failure.getMessage()
    assert "RuntimeError" in failure.getMessage() and "reconnect" in failure.getMessage()
    text = logged(caplog)
    for rotated in graph.live_refresh_tokens():
        assert rotated not in text


def test_checkpoint_events_of_one_task_are_written_with_the_rotated_token(
    world: World, graph: GraphServer
) -> None:
    """A task has two checkpoint events; each is written after the first rotated the token."""
    account_id, first = store_account(world, graph)
    task = delegation.create_task(
        world.svc, pair=world.alpha.id, title="Q3 board pack", delegate="",
        term_start=NOW + timedelta(days=1), deadline=NOW + timedelta(days=6),
        result="Deck approved",
    )  # fmt: skip
    with world.svc.uow.read() as session:
        targets = set(session.scalars(select(Checkpoint.account_id).where(
            Checkpoint.task_id == task.id)))  # fmt: skip
    assert targets == {account_id}
    report = delegation.reconcile_checkpoints(world.svc, task.id)
    assert len(report.written) == 2, report
    _, kept = stored_secret(world, account_id)
    assert kept != first and graph.live_refresh_tokens() == {kept}


def test_checking_the_account_keeps_the_rotated_token(world: World, graph: GraphServer) -> None:
    """The web page's connection check opens the account too; its sign-in rotates the token."""
    account_id, first = store_account(world, graph)
    result = account_service.check_account(world.svc, world.alpha.id, account_id)
    assert result.ok, result
    _, kept = stored_secret(world, account_id)
    assert kept != first and graph.live_refresh_tokens() == {kept}
    assert "error" not in sync(world, account_id)
