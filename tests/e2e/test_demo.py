"""``assistant demo`` as a newcomer runs it, on an injected clock.

The demo must show this week (never the next one) and tell the same story whatever the
hour or the day it is run: its output at Monday 09:00, Monday 17:45, Friday 23:30 and
Sunday 23:59 (Berlin) is the same once ports, folders, timings and keys are blanked (each
case compares with those run before it; without the slow ones, Monday 17:45 and Sunday
23:59).
``--serve`` prints a login for the manager and the assistant that signs in (a real
server, a real HTTP client) and lands on the demo's week; it is new on every run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from assistant.entrypoints.cli.app import main

BIN = Path(sys.executable).with_name("assistant")
WEEK = "Mon 7 Dec"  # the Monday of every moment below
MOMENTS = {
    "monday-09:00": "2026-12-07T09:00+01:00",
    "monday-17:45": "2026-12-07T17:45+01:00",
    "friday-23:30": "2026-12-11T23:30+01:00",
    "sunday-23:59": "2026-12-13T23:59+01:00",
}
VOLATILE = [
    (re.compile(r"127\.0\.0\.1:\d+"), "HOST"),
    (re.compile(r"/\S*assistant-demo-\w+"), "DIR"),
    (re.compile(r"\d+\.\d+s\b"), "Ns"),
    (re.compile(r"Message-ID <[^>]+>"), "Message-ID"),
    # the link, and its end when a narrow terminal folds it onto the panel's next line
    (re.compile(r"/feedback/[^\s│]+(?: *│\n│ [\w-]+(?= ))?"), "/feedback/LINK"),
]


def played(capsys: pytest.CaptureFixture[str], now: str) -> str:
    assert main(["demo", "--now", now]) == 0
    text = capsys.readouterr().out
    for pattern, blank in VOLATILE:
        text = pattern.sub(blank, text)
    return text


def story_checks(text: str) -> None:
    assert f"7 events for the week of {WEEK} 2026 written to CalDAV" in text
    assert f"Week of {WEEK} (Europe/Berlin)" in text
    assert "14 Dec" not in text  # never the next week
    assert "Mon 07 09:30–09:45" in text
    assert "│ Mon 30 Nov 09:15 │ 22 / 22" in text  # the mail is last week's: all of it past
    assert "5 messages, 4 answered, 1 open; median 65 working min (130 wall)" in text
    assert "1 open message(s) past the SLA" in text
    assert "Task 1 is now accepted" in text


PLAYED: dict[str, str] = {}  # moment: the blanked output, compared across the cases


@pytest.mark.parametrize(
    "moment",
    [
        "monday-17:45",  # the short form: the wall clock made an extra message appear here
        "sunday-23:59",  # and the demo's week was the next one here
        pytest.param("monday-09:00", marks=pytest.mark.long),
        pytest.param("friday-23:30", marks=pytest.mark.long),
    ],
)
def test_the_demo_tells_the_same_story_at_any_hour(
    moment: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # no wrapping where a blanked port was longer
    monkeypatch.setenv("NO_COLOR", "1")
    text = played(capsys, MOMENTS[moment])
    story_checks(text)
    for other, before in PLAYED.items():
        assert text == before, f"{moment} tells another story than {other}"
    PLAYED[moment] = text


def serve(now: str, home: Path) -> tuple[subprocess.Popen[str], list[str]]:
    """``assistant demo --serve`` in its own process, up to the printed logins."""
    cmd = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "assistant.entrypoints.cli.app"]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*cmd, "demo", "--serve", "--now", now], cwd=home, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    lines: list[str] = []
    deadline = time.monotonic() + 90
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("assistant: http"):
            return proc, lines
    proc.kill()
    raise AssertionError("no login printed:\n" + "\n".join(lines))


def signs_in(link: str) -> str:
    """Follow a printed one-time link as a browser does: the page, its button, the week."""
    with httpx.Client(timeout=10) as browser:
        page = browser.get(link)
        assert page.status_code == 200
        fields = dict(re.findall(r'name="(csrf_token|next)" value="([^"]*)"', page.text))
        done = browser.post(link.split("?")[0], data=fields)
        assert done.status_code == 303, done.text
        week = browser.get(httpx.URL(link).join(done.headers["location"]))
        assert week.status_code == 200
        again = browser.post(link.split("?")[0], data=fields)  # a link works once
        assert again.status_code in (400, 403)
        return week.text


def password_signs_in(base: str, email: str, password: str) -> bool:
    with httpx.Client(timeout=10) as browser:
        form = browser.get(f"{base}/login")
        token = re.search(r'name="csrf_token" value="([^"]*)"', form.text)
        assert token is not None
        done = browser.post(
            f"{base}/login",
            data={"csrf_token": token.group(1), "email": email, "password": password,
                  "next": "/"},
        )  # fmt: skip
        return done.status_code == 303 and "ea_session" in done.cookies


def test_served_demo_prints_logins_that_sign_in_and_differ_each_run(tmp_path: Path) -> None:
    seen: list[str] = []
    for now in (MOMENTS["friday-23:30"], MOMENTS["sunday-23:59"]):
        proc, lines = serve(now, tmp_path)
        try:
            text = "\n".join(lines)
            base = re.search(r"Web app on (http://127\.0\.0\.1:\d+)/", text)
            assert base is not None, text
            links = dict(re.findall(r"^(manager|assistant): (http\S+)$", text, re.M))
            passwords = dict(re.findall(r"│ (\S+@example\.com)\s+│ (\S+)\s+│", text))
            assert set(links) == {"manager", "assistant"}
            assert set(passwords) == {"alex.morgan@example.com", "sam.lee@example.com"}
            for who, name in (("manager", "Alex Morgan"), ("assistant", "Sam Lee")):
                page = signs_in(links[who])
                assert "Mon 7 Dec – Sun 13 Dec 2026" in page  # the demo's week, this week
                assert name in page and "Board meeting" in page
            for email, password in passwords.items():
                assert password_signs_in(base.group(1), email, password), email
                assert not password_signs_in(base.group(1), email, password + "x")
            seen += [*links.values(), *passwords.values()]
        finally:
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "nothing left running" in out
    tokens = [re.sub(r"127\.0\.0\.1:\d+", "", s) for s in seen]
    assert len(set(tokens)) == len(tokens)  # no login is printed twice
