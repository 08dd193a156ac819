"""Checkpoint prompts, the signed feedback page, stored answers and the delegation score.

Real store (SQLite and PostgreSQL), the real Starlette page over its ASGI interface.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from starlette.applications import Starlette
from starlette.testclient import TestClient

from assistant.bootstrap import Service
from assistant.domain.feedback import Confidence, FeedbackAnswer
from assistant.entrypoints.web.feedback import routes
from assistant.services import delegation, feedback
from assistant.services.pairs import add_pair
from assistant.store.db import UnitOfWork
from assistant.store.tables import Checkpoint, DelegatedTask, OutboxEntry, TaskFeedback
from config.settings import Settings
from tests.support.deps import deps_for

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def svc(uow: UnitOfWork, tmp_path: Path) -> Service:
    service = Service(settings=Settings(data_dir=tmp_path), engine=uow.engine, uow=uow, clock=Clock())
    add_pair(deps_for(uow, NOW), name="alex", manager_email="alex@example.com", assistant_email="sam@example.com",
             timezone="Europe/Berlin")  # fmt: skip
    return service


def task(svc: Service, title: str = "Board pack", delegate: str = "") -> int:
    return delegation.create_task(
        svc, pair="alex", title=title, delegate=delegate, term_start=NOW,
        deadline=NOW + timedelta(days=4),
    ).id  # fmt: skip


def link(svc: Service, task_id: int, kind: str, who: str = "alex@example.com") -> str:
    with svc.uow.read() as s:
        t = s.get(DelegatedTask, task_id)
        assert t is not None
        return feedback.feedback_link(svc.settings, task_id, t.deadline, kind, who)


def client(svc: Service) -> TestClient:
    return TestClient(Starlette(routes=routes(svc)), base_url="http://127.0.0.1:8000")


def path(url: str) -> str:
    return url.removeprefix("http://127.0.0.1:8000")


def answer(c: TestClient, url: str, **fields: str) -> int:
    page = c.get(path(url))
    assert page.status_code == 200
    csrf = c.cookies.get("fb_csrf")
    assert csrf
    return c.post(path(url), data={"csrf": csrf, **fields}).status_code


def test_a_dead_line_answer_is_stored_accepts_the_task_and_counts(svc: Service) -> None:
    tid = task(svc)
    c = client(svc)
    url = link(svc, tid, "dead_line")
    page = c.get(path(url))
    assert 'name="viewport"' in page.text, "made for a phone"
    assert "Board pack" in page.text and "How much is done?" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert answer(c, url, percent_done="90", on_time="yes", quality="solid", comment="Great") == 200
    [row] = feedback.feedback_of(svc, tid)
    assert (row.percent_done, row.on_time, row.source) == (90, True, "web")
    with svc.uow.read() as s:
        assert s.get(DelegatedTask, tid).state == "accepted"  # type: ignore[union-attr]
    score = feedback.score(svc, "alex")
    assert (score.accepted, score.good, score.share) == (1, 1, 1.0)


def test_the_same_form_twice_is_one_answer(svc: Service) -> None:
    tid = task(svc)
    c = client(svc)
    url = link(svc, tid, "red_line")
    c.get(path(url))
    csrf = c.cookies.get("fb_csrf")
    form = {"csrf": csrf, "percent_done": "40", "on_track": "no", "needs_help": "yes"}
    assert c.post(path(url), data=form).status_code == 200
    assert c.post(path(url), data=form).status_code == 200
    rows = feedback.feedback_of(svc, tid)
    assert len(rows) == 1
    assert (rows[0].on_track, rows[0].needs_help) == (False, True)
    with svc.uow.read() as s:
        assert s.get(DelegatedTask, tid).state == "in_progress"  # type: ignore[union-attr]


def test_tampered_expired_and_cross_site_posts_are_refused(svc: Service) -> None:
    tid = task(svc)
    c = client(svc)
    url = link(svc, tid, "dead_line")
    token = url.rsplit("/", 1)[1]
    body, mac = token.rsplit(".", 1)
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    assert c.get(f"/feedback/{body}.{flipped}").status_code == 403
    assert c.get("/feedback/not-a-token").status_code == 403
    # No CSRF cookie (a post from another site): refused, nothing stored.
    other = TestClient(Starlette(routes=routes(svc)))
    assert other.post(path(url), data={"csrf": "x", "percent_done": "100", "on_time": "yes"}).status_code == 403
    assert feedback.feedback_of(svc, tid) == []
    # A link for another task's id cannot be forged by editing the payload.
    assert c.get(path(url).replace(body, body[:-2] + "AA")).status_code == 403
    # Past its expiry (14 days after the deadline): gone.
    svc.clock.now = NOW + timedelta(days=4 + 15)  # type: ignore[attr-defined]
    expired = c.get(path(url))
    assert expired.status_code == 410
    assert "expired" in expired.text


def test_prompts_at_the_line_go_once_to_manager_and_delegate(svc: Service) -> None:
    tid = task(svc, delegate="kim@example.com")
    with svc.uow.begin() as s:  # as if written to a calendar
        s.execute(update(Checkpoint).where(Checkpoint.start_at.is_not(None)).values(state="written"))
        red = s.scalars(select(Checkpoint).where(Checkpoint.kind == "red_line")).one()
        red_id, start = red.id, red.start_at
    assert start is not None
    assert feedback.send_prompt(svc, red_id, "2026-01-01T00:00:00+00:00") == [], "moved since"
    ids = feedback.send_prompt(svc, red_id, start.isoformat())
    assert len(ids) == 2
    assert feedback.send_prompt(svc, red_id, start.isoformat()) == []
    with svc.uow.read() as s:
        rows = s.scalars(select(OutboxEntry).order_by(OutboxEntry.recipient)).all()
        mails = {r.recipient: r.body_text for r in rows}
    assert set(mails) == {"alex@example.com", "kim@example.com"}
    assert "Does the work match the agreed parameters" in mails["alex@example.com"]
    assert "/feedback/v1." in mails["alex@example.com"]
    assert mails["kim@example.com"].startswith("A self-report")
    kim_link = next(line for line in mails["kim@example.com"].split() if "/feedback/" in line)
    target = feedback.open_link(svc.settings, kim_link.rsplit("/", 1)[1], NOW)
    assert (target.task_id, target.kind, target.respondent) == (tid, "red_line", "kim@example.com")


def test_score_per_manager_and_delegate(svc: Service) -> None:
    outcomes = [("A", "sam@example.com", 90, True), ("B", "sam@example.com", 70, True),
                ("C", "kim@example.com", 100, False), ("D", "kim@example.com", 80, True)]  # fmt: skip
    for title, who, percent, on_time in outcomes:
        tid = task(svc, title, who)
        feedback.record_answer(
            svc, task_id=tid, kind="dead_line", source="cli", respondent="alex@example.com",
            answer=FeedbackAnswer(percent, on_time, False, None, None, "", Confidence.HIGH),
        )  # fmt: skip
    task(svc, "E")  # still open
    score = feedback.score(svc, "alex")
    assert (score.accepted, score.good, score.open) == (4, 2, 1)
    assert score.share == pytest.approx(0.5)
    assert score.good_delegation is False
    per = {d.delegate: d for d in score.delegates}
    assert per["kim@example.com"].share == pytest.approx(0.5)
    assert per["sam@example.com"].mean_percent == pytest.approx(80)
    with svc.uow.read() as s:
        assert len(s.scalars(select(TaskFeedback)).all()) == 4
