"""The ``assistant`` command as a user runs it: a real process, a real config and database.

User mistakes give one line on stderr and a non-zero exit, never a traceback; data
commands print JSON with ``--json``; ``assistant run`` serves /health and stops cleanly
on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from mailbox import Maildir
from pathlib import Path

import httpx
import pytest

from assistant.entrypoints.embedded import free_port

BIN = Path(sys.executable).with_name("assistant")


def command() -> list[str]:
    return [str(BIN)] if BIN.exists() else [sys.executable, "-m", "assistant.entrypoints.cli.app"]


class Cli:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {
            **os.environ,
            "ASSISTANT_CONFIG": str(home / "assistant.toml"),
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }
        self.env.pop("ASSISTANT_DEBUG", None)

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*command(), *args], env=self.env, capture_output=True, text=True, timeout=60,
            cwd=self.home,
        )  # fmt: skip
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    def json(self, *args: str) -> object:
        return json.loads(self(*args, "--json").stdout)

    def fails(self, *args: str, code: int = 1) -> str:
        """Run a command that must fail: its one-line message."""
        done = self(*args, ok=False)
        assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, done.stderr
        return lines[0]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    home = tmp_path_factory.mktemp("cli")
    c = Cli(home)
    c("init", str(home))
    assert (home / "assistant.toml").exists()
    c("pair", "add", "alex", "--manager", "alex@example.com", "--assistant", "sam@example.com",
      "--manager-name", "Alex Morgan", "--timezone", "Europe/Berlin")  # fmt: skip
    return c


def test_pairs_and_one_line_errors(cli: Cli) -> None:
    pairs = cli.json("pair", "list")
    assert isinstance(pairs, list)
    assert [p["name"] for p in pairs] == ["alex"]
    assert pairs[0]["timezone"] == "Europe/Berlin"
    assert "not an email address" in cli.fails(
        "pair", "add", "bob", "--manager", "nope", "--assistant", "sam@example.com"
    )
    assert "unknown time zone" in cli.fails(
        "pair", "add", "bob", "--manager", "b@example.com", "--assistant", "s@example.com",
        "--timezone", "Mars/Olympus",
    )  # fmt: skip
    assert "alex" in cli.fails(
        "pair", "add", "alex", "--manager", "a@example.com", "--assistant", "s@example.com"
    )
    assert "unknown provider" in cli.fails("account", "add", "x", "--provider", "fax")
    assert cli.fails("task", "show", "999").startswith("error:")
    assert "not a date/time" in cli.fails("task", "add", "Report", "--deadline", "next-ish")


def test_a_broken_config_is_reported_whole(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[queue]\nbackend = "kafka"\n[outbox]\nmax_attempts = 0\n')
    done = cli("--config", str(bad), "pair", "list", ok=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "queue.backend" in done.stderr
    assert "outbox.max_attempts" in done.stderr
    assert "file not found" in cli.fails("--config", str(tmp_path / "nope.toml"), "pair", "list",
                                         code=2)  # fmt: skip


def vevent(uid: str, start: datetime, summary: str) -> str:
    fmt = "%Y%m%dT%H%M%S"
    end = start + timedelta(hours=1)
    return (
        f"BEGIN:VEVENT\nUID:{uid}\nDTSTAMP:20261101T000000Z\n"
        f"DTSTART;TZID=Europe/Berlin:{start:{fmt}}\nDTEND;TZID=Europe/Berlin:{end:{fmt}}\n"
        f"SUMMARY:{summary}\nEND:VEVENT\n"
    )


def test_sync_changes_and_outbox_from_an_ics_file(cli: Cli, tmp_path: Path) -> None:
    feed = tmp_path / "calendar.ics"
    soon = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    head, tail = "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//EN\n", "END:VCALENDAR\n"
    feed.write_text(head + vevent("a", soon, "Board meeting") + vevent("b", soon + timedelta(hours=3), "Lunch") + tail)
    cli("account", "add", "feed", "--pair", "alex", "--provider", "ics", "--path", str(feed))
    accounts = cli.json("account", "list")
    assert isinstance(accounts, list)
    assert [a["provider"] for a in accounts] == ["ics"]
    first = cli.json("sync", "--pair", "alex", "--no-send")
    assert isinstance(first, list)
    assert first[0]["full"] is True
    assert first[0]["changes"] == []
    feed.write_text(head + vevent("a", soon + timedelta(hours=1), "Board meeting") + tail)
    second = cli.json("sync", "--pair", "alex", "--no-send")
    assert isinstance(second, list)
    assert sorted(second[0]["changes"]) == ["cancelled", "moved"] or sorted(
        second[0]["changes"]
    ) == ["deleted", "moved"]
    changes = cli.json("changes", "--pair", "alex")
    assert isinstance(changes, list)
    assert {c["summary"] for c in changes} >= {"Board meeting", "Lunch"}
    queued = cli.json("outbox")
    assert isinstance(queued, list)
    assert len(queued) == 1, "two changes in one sync are one message"
    assert queued[0]["state"] == "pending"
    assert queued[0]["recipient"] == "sam@example.com"
    # `assistant changes` says which message told the assistant about each change (it said
    # "—" while it looked for the batch id that notifications no longer carry)
    told = f"{queued[0]['channel']}:{queued[0]['state']}"
    assert [c["notified"] for c in changes] == [told] * len(changes)
    # the --json objects keep their keys now that the services return typed views
    assert set(changes[0]) == {"id", "batch_id", "detected_at", "kind", "kinds", "summary",
                               "starts_at", "before", "after", "notified"}  # fmt: skip
    assert set(queued[0]) == {"id", "key", "state", "channel", "recipient", "subject",
                              "attempts", "last_error", "created_at", "sent_at"}  # fmt: skip


def test_tasks_without_a_writable_calendar(cli: Cli) -> None:
    deadline = (datetime.now(UTC) + timedelta(days=5)).strftime("%Y-%m-%dT17:00")
    made = cli.json("task", "add", "Q3 board pack", "--pair", "alex", "--deadline", deadline,
                    "--result", "Deck approved")  # fmt: skip
    assert isinstance(made, dict)
    task_id = made["id"]
    shown = cli.json("task", "show", str(task_id))
    assert isinstance(shown, dict)
    assert shown["title"] == "Q3 board pack"
    assert shown["deadline"].startswith(deadline)
    assert [c["kind"] for c in shown["checkpoints"]] == ["red_line", "dead_line"]
    listed = cli.json("task", "list", "--pair", "alex")
    assert isinstance(listed, list)
    assert task_id in [t["id"] for t in listed]
    cli("task", "cancel", str(task_id))
    shown = cli.json("task", "show", str(task_id))
    assert isinstance(shown, dict)
    assert shown["state"] == "cancelled"


def test_latency_on_an_exported_maildir(cli: Cli, tmp_path: Path) -> None:
    box = Maildir(str(tmp_path / "mail"), create=True)
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday
    for i, (frm, to, minutes, reply_to) in enumerate(
        [("sam", "alex", 0, None), ("alex", "sam", 12, 0), ("sam", "alex", 60, None)]
    ):
        msg = EmailMessage()
        msg["From"], msg["To"] = f"{frm}@example.com", f"{to}@example.com"
        msg["Subject"] = "Budget" if i < 2 else "Flights"
        msg["Date"] = format_datetime(start + timedelta(minutes=minutes))
        msg["Message-ID"] = f"<m{i}@example.com>"
        if reply_to is not None:
            msg["In-Reply-To"] = f"<m{reply_to}@example.com>"
        msg.set_content("text")
        box.add(msg)
    result = cli.json("latency", "--maildir", str(tmp_path / "mail"),
                      "--manager", "alex@example.com", "--assistant", "sam@example.com")  # fmt: skip
    assert isinstance(result, dict)
    summary = result["summary"]
    assert (summary["count"], summary["answered"], summary["open"]) == (2, 1, 1)
    assert summary["median_minutes"] == pytest.approx(12)
    by_id = {m["id"].strip("<>"): m for m in result["messages"]}
    assert by_id["m0@example.com"]["wall_minutes"] == pytest.approx(12)
    assert by_id["m2@example.com"]["replied_at"] is None


def test_run_serves_health_and_stops_on_ctrl_c(cli: Cli) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*command(), "run", "--host", "127.0.0.1", "--port", str(port)],
        env=cli.env, cwd=cli.home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        body = None
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                body = r.json()
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert body is not None, "no /health within 30 s"
        assert body["status"] in ("ok", "degraded")
        proc.send_signal(signal.SIGINT)
        _out, errors = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, errors
    assert "Traceback" not in errors


def test_priorities_are_added_listed_and_removed(cli: Cli) -> None:
    cli("priorities", "add", "domain", "bigcorp.com", "--pair", "alex", "--note", "board")
    cli("priorities", "add", "protected", "mon-fri 07:00-09:00", "--level", "high", "--pair", "alex")
    cli("priorities", "add", "keyword", "gym", "--level", "low", "--pair", "alex")
    rules = cli.json("priorities", "--pair", "alex")
    assert isinstance(rules, list)
    assert [r["level"] for r in rules] == ["high", "high", "low"]
    assert set(rules[0]) == {"id", "kind", "pattern", "level", "note", "text"}
    texts = {r["kind"]: r["text"] for r in rules}
    assert texts["domain"] == "high: with anyone at bigcorp.com (board)"
    assert "not protected time" in cli.fails("priorities", "add", "protected", "someday", "--pair", "alex")
    gym = next(r["id"] for r in rules if r["pattern"] == "gym")
    cli("priorities", "remove", str(gym), "--pair", "alex")
    assert "no priority rule" in cli.fails("priorities", "remove", str(gym), "--pair", "alex")


def test_latency_in_working_time_with_chart_and_csv(cli: Cli, tmp_path: Path) -> None:
    box = Maildir(str(tmp_path / "mail"), create=True)
    # Mon 9 Nov 2026, 17:50 Berlin (16:50 UTC) → answered Tue 09:10: 20 working minutes.
    # The week after: answered within 45 minutes on a Monday.
    plan = [("m1", "sam", "alex", datetime(2026, 11, 9, 16, 50, tzinfo=UTC), None),
            ("m2", "alex", "sam", datetime(2026, 11, 10, 8, 10, tzinfo=UTC), "m1"),
            ("m3", "sam", "alex", datetime(2026, 11, 16, 9, 0, tzinfo=UTC), None),
            ("m4", "alex", "sam", datetime(2026, 11, 16, 9, 45, tzinfo=UTC), "m3")]  # fmt: skip
    for mid, frm, to, at, reply_to in plan:
        msg = EmailMessage()
        msg["From"], msg["To"] = f"{frm}@example.com", f"{to}@example.com"
        msg["Subject"], msg["Date"], msg["Message-ID"] = f"Topic {mid[1]}", format_datetime(at), f"<{mid}@x>"
        if reply_to:
            msg["In-Reply-To"] = f"<{reply_to}@x>"
        msg.set_content("text")
        box.add(msg)
    chart, table_csv = tmp_path / "trend.svg", tmp_path / "records.csv"
    result = cli.json("latency", "--maildir", str(tmp_path / "mail"), "--manager", "alex@example.com",
                      "--assistant", "sam@example.com", "--timezone", "Europe/Berlin",
                      "--holidays", "DE", "--chart", str(chart), "--csv", str(table_csv))  # fmt: skip
    assert isinstance(result, dict)
    assert result["basis"] == "working"
    by_id = {m["id"].strip("<>"): m for m in result["messages"]}
    assert by_id["m1@x"]["working_minutes"] == pytest.approx(20)
    assert by_id["m1@x"]["wall_minutes"] == pytest.approx(15 * 60 + 20)
    assert [(w["week"], w["median_minutes"]) for w in result["weekly"]] == [
        ("2026-11-09", pytest.approx(20)), ("2026-11-16", pytest.approx(45))
    ]
    svg = chart.read_text()
    assert svg.startswith("<svg") and svg.count("<rect") == 2
    assert "SLA 30 working min" in svg
    assert 'fill="#c0392b"' in svg, "the week over the SLA is red"
    rows = table_csv.read_text().splitlines()
    assert rows[0].startswith("id,direction,subject,sent_at")
    assert len(rows) == 1 + 4
    assert "unknown time zone" in cli.fails("latency", "--maildir", str(tmp_path / "mail"),
                                            "--manager", "a@x.org", "--assistant", "s@x.org",
                                            "--timezone", "Nowhere/City")  # fmt: skip


def test_task_feedback_accept_and_score(cli: Cli) -> None:
    deadline = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT17:00")
    made = cli.json("task", "add", "Offsite agenda", "--pair", "alex", "--deadline", deadline,
                    "--delegate", "kim@example.com")  # fmt: skip
    assert isinstance(made, dict)
    tid = str(made["id"])
    assert "after acceptance" in cli.fails("task", "step", tid, "praised")
    cli("task", "step", tid, "understood")  # the delegate retold the task
    answers = cli.json("task", "feedback", tid, "Сделано на 50%, идём по плану")
    assert isinstance(answers, list)
    assert (answers[0]["percent_done"], answers[0]["on_track"]) == (50, True)
    assert "not sure" in cli.fails("task", "feedback", tid, "hmm")
    accepted = cli.json("task", "accept", tid, "--percent", "90", "--on-time")
    assert isinstance(accepted, dict)
    assert accepted["good_delegation"] is True
    cli("task", "step", tid, "praised")
    shown = cli.json("task", "show", tid)
    assert isinstance(shown, dict)
    assert shown["state"] == "praised"
    assert "already praised" in cli.fails("task", "step", tid, "understood")
    score = cli.json("tasks", "score", "--pair", "alex")
    assert isinstance(score, dict)
    assert score["accepted"] >= 1
    assert "kim@example.com" in [d["delegate"] for d in score["delegates"]]


def test_users_for_the_web_app(cli: Cli) -> None:
    cli.env["TEST_WEB_PASSWORD"] = "correct horse battery staple"
    cli("user", "add", "sam@example.com", "--role", "assistant", "--pair", "alex",
        "--password-env", "TEST_WEB_PASSWORD")  # fmt: skip
    users = cli.json("user", "list")
    assert isinstance(users, list)
    [sam] = [u for u in users if u["email"] == "sam@example.com"]
    assert sam["pairs"] == ["alex:assistant"]
    assert set(sam) == {"id", "email", "name", "role", "organisation", "active", "password",
                        "pairs"}  # fmt: skip
    assert "empty or not set" in cli.fails("user", "add", "x@example.com", "--password-env", "NOPE_NOT_SET")


def test_accounts_for_any_provider_keep_secrets_as_references(cli: Cli) -> None:
    cli("account", "add", "exchange", "--pair", "alex", "--provider", "ews",
        "--setting", "mailbox=alex@corp.example", "--setting", "service_endpoint=https://mail.corp.example/EWS/Exchange.asmx",
        "--username", "corp\\alex", "--password-env", "EWS_PASSWORD")  # fmt: skip
    cli("account", "add", "m365", "--pair", "alex", "--provider", "graph",
        "--setting", "user=alex@corp.example", "--setting", "tenant=corp.example",
        "--setting", "client_id=abc", "--secret", "client_secret=env:GRAPH_SECRET")  # fmt: skip
    accounts = cli.json("account", "list", "--pair", "alex")
    assert isinstance(accounts, list)
    by_name = {a["name"]: a for a in accounts}
    assert by_name["exchange"]["kind"] == "calendar"
    assert by_name["m365"]["settings"]["client_secret"] == "<env reference>"  # not even the name
    assert "must be a reference" in cli.fails(
        "account", "add", "bad", "--pair", "alex", "--provider", "graph",
        "--setting", "client_secret=plain-text-secret",
    )  # fmt: skip
    assert "key=env:VAR" in cli.fails("account", "add", "bad2", "--pair", "alex", "--provider", "graph",
                                      "--secret", "client_secret=plain")  # fmt: skip
