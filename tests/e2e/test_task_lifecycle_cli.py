"""``assistant task`` as a user runs it against a real calendar (Radicale): cancelling an
accepted task is refused (it used to write the removed checkpoints back into the calendar
and erase the score, 1 of 1 → 0 of 0); a deadline in the past is refused and a term that
starts in the past needs ``--yes``."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from assistant.entrypoints.embedded import EmbeddedRadicale
from tests.e2e.test_cli import Cli

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def desk(tmp_path: Path, radicale: EmbeddedRadicale) -> tuple[Cli, str]:
    home = tmp_path / "home"
    home.mkdir()
    cli = Cli(home)
    cli("init", str(home))
    cli("pair", "add", "alex", "--manager", "alex@example.com", "--assistant", "sam@example.com",
        "--timezone", "Europe/Berlin")  # fmt: skip
    url = radicale.new_calendar("calendar", user="alex")
    cli("account", "add", "work", "--provider", "caldav", "--pair", "alex", "--url", url)
    return cli, url


def our_events(url: str) -> list[str]:
    """The raw VEVENTs this service wrote in the calendar (an X-property marks them)."""
    reply = httpx.request(
        "PROPFIND", url, headers={"Depth": "1"}, content=b""
    )  # the collection's members
    hrefs = [h for h in re.findall(r"<[^>]*href>([^<]+\.ics)</", reply.text)]
    events = [httpx.get(httpx.URL(url).join(h)).text for h in hrefs]
    return [e for e in events if "exec-assistant" in e]


def score_line(cli: Cli) -> str:
    return cli("tasks", "score", "--pair", "alex").stdout.splitlines()[0]


def test_cancelling_an_accepted_task_is_refused_and_writes_nothing_back(
    desk: tuple[Cli, str],
) -> None:
    cli, url = desk
    deadline = (datetime.now(BERLIN) + timedelta(days=6)).strftime("%Y-%m-%dT17:00")
    made = cli.json("task", "add", "Q3 board pack", "--pair", "alex", "--deadline", deadline)
    assert isinstance(made, dict)
    tid = str(made["id"])
    events = our_events(url)
    assert len(events) == 2
    assert all("STATUS:CONFIRMED" in e for e in events)
    accepted = cli("task", "accept", tid, "--percent", "90", "--on-time").stdout
    assert "2 event(s) removed" in accepted
    assert our_events(url) == []
    assert "1 of 1 accepted tasks good" in score_line(cli)
    refused = cli.fails("task", "cancel", tid)
    assert f"task {tid} is accepted; an accepted task cannot be cancelled" in refused
    assert our_events(url) == [], "nothing written back"
    assert "1 of 1 accepted tasks good" in score_line(cli), "the score stands"
    # an open task is cancelled, once; cancelling it again writes nothing back
    other = cli.json("task", "add", "Visa", "--pair", "alex", "--deadline", deadline)
    assert isinstance(other, dict)
    assert "2 event(s) removed" in cli("task", "cancel", str(other["id"])).stdout
    assert "already up to date" in cli("task", "cancel", str(other["id"])).stdout
    assert our_events(url) == []


def test_a_past_deadline_is_refused_and_a_past_start_needs_yes(desk: tuple[Cli, str]) -> None:
    cli, url = desk
    now = datetime.now(BERLIN)
    yesterday = (now - timedelta(days=1)).strftime("%Y-%m-%dT09:00")
    past = (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    ahead = (now + timedelta(days=4)).strftime("%Y-%m-%dT17:00")
    message = cli.fails("task", "add", "Late", "--pair", "alex", "--start", yesterday,
                        "--deadline", past, "--yes", code=2)  # fmt: skip
    assert message.startswith("error: the deadline") and "is in the past" in message
    message = cli.fails("task", "add", "Begun", "--pair", "alex", "--start", yesterday,
                        "--deadline", ahead, code=2)  # fmt: skip
    assert "starts in the past" in message and "--yes" in message
    assert our_events(url) == []
    made = cli.json("task", "add", "Begun", "--pair", "alex", "--start", yesterday,
                    "--deadline", ahead, "--yes")  # fmt: skip
    assert isinstance(made, dict)
    assert len(our_events(url)) == 2
    assert "is in the past" in cli.fails("task", "update", str(made["id"]), "--deadline", past,
                                         code=2)  # fmt: skip

