"""Signed feedback links: a recorded Dead Line answer is final for its link.

Before, a Dead Line link could be posted again after the task was accepted (a replay of the
same link, by whoever holds it) and rewrote the delegation score. Now the link shows the
recorded answer, read only; a correction takes the manager's signed-in session (the API) or
the operator (``assistant task accept``), and the earlier answer stays as history. How much
is done is a finite number from 0 to 100 on the form and the API: anything else is a 400
with a message, never a 500.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from assistant.bootstrap import build
from assistant.entrypoints.web.feedback import routes
from assistant.services import feedback
from assistant.store.tables import DelegatedTask
from config.settings import load
from tests.e2e.test_cli import Cli
from tests.support.web import World, login, world_fixture  # noqa: F401

BAD_PERCENTS = ["inf", "-inf", "1e400", "NaN", "-1", "101", "abc", "9" * 400]


def dead_line_link(world: World) -> str:
    svc, task_id = world.svc, world.alpha.task_id
    with svc.uow.read() as s:
        task = s.get(DelegatedTask, task_id)
        assert task is not None
        url = feedback.feedback_link(svc.settings, task_id, task.deadline, "dead_line",
                                     task.delegator)  # fmt: skip
    return "/feedback/" + url.rsplit("/feedback/", 1)[1]


def post_answer(c: TestClient, path: str, **fields: str) -> int:
    page = c.get(path)
    csrf = c.cookies.get("fb_csrf")
    assert page.status_code == 200 and csrf, page.text
    return c.post(path, data={"csrf": csrf, **fields}).status_code


def dead_line_rows(world: World) -> list[feedback.FeedbackEntry]:
    rows = feedback.feedback_of(world.svc, world.alpha.task_id)
    return [r for r in rows if r.kind == "dead_line"]


def api_token(c: TestClient) -> str:
    token = c.get("/api/me").json()["csrf_token"]
    assert isinstance(token, str)
    return token


def test_a_recorded_dead_line_answer_cannot_be_replayed_through_the_link(world: World) -> None:
    link = dead_line_link(world)
    c = world.client()
    assert post_answer(c, link, percent_done="90", on_time="yes", comment="Great") == 200
    assert feedback.score(world.svc, world.alpha.id).good == 1
    # The same link again, with another answer (the cookie from before still in hand).
    csrf = c.cookies.get("fb_csrf")
    replay = c.post(link, data={"csrf": csrf, "percent_done": "10", "on_time": "no"})
    assert replay.status_code == 409
    assert "recorded" in replay.text and "90 %" in replay.text
    [row] = dead_line_rows(world)
    assert (row.percent_done, row.on_time) == (90, True)
    assert feedback.score(world.svc, world.alpha.id).good == 1
    # Opening it shows the answer, read only: no form to send.
    shown = c.get(link)
    assert shown.status_code == 200 and "90 %" in shown.text and "Great" in shown.text
    assert "<form" not in shown.text
    # The same form sent twice (a double tap) is still one answer, and says so kindly.
    again = c.post(link, data={"csrf": csrf, "comment": "Great", "on_time": "yes",
                               "percent_done": "90"})  # fmt: skip
    assert again.status_code == 200 and len(dead_line_rows(world)) == 1


def test_the_manager_corrects_an_answer_signed_in_and_the_first_stays_as_history(
    world: World,
) -> None:
    link = dead_line_link(world)
    assert post_answer(world.client(), link, percent_done="90", on_time="yes") == 200
    url = f"/api/pairs/{world.alpha.id}/tasks/{world.alpha.task_id}/dead-line"
    body = {"percent_done": 50, "on_time": False, "comment": "half of it, late"}
    # Without a session, or as the assistant: refused.
    anonymous = world.client()
    assert anonymous.post(url, json=body).status_code == 401
    assistant = world.client()
    login(assistant, "sam@alpha.example")
    r = assistant.post(url, json=body, headers={"X-CSRF-Token": api_token(assistant)})
    assert r.status_code == 403
    manager = world.client()
    login(manager, "alex@alpha.example")
    token = api_token(manager)
    assert manager.post(url, json=body).status_code == 403, "no CSRF token"
    r = manager.post(url, json=body, headers={"X-CSRF-Token": token})
    assert r.status_code == 200, r.text
    first, second = dead_line_rows(world)
    assert (first.percent_done, first.superseded) == (90, True)
    assert (second.percent_done, second.on_time, second.superseded) == (50, False, False)
    assert second.source == "manager"
    score = feedback.score(world.svc, world.alpha.id)
    assert (score.accepted, score.good) == (1, 0)
    # The link now shows the corrected answer and still cannot change it.
    assert "50 %" in world.client().get(link).text
    # Another pair's task is not reachable through this pair.
    other = f"/api/pairs/{world.alpha.id}/tasks/{world.bravo.task_id}/dead-line"
    assert manager.post(other, json=body, headers={"X-CSRF-Token": token}).status_code == 404


@pytest.mark.parametrize("raw", BAD_PERCENTS)
def test_how_much_is_done_out_of_range_on_the_form_is_a_plain_400(world: World, raw: str) -> None:
    link = dead_line_link(world)
    c = world.client()
    r_status = post_answer(c, link, percent_done=raw, on_time="yes")
    assert r_status == 400
    page = c.post(link, data={"csrf": c.cookies.get("fb_csrf") or "", "percent_done": raw,
                              "on_time": "yes"})  # fmt: skip
    assert page.status_code == 400 and "a number from 0 to 100" in page.text
    assert dead_line_rows(world) == []


@pytest.mark.parametrize("raw", ["1e400", "-1e400", "NaN", "Infinity", "-1", "101", "true",
                                 '"ninety"', "null"])  # fmt: skip
def test_how_much_is_done_out_of_range_on_the_api_is_a_plain_400(world: World, raw: str) -> None:
    manager = world.client()
    login(manager, "alex@alpha.example")
    url = f"/api/pairs/{world.alpha.id}/tasks/{world.alpha.task_id}/dead-line"
    r = manager.post(url, content=f'{{"percent_done": {raw}, "on_time": true}}',
                     headers={"X-CSRF-Token": api_token(manager),
                              "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 400
    error = r.json()["error"]
    if raw in ("1e400", "-1e400", "NaN", "Infinity"):  # refused by the JSON reader itself
        assert error.startswith("the body is not JSON we accept")
    else:
        assert "percent_done must be a number from 0 to 100" in error
    assert dead_line_rows(world) == []


def test_the_operator_corrects_through_the_cli(tmp_path: Path) -> None:
    home = tmp_path
    cli = Cli(home)
    cli("init", str(home))
    cli("pair", "add", "alex", "--manager", "alex@example.com", "--assistant", "sam@example.com")
    deadline = (datetime.now(UTC) + timedelta(days=5)).strftime("%Y-%m-%dT17:00")
    task = cli.json("task", "add", "Board pack", "--deadline", deadline, "--pair", "alex")
    assert isinstance(task, dict)
    svc = build(load(home / "assistant.toml"))
    try:
        url = feedback.feedback_link(svc.settings, task["id"],
                                     svc.now() + timedelta(days=30), "dead_line",
                                     "alex@example.com")  # fmt: skip
        c = TestClient(Starlette(routes=routes(svc)))
        path = "/feedback/" + url.rsplit("/feedback/", 1)[1]
        assert post_answer(c, path, percent_done="100", on_time="yes") == 200
        assert post_answer_again(c, path) == 409
    finally:
        svc.engine.dispose()
    cli("task", "accept", str(task["id"]), "--percent", "60", "--late")
    rows = cli.json("task", "feedback", str(task["id"]))
    assert isinstance(rows, list)
    assert [(r["percent_done"], r["source"], r["superseded"]) for r in rows] == [
        (100, "web", True), (60, "cli", False)
    ]
    score = cli.json("task", "score", "--pair", "alex")
    assert isinstance(score, dict) and (score["accepted"], score["good"]) == (1, 0)


def post_answer_again(c: TestClient, path: str) -> int:
    csrf = c.cookies.get("fb_csrf") or ""
    assert re.search(r"100 %", c.get(path).text)
    return c.post(path, data={"csrf": csrf, "percent_done": "0", "on_time": "no"}).status_code
