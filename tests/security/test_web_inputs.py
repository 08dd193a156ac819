"""Hostile bodies and numbers: bounded JSON (size 413, depth 400, no traceback), finite
numbers in range (400, never 500), ids past any row (404).

Every JSON body goes through one reader (assistant/entrypoints/web/bodies.py): the API guard,
``/api/login`` and the push webhooks. The routes are enumerated from the app.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from assistant.entrypoints.web.app import create_app
from assistant.services.pair_settings import pair_settings
from assistant.services.push import PushSignal
from tests.security.web_routes import ENDS_SESSION, fill, int_params, routes, unsafe_routes
from tests.support.web import PASSWORD, World, login, world_fixture  # noqa: F401

DEEP = b"[" * 100_000 + b"]" * 100_000  # 200 kB: under the size limit, far too deep


def nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert "RecursionError" not in caplog.text and "Traceback" not in caplog.text


def test_deep_json_to_the_graph_webhook_is_a_clean_400(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    signals: list[PushSignal] = []
    client = TestClient(create_app(world.svc, on_push=signals.append))
    r = client.post("/push/graph", content=DEEP, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "deeper than 32" in r.text
    assert signals == []
    no_traceback(caplog)


def test_deep_json_to_the_api_and_the_login_is_a_clean_400(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = world.client()
    r = client.post("/api/login", content=DEEP, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "deeper than 32" in r.json()["error"]
    token = login(client, "alex@alpha.example")
    h = {"X-CSRF-Token": token, "Content-Type": "application/json"}
    r = client.put(f"/api/pairs/{world.alpha.id}/settings", content=DEEP, headers=h)
    assert r.status_code == 400 and "deeper than 32" in r.json()["error"]
    # the limit is the setting: 32 levels pass the reader (then the login is judged), 33 not
    anon = world.client()
    at_limit = {"email": nested(31), "password": PASSWORD}  # the object + 31 arrays
    assert anon.post("/api/login", json=at_limit).status_code == 401
    assert anon.post("/api/login", json=at_limit | {"email": nested(32)}).status_code == 400
    no_traceback(caplog)


def test_json_bodies_over_the_limit_are_413(world: World) -> None:
    big = json.dumps({"email": "sam@alpha.example", "password": "x" * 1_100_000})
    client = world.client()
    r = client.post("/api/login", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413  # the default limit: 1 MB

    app = world.app(max_body_bytes=4096)
    client = TestClient(app, follow_redirects=False)
    token = login(client, "alex@alpha.example")
    over = json.dumps({"kind": "keyword", "pattern": "p" * 5000, "level": "high"})
    api = f"/api/pairs/{world.alpha.id}/priorities"
    h = {"X-CSRF-Token": token, "Content-Type": "application/json"}
    assert client.post(api, content=over, headers=h).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        for i in range(0, len(over), 1000):
            yield over[i : i + 1000].encode()

    assert client.post(api, content=chunks(), headers=h).status_code == 413
    assert client.post("/api/login", content=over, headers=h).status_code == 413
    assert client.post("/push/graph", content=over, headers=h).status_code == 413
    # forms too, declared or streamed
    form = {"csrf_token": token, "kind": "keyword", "pattern": "p" * 5000, "level": "high"}
    page = f"/pairs/{world.alpha.id}/priorities"
    assert client.post(page, data=form).status_code == 413
    encoded = urlencode(form)

    def form_chunks() -> Iterator[bytes]:
        for i in range(0, len(encoded), 1000):
            yield encoded[i : i + 1000].encode()

    formtype = {"Content-Type": "application/x-www-form-urlencoded"}
    assert client.post(page, content=form_chunks(), headers=formtype).status_code == 413
    assert "p" * 5000 not in client.get(api).text


def test_the_reader_stops_reading_at_the_limit() -> None:
    """Read with a limit, not all and then check: chunks past the limit are never pulled."""
    from assistant.entrypoints.web.bodies import BodyRefused, read_json

    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"[" + b" " * 65_535, "more_body": True}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/x",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    request = Request(scope, receive)
    # a loop of its own in a thread of its own: an earlier test's loop may still run here
    with pytest.raises(BodyRefused) as refused, ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, read_json(request, 1_000_000, 32)).result()
    assert refused.value.status == 413
    assert pulled <= 17  # 16 chunks of 64 kB reach 1 MB; an endless body is not drained


@pytest.mark.parametrize(
    "raw",
    ["1e400", "-1e400", "Infinity", "-Infinity", "NaN", "1e308", "-5", "0", "10081", "true",
     "5.7", "30.0", '"30 min"'],
)  # fmt: skip
def test_numbers_in_json_must_be_finite_and_in_range(world: World, raw: str) -> None:
    client = TestClient(world.app(), follow_redirects=False, raise_server_exceptions=False)
    token = login(client, "alex@alpha.example")
    before = pair_settings(world.svc, world.alpha.id)
    r = client.put(
        f"/api/pairs/{world.alpha.id}/settings",
        content='{"sla_minutes": ' + raw + "}",
        headers={"X-CSRF-Token": token, "Content-Type": "application/json"},
    )
    assert r.status_code == 400, (raw, r.status_code, r.text)
    assert pair_settings(world.svc, world.alpha.id) == before


def test_numbers_in_forms_and_queries_are_400(world: World) -> None:
    client = TestClient(world.app(), follow_redirects=False, raise_server_exceptions=False)
    token = login(client, "alex@alpha.example")
    a = world.alpha.id
    for raw in ("inf", "1e400", "nan", "-1", "1e5", "9" * 5000):
        form = {
            "csrf_token": token,
            "timezone": "UTC",
            "sla_minutes": raw,
            "channels": "smtp",
            "locale": "en",
        }
        r = client.post(f"/pairs/{a}/settings", data=form)
        assert r.status_code == 400, (raw, r.status_code)
        for query in ("days", "limit"):
            path = f"/api/pairs/{a}/{'agenda' if query == 'days' else 'changes'}"
            r = client.get(path, params={query: raw})
            assert r.status_code == 400, (query, raw, r.status_code)


def test_ids_past_any_row_are_404_not_500(world: World) -> None:
    app = world.app()
    client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    token = login(client, "alex@alpha.example")
    tried = 0
    for method, template in routes(app):
        names = int_params(template)
        if not names or template in ENDS_SESSION:
            continue
        usual: dict[str, int | str] = {"pair_id": world.alpha.id}
        usual.update({n: 1 for n in names if n != "pair_id"})
        for huge in (2**63, 2**64, 10**30):
            for name in names:  # each id past the end in turn, the usual ones elsewhere
                path = fill(template, usual | {name: huge})
                if path.startswith("/api/"):
                    r = client.request(method, path, json={}, headers={"X-CSRF-Token": token})
                else:
                    r = client.request(method, path, data={"csrf_token": token})
                assert r.status_code == 404, (method, path, r.status_code)
                tried += 1
    assert tried >= 40


def test_api_bodies_must_be_objects(world: World) -> None:
    app = world.app()
    client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    token = login(client, "alex@alpha.example")
    ids = {"pair_id": world.alpha.id, "task_id": 1, "rule_id": world.alpha.rule_id,
           "entry_id": world.alpha.entry_id}  # fmt: skip
    tried = 0
    for method, template in unsafe_routes(app):
        if not template.startswith("/api/") or template in ENDS_SESSION:
            continue
        for body in ("[1, 2]", "5", '"text"', "null", "true"):
            h = {"Content-Type": "application/json"}
            if template != "/api/login":
                h["X-CSRF-Token"] = token
            r = client.request(method, fill(template, ids), content=body, headers=h)
            assert r.status_code == 400, (method, template, body, r.status_code)
            tried += 1
    assert tried >= 25


def test_a_csv_download_of_a_pair_with_a_non_latin_name_is_served(world: World) -> None:
    from sqlalchemy import update

    from assistant.store.tables import Pair

    with world.svc.uow.begin() as session:
        session.execute(update(Pair).where(Pair.id == world.alpha.id).values(name="Алекс-1"))
    client = TestClient(world.app(), follow_redirects=False, raise_server_exceptions=False)
    login(client, "alex@alpha.example")
    r = client.get(f"/api/pairs/{world.alpha.id}/latency.csv")
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == 'attachment; filename="latency--1.csv"'
