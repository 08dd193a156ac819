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
    assert "unknown provider" in cli.fails("account", "add", "x", "--provider", "fax", code=2)
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
    feed.write_text(
        head
        + vevent("a", soon, "Board meeting")
        + vevent("b", soon + timedelta(hours=3), "Lunch")
        + tail
    )
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


def _exchange(folder: Path) -> None:
    """sam asks, alex answers from another address, sam answers that; alex asks, unanswered."""
    box = Maildir(str(folder), create=True)
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    plan = [("sam", "alex", 0, "Budget"), ("alex.m", "sam", 20, "RE: Budget"),
            ("sam", "alex", 50, "RE: Budget"), ("alex", "sam", 90, "Flights")]  # fmt: skip
    for i, (frm, to, minutes, subject) in enumerate(plan):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = f"{frm}@example.com", f"{to}@example.com", subject
        msg["Date"] = format_datetime(start + timedelta(minutes=minutes))
        msg["Message-ID"] = f"<e{i}@example.com>"
        msg.set_content(f"message {i} about {subject}")
        box.add(msg)


def test_latency_table_shows_both_directions_what_it_read_and_where_files_went(
    cli: Cli, tmp_path: Path
) -> None:
    _exchange(tmp_path / "mail")
    chart, rows = tmp_path / "trend.svg", tmp_path / "records.csv"
    shown = cli("latency", "--maildir", str(tmp_path / "mail"), "--manager", "alex@example.com",
                "--manager", "alex.m@example.com", "--assistant", "sam@example.com",
                "--chart", str(chart), "--csv", str(rows)).stdout  # fmt: skip
    assert "read 4 message(s) from" in shown
    lines = {line.split("│")[1].strip(): line for line in shown.splitlines() if "→" in line}
    # assistant → manager: "Budget" answered after 20 min; manager → assistant: the
    # reply answered after 30 min (the last answer waits for nothing), "Flights" open
    a2m = [c.strip() for c in lines["assistant → manager"].split("│")[2:6]]
    m2a = [c.strip() for c in lines["manager → assistant"].split("│")[2:6]]
    assert a2m == ["1", "1", "0", "20"]
    assert m2a == ["2", "1", "1", "30"]
    assert f"written to {chart}" in shown and f"as CSV to {rows}" in shown
    assert chart.read_text().startswith("<svg") and len(rows.read_text().splitlines()) == 1 + 3
    as_json = cli.json("latency", "--maildir", str(tmp_path / "mail"), "--manager",
                       "alex@example.com", "--assistant", "sam@example.com")  # fmt: skip
    assert isinstance(as_json, dict) and as_json["read"] == 4


def test_latency_refuses_an_empty_maildir_and_a_file_that_is_not_an_mbox(
    cli: Cli, tmp_path: Path
) -> None:
    Maildir(str(tmp_path / "empty"), create=True)
    who = ("--manager", "alex@example.com", "--assistant", "sam@example.com")
    assert "holds no messages" in cli.fails("latency", "--maildir", str(tmp_path / "empty"), *who)
    assert "no Maildir folder" in cli.fails("latency", "--maildir", str(tmp_path / "gone"), *who)
    not_mbox = tmp_path / "one.eml"
    not_mbox.write_text("From: sam@example.com\nSubject: hi\n\nhello\n")
    assert "not an mbox file" in cli.fails("latency", "--mbox", str(not_mbox), *who)
    (tmp_path / "empty.mbox").write_bytes(b"")
    assert "holds no messages" in cli.fails("latency", "--mbox", str(tmp_path / "empty.mbox"), *who)
    junk = tmp_path / "junk"
    (junk / "inbox").mkdir(parents=True)
    (junk / "inbox" / "1.").write_bytes(b"\x00\x01 not a mail")
    assert "none of the 1 file(s) read is a mail" in cli.fails(
        "latency", "--maildir", str(junk), *who
    )


def test_pair_aliases_are_set_shown_and_cleared(cli: Cli) -> None:
    cli("pair", "add", "aliased", "--manager", "kim@example.com", "--assistant", "lee@example.com",
        "--manager-alias", "Kim.Park@Example.com", "--manager-alias", "kp@example.com")  # fmt: skip
    shown = cli.json("pair", "aliases", "--pair", "aliased")
    assert shown == {"manager": ["kim.park@example.com", "kp@example.com"], "assistant": []}
    changed = cli.json("pair", "aliases", "--pair", "aliased", "--assistant-alias", "l@example.com")
    assert changed == {"manager": ["kim.park@example.com", "kp@example.com"],
                       "assistant": ["l@example.com"]}  # fmt: skip
    assert "not an email address" in cli.fails("pair", "aliases", "--pair", "aliased",
                                               "--manager-alias", "nobody")  # fmt: skip
    assert cli.json("pair", "aliases", "--pair", "aliased", "--clear") == {
        "manager": [],
        "assistant": [],
    }


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
    cli(
        "priorities", "add", "protected", "mon-fri 07:00-09:00", "--level", "high", "--pair", "alex"
    )
    cli("priorities", "add", "keyword", "gym", "--level", "low", "--pair", "alex")
    rules = cli.json("priorities", "--pair", "alex")
    assert isinstance(rules, list)
    assert [r["level"] for r in rules] == ["high", "high", "low"]
    assert set(rules[0]) == {"id", "kind", "pattern", "level", "note", "text"}
    texts = {r["kind"]: r["text"] for r in rules}
    assert texts["domain"] == "high: with anyone at bigcorp.com (board)"
    assert "not protected time" in cli.fails(
        "priorities", "add", "protected", "someday", "--pair", "alex"
    )
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
        msg["Subject"], msg["Date"], msg["Message-ID"] = (
            f"Topic {mid[1]}",
            format_datetime(at),
            f"<{mid}@x>",
        )
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
        ("2026-11-09", pytest.approx(20)),
        ("2026-11-16", pytest.approx(45)),
    ]
    svg = chart.read_text()
    assert svg.startswith("<svg") and svg.count("<rect") == 2
    assert "SLA 30 working min" in svg
    assert 'fill="#c0392b"' in svg, "the week over the SLA is red"
    rows = table_csv.read_text().splitlines()
    assert rows[0].startswith("id,direction,subject,sent_at")
    assert len(rows) == 1 + 2  # m1 and m3; m2 and m4 answer them and wait for nothing
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
    assert "empty or not set" in cli.fails(
        "user", "add", "x@example.com", "--password-env", "NOPE_NOT_SET"
    )


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
    assert "client_secret: must be a reference" in cli.fails(
        "account", "add", "bad", "--pair", "alex", "--provider", "graph",
        "--setting", "client_secret=plain-text-secret", code=2,
    )  # fmt: skip
    assert "key=env:VAR" in cli.fails("account", "add", "bad2", "--pair", "alex", "--provider", "graph",
                                      "--secret", "client_secret=plain")  # fmt: skip


def test_without_settings_a_command_says_so_and_creates_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    done = subprocess.run(
        [*command(), "pair", "list"], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "error: no settings: run `assistant init` or set ASSISTANT_CONFIG (or pass --config FILE)"
    )
    assert list(tmp_path.iterdir()) == [], "no database, no key, no folder"
    init = subprocess.run(
        [*command(), "init", "."], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    again = subprocess.run(
        [*command(), "pair", "list", "--json"], env=env, cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr  # the assistant.toml init wrote here is found
    assert json.loads(again.stdout) == []


@pytest.mark.parametrize(
    ("args", "usage", "says"),
    [
        (["synk"], "Usage: assistant [OPTIONS] COMMAND", "No such command 'synk'"),
        (["bogus"], "Usage: assistant [OPTIONS] COMMAND", "No such command 'bogus'"),
        (["sync", "--bogus"], "Usage: assistant sync [OPTIONS]", "No such option: --bogus"),
        (["pair"], "Usage: assistant pair [OPTIONS] COMMAND", ""),
        (
            ["task", "accept", "1", "--percent", "150"],
            "Usage: assistant task accept [OPTIONS]",
            "Invalid value for '--percent'",
        ),
    ],
)
def test_usage_mistakes_print_the_usage_line_and_exit_2(
    cli: Cli, args: list[str], usage: str, says: str
) -> None:
    done = cli(*args, ok=False)
    assert done.returncode == 2, (done.stdout, done.stderr)
    shown = done.stdout + done.stderr
    assert usage in shown
    assert says in shown
    assert "internal error" not in shown and "Traceback" not in shown
