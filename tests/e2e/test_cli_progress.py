"""Long work shows progress on a terminal, and only there: ``assistant latency`` on a big
Maildir and the first ``assistant sync`` draw a progress line while they run when stdout
is a terminal (a pseudo-terminal here), and nothing of it when stdout is a pipe or the
output is --json.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from mailbox import Maildir
from pathlib import Path

import pytest

from tests.e2e.test_cli import Cli, command

MESSAGES = 400
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(drawn: str) -> str:
    return ANSI.sub("", drawn)


def on_a_terminal(cli: Cli, *args: str) -> tuple[int, str]:
    """Run with stdout on a pseudo-terminal: the exit status and every byte written."""
    leader, follower = pty.openpty()
    env = {**cli.env, "TERM": "xterm"}
    proc = subprocess.Popen([*command(), *args], env=env, cwd=cli.home, stdout=follower,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    proc.wait(timeout=120)
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read().decode()
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    home = tmp_path_factory.mktemp("progress")
    c = Cli(home)
    c("init", str(home))
    c("pair", "add", "alex", "--manager", "alex@example.com", "--assistant", "sam@example.com")
    box = Maildir(str(home / "mail"), create=True)
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    for i in range(MESSAGES):
        msg = EmailMessage()
        frm, to = ("sam", "alex") if i % 2 == 0 else ("alex", "sam")
        msg["From"], msg["To"] = f"{frm}@example.com", f"{to}@example.com"
        msg["Subject"] = f"Topic {i // 2}"
        msg["Date"] = format_datetime(start + timedelta(minutes=7 * i))
        msg["Message-ID"] = f"<m{i}@example.com>"
        if i % 2:
            msg["In-Reply-To"] = f"<m{i - 1}@example.com>"
        msg.set_content("text")
        box.add(msg)
    return c


LATENCY = ("latency", "--maildir", "mail", "--manager", "alex@example.com",
           "--assistant", "sam@example.com")  # fmt: skip


def test_a_big_maildir_shows_progress_on_a_terminal_only(cli: Cli) -> None:
    code, drawn = on_a_terminal(cli, *LATENCY)
    assert code == 0
    assert "reading mail" in drawn and f"/{MESSAGES}" in drawn, "a bar with the count"
    assert f"read {MESSAGES} message(s)" in plain(drawn)
    piped = cli(*LATENCY).stdout
    assert "reading mail" not in piped and f"read {MESSAGES} message(s)" in piped
    code, as_json = on_a_terminal(cli, *LATENCY, "--json")
    assert code == 0 and "reading mail" not in as_json


def test_the_first_sync_shows_progress_and_says_baseline(cli: Cli, tmp_path: Path) -> None:
    feed = tmp_path / "cal.ics"
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    events = "".join(
        f"BEGIN:VEVENT\r\nUID:e{i}\r\nDTSTAMP:20261101T000000Z\r\n"
        f"DTSTART:{start + timedelta(hours=i):%Y%m%dT%H%M%SZ}\r\n"
        f"DTEND:{start + timedelta(hours=i, minutes=30):%Y%m%dT%H%M%SZ}\r\n"
        f"SUMMARY:Meeting {i}\r\nEND:VEVENT\r\n"
        for i in range(120)
    )
    feed.write_text(f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n{events}"
                    "END:VCALENDAR\r\n")  # fmt: skip
    cli("account", "add", "work", "--pair", "alex", "--provider", "ics", "--path", str(feed))
    code, drawn = on_a_terminal(cli, "sync", "--pair", "alex", "--no-send")
    assert code == 0
    assert "syncing" in drawn
    assert "baseline: 120 events in 1 calendar" in plain(drawn)
    again = cli("sync", "--pair", "alex", "--no-send").stdout
    assert "syncing" not in again and "baseline" not in again and "no change" in again
