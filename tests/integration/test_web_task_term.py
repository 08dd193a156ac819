"""A task's term on the web: a deadline in the past is a form error (and a 400 from the
API); a term that starts in the past needs the confirming box (``confirm_past_start``)."""

from __future__ import annotations

from sqlalchemy import select

from assistant.store.tables import DelegatedTask
from tests.support.web import World, login, world_fixture  # noqa: F401

# the world's clock: 2026-11-24 10:00 in Berlin
FORM = {"title": "Offsite agenda", "delegate": "sam@alpha.example", "result": "agenda out"}


def titles(world: World) -> list[str]:
    with world.svc.uow.read() as s:
        return list(s.scalars(select(DelegatedTask.title).order_by(DelegatedTask.id)))


def test_a_past_deadline_is_a_form_error(world: World) -> None:
    a = world.alpha
    client = world.client()
    token = login(client, "alex@alpha.example")
    before = titles(world)
    r = client.post(f"/pairs/{a.id}/tasks", data={"csrf_token": token, **FORM,
                    "term_start": "2026-11-20T09:00", "deadline": "2026-11-23T17:00",
                    "confirm_past_start": "on"})  # fmt: skip
    assert r.status_code == 400
    assert 'id="form-error"' in r.text and "the deadline 2026-11-23 17:00" in r.text
    assert "is in the past" in r.text
    assert 'value="Offsite agenda"' in r.text, "the form keeps what was typed"
    api = client.post(f"/api/pairs/{a.id}/tasks", json={**FORM, "deadline": "2026-11-24T09:00"},
                      headers={"X-CSRF-Token": token})  # fmt: skip
    assert api.status_code == 400
    assert "is in the past" in api.json()["error"]
    assert titles(world) == before


def test_a_term_that_started_asks_for_confirmation(world: World) -> None:
    a = world.alpha
    client = world.client()
    token = login(client, "alex@alpha.example")
    before = titles(world)
    data = {"csrf_token": token, **FORM, "term_start": "2026-11-23T09:00",
            "deadline": "2026-11-27T17:00"}  # fmt: skip
    r = client.post(f"/pairs/{a.id}/tasks", data=data)
    assert r.status_code == 400
    assert "starts in the past" in r.text
    assert 'name="confirm_past_start"' in r.text, "the box to confirm it"
    assert 'value="2026-11-23T09:00"' in r.text
    assert titles(world) == before
    r = client.post(f"/pairs/{a.id}/tasks", data={**data, "confirm_past_start": "on"})
    assert r.status_code == 303
    assert titles(world) == [*before, "Offsite agenda"]
    api = client.post(f"/api/pairs/{a.id}/tasks",
                      json={**FORM, "title": "Visa", "term_start": "2026-11-23T09:00",
                            "deadline": "2026-11-27T17:00"},
                      headers={"X-CSRF-Token": token})  # fmt: skip
    assert api.status_code == 400 and "starts in the past" in api.json()["error"]
    api = client.post(f"/api/pairs/{a.id}/tasks",
                      json={**FORM, "title": "Visa", "term_start": "2026-11-23T09:00",
                            "deadline": "2026-11-27T17:00", "confirm_past_start": True},
                      headers={"X-CSRF-Token": token})  # fmt: skip
    assert api.status_code == 201
    # no start given: the term starts now, nothing to confirm
    r = client.post(f"/pairs/{a.id}/tasks", data={"csrf_token": token, **FORM, "title": "Now",
                                                  "deadline": "2026-11-27T17:00"})  # fmt: skip
    assert r.status_code == 303
