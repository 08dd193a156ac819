"""Access: another pair's routes look exactly like missing ones, anonymous callers get
nothing, the push webhooks and /health tell nobody what exists.

Routes are enumerated from the app itself, so a route added later is tried too; the
routes that need no login are listed once in web_routes.PUBLIC with the reason.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from assistant.entrypoints.web.app import create_app
from assistant.services.pairs import add_account
from assistant.services.push import PushSignal
from assistant.store.tables import Account
from tests.security.web_routes import PUBLIC, call, fill, routes
from tests.support.deps import deps_for
from tests.support.web import NOW, World, login, world_fixture  # noqa: F401

MISSING = 987_654_321


def other_ids(world: World) -> dict[str, int | str]:
    b = world.bravo
    with world.svc.uow.read() as s:
        account = s.scalars(select(Account.id).where(Account.pair_id == b.id)).first()
    assert account is not None
    return {
        "pair_id": b.id,
        "task_id": b.task_id,
        "rule_id": b.rule_id,
        "entry_id": b.entry_id,
        "account_id": account,
        "token": "x",
    }


def test_public_routes_are_the_listed_ones(world: World) -> None:
    app = world.app()
    templates = {t for _, t in routes(app)}
    assert set(PUBLIC) <= templates, "PUBLIC names a route that is gone"
    anonymous = TestClient(app, follow_redirects=False)
    ids = other_ids(world) | {"pair_id": world.alpha.id}
    for method, template in routes(app):
        if template in PUBLIC:
            continue
        r = call(anonymous, method, fill(template, ids), "")
        if template.startswith("/api/"):
            assert r.status_code == 401, (method, template, r.status_code)
        else:
            assert r.status_code == 303, (method, template, r.status_code)
            assert r.headers["location"].startswith("/login"), (method, template)


def test_another_pairs_routes_answer_like_missing_ones(world: World) -> None:
    app = world.app()
    client = TestClient(app, follow_redirects=False)
    token = login(client, "alex@alpha.example")
    theirs = other_ids(world)
    missing: dict[str, int | str] = {k: MISSING for k in theirs} | {"token": "x"}
    tried = 0
    for method, template in routes(app):
        if "{pair_id" not in template:
            continue
        r_theirs = call(client, method, fill(template, theirs), token)
        r_missing = call(client, method, fill(template, missing), token)
        assert r_theirs.status_code == 404, (method, template, r_theirs.status_code)
        assert r_missing.status_code == 404, (method, template, r_missing.status_code)
        if template.startswith("/api/"):
            assert r_theirs.json() == r_missing.json(), template
        for secret in [*world.bravo.secrets, "bravo"]:
            assert secret.lower() not in r_theirs.text.lower(), (method, template)
        tried += 1
    assert tried >= 25


def test_health_says_only_ok_to_anonymous_callers(world: World) -> None:
    client = world.client()
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    login(client, "sam@alpha.example")
    detailed = client.get("/health").json()
    assert detailed["status"] in ("ok", "degraded") and "outbox" in detailed


def _push_world(world: World) -> tuple[TestClient, list[PushSignal]]:
    """The app with a Google account watching channel ch-1 and a Graph one sub-1."""
    uow = world.svc.uow
    for provider, ident, secret in (("google", "ch-1", "tok-1"), ("graph", "sub-1", "cs-1")):
        account = add_account(
            deps_for(uow, NOW),
            pair=world.alpha.id,
            name=f"{provider}-push",
            provider="ics",
            settings={"url": "file:///x.ics"},
        )
        with uow.begin() as s:
            row = s.get(Account, account.id)
            assert row is not None
            row.provider = provider
            row.sync_state = {"push": {"id": ident, "secret": secret}}
    signals: list[PushSignal] = []
    return TestClient(create_app(world.svc, on_push=signals.append)), signals


def _google(channel: str, token: str) -> dict[str, str]:
    return {
        "X-Goog-Channel-ID": channel,
        "X-Goog-Channel-Token": token,
        "X-Goog-Resource-State": "exists",
        "X-Goog-Resource-ID": "r",
        "X-Goog-Message-Number": "2",
    }


def test_google_push_answers_unknown_channel_and_wrong_token_alike(world: World) -> None:
    client, signals = _push_world(world)
    wrong = client.post("/push/google", headers=_google("ch-1", "guessed"))
    unknown = client.post("/push/google", headers=_google("not-ours", "guessed"))
    assert (unknown.status_code, unknown.content, unknown.headers["content-type"]) == (
        wrong.status_code,
        wrong.content,
        wrong.headers["content-type"],
    )
    assert wrong.status_code == 403
    assert signals == []
    good = client.post("/push/google", headers=_google("ch-1", "tok-1"))
    assert good.status_code == 200 and len(signals) == 1


def _graph(sub: str, client_state: str) -> dict[str, Any]:
    return {"value": [{"subscriptionId": sub, "clientState": client_state, "changeType": "updated"}]}


def test_graph_push_answers_unknown_subscription_and_wrong_state_alike(world: World) -> None:
    client, signals = _push_world(world)
    wrong = client.post("/push/graph", json=_graph("sub-1", "guessed"))
    unknown = client.post("/push/graph", json=_graph("not-ours", "guessed"))
    assert (unknown.status_code, unknown.content) == (wrong.status_code, wrong.content)
    assert wrong.status_code == 202  # acknowledged and dropped: Graph would retry for hours
    assert signals == []
    good = client.post("/push/graph", json=_graph("sub-1", "cs-1"))
    assert good.status_code == 202 and len(signals) == 1
