"""``assistant ics expand FILE|URL`` through the real command line (issue 14, point 9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from assistant.entrypoints.cli.app import app
from connectors.netguard import LocationRefused, TooLarge

ROOT = Path(__file__).resolve().parents[2]
EVALDATA = ROOT.parent / "shared" / "evaldata" / "ics"

FEED = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:weekly
DTSTART;TZID=Europe/Berlin:20300107T100000
DTEND;TZID=Europe/Berlin:20300107T110000
RRULE:FREQ=WEEKLY;COUNT=3
RDATE;TZID=Europe/Berlin:20300201T100000,2030XX02T100000
SUMMARY:Weekly
END:VEVENT
BEGIN:VEVENT
DTSTART:20300108T090000
DTEND:20300108T093000
SUMMARY:Floating, no UID
END:VEVENT
BEGIN:VEVENT
UID:holiday
DTSTART;VALUE=DATE:20300109
DTEND;VALUE=DATE:20300109
SUMMARY:Holiday
END:VEVENT
END:VCALENDAR
"""


def run(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args), env={"ASSISTANT_CONFIG": ""})
    return result


def expand_json(*args: str) -> dict[str, Any]:
    result = run("ics", "expand", *args, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    data: dict[str, Any] = json.loads(result.output)
    return data


@pytest.fixture
def feed_file(tmp_path: Path) -> Path:
    path = tmp_path / "feed.ics"
    path.write_text(FEED)
    return path


def test_every_occurrence_and_every_problem_of_a_file(feed_file: Path) -> None:
    data = expand_json(
        str(feed_file), "--from", "2030-01-01", "--to", "2030-02-28", "--zone", "Europe/Berlin"
    )
    rows = [(o["uid"], o["start"], o["end"], o["kind"]) for o in data["occurrences"]]
    floating = [r for r in rows if r[3] == "floating"]
    assert rows == [
        ("weekly", "2030-01-07T10:00:00+01:00", "2030-01-07T11:00:00+01:00", "timed"),
        (floating[0][0], "2030-01-08T09:00:00", "2030-01-08T09:30:00", "floating"),
        ("holiday", "2030-01-09", "2030-01-10", "all-day"),  # DTEND = DTSTART: one day
        ("weekly", "2030-01-14T10:00:00+01:00", "2030-01-14T11:00:00+01:00", "timed"),
        ("weekly", "2030-01-21T10:00:00+01:00", "2030-01-21T11:00:00+01:00", "timed"),
        ("weekly", "2030-02-01T10:00:00+01:00", "2030-02-01T11:00:00+01:00", "timed"),
    ]
    assert floating[0][0].startswith("no-uid-")
    (problem,) = data["problems"]
    assert "uid:weekly" in problem and "RDATE" in problem
    assert data["source"] == "feed.ics" and data["zone"] == "Europe/Berlin"
    assert (data["from"], data["to"]) == ("2030-01-01T00:00:00+01:00", "2030-03-01T00:00:00+01:00")


def test_the_zone_places_floating_and_shows_timed_values(feed_file: Path) -> None:
    data = expand_json(
        str(feed_file), "--from", "2030-01-08", "--to", "2030-01-08", "--zone", "America/New_York"
    )
    floating = [o["start"] for o in data["occurrences"] if o["kind"] == "floating"]
    assert floating == ["2030-01-08T09:00:00"]  # the same wall-clock time in any zone
    late = expand_json(
        str(feed_file), "--from", "2030-01-07", "--to", "2030-01-07", "--zone", "America/New_York"
    )
    assert [o["start"] for o in late["occurrences"]] == ["2030-01-07T04:00:00-05:00"]


def test_the_table_lists_occurrences_and_problems(feed_file: Path) -> None:
    result = run("ics", "expand", str(feed_file), "--from", "2030-01-01", "--to", "2030-01-31")
    assert result.exit_code == 0, result.output
    assert "5 occurrence(s)" in result.output
    assert "1 problem(s):" in result.output and "RDATE" in result.output


class _Server:
    def __init__(self, body: bytes) -> None:
        self.body, self.requests = body, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/calendar")
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cal/feed.ics"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server(FEED.encode())
    yield s
    s.httpd.shutdown()


def test_a_url_is_read_like_an_operators_feed(server: _Server) -> None:
    data = expand_json(server.url, "--from", "2030-01-01", "--to", "2030-01-31")
    assert server.requests == 1
    assert data["source"] == "127.0.0.1/cal/feed.ics"
    assert {o["uid"] for o in data["occurrences"]} >= {"weekly", "holiday"}


def test_a_url_goes_through_the_network_guard(server: _Server, tmp_path: Path) -> None:
    server.body = FEED.replace(
        "SUMMARY:Holiday", "SUMMARY:Holiday\nDESCRIPTION:" + "x" * 2000
    ).encode()
    config = tmp_path / "assistant.toml"
    config.write_text("[network]\nmax_response_bytes = 1000\n")
    result = run(
        "-c", str(config), "ics", "expand", server.url, "--from", "2030-01-01", "--to", "2030-01-31"
    )
    assert isinstance(result.exception, TooLarge)
    assert "max_response_bytes" in str(result.exception)
    refused = run(
        "ics", "expand", "file:///etc/passwd", "--from", "2030-01-01", "--to", "2030-01-02"
    )
    assert isinstance(refused.exception, LocationRefused)


def test_errors_are_one_line_from_the_installed_command(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ASSISTANT_CONFIG": ""}
    command = [sys.executable, "-m", "assistant.entrypoints.cli.app", "ics", "expand"]
    missing = subprocess.run(
        [*command, str(tmp_path / "none.ics"), "--from", "2030-01-01", "--to", "2030-01-02"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith("error:") and "none.ics" in missing.stderr
    zone = subprocess.run(
        [*command, str(tmp_path / "none.ics"), "--from", "2030-01-01", "--to", "2030-01-02",
         "--zone", "Mars/Olympus"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert zone.returncode == 1 and "unknown time zone" in zone.stderr


@pytest.mark.evaldata
@pytest.mark.skipif(not EVALDATA.is_dir(), reason=f"evaldata not present at {EVALDATA}")
def test_a_real_feed_with_windows_zones_and_all_day_events() -> None:
    data = expand_json(
        str(EVALDATA / "khal/tz_windows_format.ics"), "--from", "2019-11-01", "--to", "2019-11-30",
        "--zone", "Pacific/Auckland",
    )  # fmt: skip
    (only,) = data["occurrences"]
    assert only["kind"] == "timed" and only["start"] == "2019-11-20T13:00:00+13:00"
    allday = expand_json(
        str(EVALDATA / "icalendar/parsing_error.ics"), "--from", "2008-01-01", "--to", "2008-12-31",
    )  # fmt: skip
    kinds = {o["kind"] for o in allday["occurrences"]}
    assert "all-day" in kinds
    for o in allday["occurrences"]:
        if o["kind"] == "all-day":
            assert date.fromisoformat(o["end"]) > date.fromisoformat(o["start"])
        else:
            datetime.fromisoformat(o["start"])
    assert any("EXDATE" in p for p in allday["problems"])  # the broken value is said


def test_expand_needs_no_settings_and_creates_nothing(
    feed_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "empty"
    here.mkdir()
    monkeypatch.chdir(here)
    for key in [k for k in os.environ if k.startswith("ASSISTANT_")]:
        monkeypatch.delenv(key)
    data = expand_json(str(feed_file), "--from", "2030-01-01", "--to", "2030-02-28")
    assert data["occurrences"]
    assert list(here.iterdir()) == []
