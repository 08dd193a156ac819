"""The pages and the API show the pair's data: agenda, changes, priorities, latency,
tasks, accounts, settings; the OpenAPI description covers every API route."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select
from starlette.routing import Route

from assistant.entrypoints.web.openapi import operations
from assistant.store.tables import OutboxEntry
from tests.support.web import World, login, world_fixture  # noqa: F401


def test_agenda_marks_changes_conflicts_and_checkpoints(world: World) -> None:
    a = world.alpha
    client = world.client()
    login(client, "sam@alpha.example")
    page = client.get(f"/pairs/{a.id}/agenda")
    assert page.status_code == 200
    assert a.secrets[0] in page.text and "conflict" in page.text and "checkpoint" in page.text
    days = client.get(f"/api/pairs/{a.id}/agenda").json()["days"]
    events = {e["uid"]: e for e in days[0]["events"]}
    assert events["alpha-board"]["conflict"] == "overlap"
    assert events["alpha-clash"]["conflict"] == "overlap"
    assert events["alpha-rl"]["checkpoint"] is True and events["alpha-rl"]["conflict"] is None
    moved = events["alpha-merger"]["change"]
    assert moved["kinds"] == ["moved"]
    assert moved["before"]["start"].startswith("2026-11-24T14:00")
    assert moved["after"]["start"].startswith("2026-11-24T17:00")
    week = client.get(f"/api/pairs/{a.id}/agenda?date=2026-11-23&days=7").json()["days"]
    assert [d["date"] for d in week][:2] == ["2026-11-23", "2026-11-24"]
    assert client.get(f"/api/pairs/{a.id}/agenda?days=99").status_code == 400


def test_changes_feed_and_retry_of_a_dead_notification(world: World) -> None:
    a = world.alpha
    client = world.client()
    token = login(client, "sam@alpha.example")
    page = client.get(f"/pairs/{a.id}/changes")
    assert a.secrets[3] in page.text and "dead" in page.text and "Retry" in page.text
    feed = client.get(f"/api/pairs/{a.id}/changes").json()
    assert feed["changes"][0]["notifications"][0]["state"] == "dead"
    r = client.post(f"/pairs/{a.id}/outbox/{a.entry_id}/retry", data={"csrf_token": token})
    assert r.status_code == 303
    with world.svc.uow.read() as s:
        assert s.get(OutboxEntry, a.entry_id).state == "pending"  # type: ignore[union-attr]


def test_manager_edits_priorities_and_delegates_a_task(world: World) -> None:
    a = world.alpha
    client = world.client()
    token = login(client, "alex@alpha.example")
    r = client.post(
        f"/pairs/{a.id}/priorities",
        data={"csrf_token": token, "kind": "keyword", "pattern": "Board", "level": "high"},
    )
    assert r.status_code == 303
    rules = client.get(f"/api/pairs/{a.id}/priorities").json()["rules"]
    board = next(x for x in rules if x["pattern"].lower() == "board")
    bad = client.post(
        f"/pairs/{a.id}/priorities",
        data={"csrf_token": token, "kind": "person", "pattern": "not-an-email", "level": "high"},
    )
    assert bad.status_code == 400 and "not an email address" in bad.text
    r = client.post(f"/pairs/{a.id}/priorities/{board['id']}/remove", data={"csrf_token": token})
    assert r.status_code == 303
    assert board["id"] not in [
        x["id"] for x in client.get(f"/api/pairs/{a.id}/priorities").json()["rules"]
    ]

    r = client.post(
        f"/pairs/{a.id}/tasks",
        data={
            "csrf_token": token,
            "title": "Q3 board pack",
            "delegate": "sam@alpha.example",
            "term_start": "2026-11-24T10:00",
            "deadline": "2026-12-04T17:00",
            "result": "deck approved by CFO",
            "measure": "signed off",
            "resources": "",
            "why": "board",
        },
    )
    assert r.status_code == 303
    page = client.get(r.headers["location"])
    assert "Q3 board pack" in page.text and "Red Line" in page.text and "Dead Line" in page.text
    tasks = client.get(f"/api/pairs/{a.id}/tasks").json()
    task = next(t for t in tasks["tasks"] if t["title"] == "Q3 board pack")
    assert [c["kind"] for c in task["checkpoints"]] == ["red_line", "dead_line"]
    assert task["smart"]["result"] == "deck approved by CFO"
    assert tasks["delegation_score"] is None
    listing = client.get(f"/pairs/{a.id}/tasks")
    assert "<svg" in listing.text and "Q3 board pack" in listing.text


def test_latency_figures_chart_and_csv(world: World) -> None:
    a = world.alpha
    client = world.client()
    login(client, "sam@alpha.example")
    data = client.get(f"/api/pairs/{a.id}/latency").json()
    assert data["summary"]["answered"] == 1 and data["summary"]["median_minutes"] == 20
    assert data["summary"]["wall_median_minutes"] == 20
    assert [m["subject"] for m in data["open"]] == ["Alpha open question"]
    assert data["open"][0]["waiting_minutes"] == 60
    assert sum(w["answered"] for w in data["trend"]) == 1
    page = client.get(f"/pairs/{a.id}/latency")
    assert "<svg" in page.text and "Alpha open question" in page.text
    export = client.get(f"/pairs/{a.id}/latency.csv")
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert {r["subject"] for r in rows} >= {"Alpha budget question", "Alpha open question"}


def test_accounts_settings_and_russian(world: World) -> None:
    a = world.alpha
    client = world.client()
    token = login(client, "alex@alpha.example")
    accounts = client.get(f"/api/pairs/{a.id}/accounts").json()
    assert accounts[0]["status"] == "Not synced yet."
    form = {
        "csrf_token": token,
        "timezone": "Europe/Moscow",
        "assistant_timezone": "",
        "hours_mon": "09:00-13:00, 14:00-18:00",
        "hours_tue": "10:00-18:00",
        "sla_minutes": "45",
        "quiet_start": "20:00",
        "quiet_end": "08:00",
        "digest_time": "08:30",
        "channels": ["smtp", "webhook"],
        "locale": "ru",
    }
    r = client.post(f"/pairs/{a.id}/settings", data=form)
    assert r.status_code == 303, r.text
    s = client.get(f"/api/pairs/{a.id}/settings").json()
    assert (
        s["timezone"] == "Europe/Moscow" and s["sla_minutes"] == 45 and s["digest_time"] == "08:30"
    )
    assert s["working_hours"] == {
        "mon": [["09:00", "13:00"], ["14:00", "18:00"]],
        "tue": [["10:00", "18:00"]],
    }
    assert s["quiet_hours"] == {"start": "20:00", "end": "08:00", "high_breaks_through": False}
    assert s["notify_channels"] == ["smtp", "webhook"]
    bad = client.post(f"/pairs/{a.id}/settings", data=form | {"timezone": "Mars/Olympus"})
    assert bad.status_code == 400 and "unknown time zone" in bad.text
    # Public holidays: kept with the working hours, and kept when only the week changes.
    assert client.post(f"/pairs/{a.id}/settings", data=form | {"holidays_country": "de"}).status_code == 303
    s = client.get(f"/api/pairs/{a.id}/settings").json()
    assert s["holidays_country"] == "DE"
    assert s["working_hours"]["holidays"] == {"country": "DE"}
    assert client.post(f"/pairs/{a.id}/settings", data=form | {"holidays_country": "DE", "hours_tue": ""}).status_code == 303
    s = client.get(f"/api/pairs/{a.id}/settings").json()
    assert "tue" not in s["working_hours"] and s["holidays_country"] == "DE"
    nowhere = client.post(f"/pairs/{a.id}/settings", data=form | {"holidays_country": "XX"})
    assert nowhere.status_code == 400 and "no public holidays known" in nowhere.text
    r = client.post(
        "/me/locale", data={"csrf_token": token, "locale": "ru", "next": f"/pairs/{a.id}/tasks"}
    )
    assert r.headers["location"] == f"/pairs/{a.id}/tasks"
    assert "Задачи" in client.get(f"/pairs/{a.id}/tasks").text


def test_openapi_describes_every_api_route(world: World) -> None:
    app = world.app()
    served = {
        (r.path.replace(":int", ""), m.lower())
        for r in app.routes
        if isinstance(r, Route) and r.path.startswith("/api/") and r.path != "/api/openapi.json"
        for m in (r.methods or set())
        if m != "HEAD"
    }
    assert served == set(operations())
    client = world.client()
    spec = client.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/api/pairs/{pair_id}/agenda" in spec["paths"]


def test_health_still_answers(world: World) -> None:
    client = world.client()
    r = client.get("/health")  # anonymous: ok or not ok, nothing more (tests/security)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    login(client, "sam@alpha.example")
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["database"] == "ok"
    with world.svc.uow.read() as s:
        assert s.scalars(select(OutboxEntry)).first() is not None
