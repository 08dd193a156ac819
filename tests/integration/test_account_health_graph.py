"""A Microsoft account whose refresh token was revoked (``invalid_grant``) is parked after
five refused tries, reported to the assistant and the manager after 15 minutes, and
unparked by signing in again (the OAuth connect flow's reconnect); then it syncs.

The protocol-level Graph server over real HTTPS, the account stored and synced by the
production paths, an injected clock; SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import select

from assistant.services import account_health, pipeline, push
from assistant.services import accounts as account_service
from assistant.store.tables import Account, OutboxEntry
from tests.integration.test_graph_token_rotation import (  # noqa: F401
    graph,
    keyring,
    store_account,
)
from tests.support.graph_server import GraphServer
from tests.support.web import World, world_fixture  # noqa: F401


def test_a_revoked_token_is_parked_reported_and_unparked_by_signing_in_again(
    world: World, graph: GraphServer  # noqa: F811 (the fixture)
) -> None:
    aid, _ = store_account(world, graph)
    assert not pipeline.sync_account(world.svc, aid).error  # the baseline
    world.app(public_url="https://assistant.example")  # webhooks on: a subscription is due
    assert aid in push.accounts_due(world.svc, world.clock())[0]
    graph.revoke_refresh_tokens()
    graph.expire_access_tokens()

    errors = []
    for _ in range(5):
        synced = pipeline.sync_account(world.svc, aid)
        errors.append(synced.error)
        assert synced.failed is not None
        world.clock.now = synced.failed.next_try_at or world.clock.now
    assert all("invalid_grant" in e for e in errors), errors
    assert synced.failed.parked
    assert pipeline.after_poll(world.svc, aid).synced[0].parked, "a poll does not try it"
    assert aid not in push.accounts_due(world.svc, world.clock())[0], "nor the push upkeep"

    world.clock.advance(minutes=15)
    sent = account_health.send_due_alerts(world.svc)
    assert sent.accounts == (aid,)
    with world.svc.uow.read() as s:
        told = sorted(s.scalars(select(OutboxEntry.recipient).where(
            OutboxEntry.idempotency_key.startswith(f"account-health:{aid}:"))))  # fmt: skip
    assert told == ["alex@alpha.example", "sam@alpha.example"]

    # Signing in again stores the new token: not parked, and the next sync works.
    account_service.save_oauth_account(
        world.svc, world.alpha.id, provider="graph", name="Microsoft 365 graph",
        identity=graph.user, settings={}, refresh_token=graph.issue_refresh_token(),
        account_id=aid,
    )  # fmt: skip
    with world.svc.uow.read() as s:
        account = s.get(Account, aid)
        assert account is not None and account.parked_reason == ""
    world.clock.advance(seconds=30)
    synced = pipeline.sync_account(world.svc, aid)
    assert not synced.error and len(synced.health_outbox) == 2, "the recovery, to both"
    with world.svc.uow.read() as s:
        account = s.get(Account, aid)
        assert account is not None and account.failing_since is None
