"""The ICS feed connector over real HTTP (a local server with ETag / Last-Modified) and files."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from connectors.base import AuthExpired, InvalidData, NotFound, RateLimited, Transient, Window
from connectors.ics.feed import IcsFeed

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(days=7), NOW + timedelta(days=60), "Europe/Berlin")

FEED = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
X-WR-TIMEZONE:Europe/Berlin
BEGIN:VEVENT
UID:one
DTSTART:20261125T100000
DTEND:20261125T110000
SUMMARY:Floating in the X-WR zone
END:VEVENT
BEGIN:VEVENT
UID:two
DTSTART;VALUE=DATE:20261127
DTEND;VALUE=DATE:20261128
SUMMARY:All day
END:VEVENT
{extra}END:VCALENDAR
"""


class FeedServer:
    def __init__(self) -> None:
        self.body = FEED.format(extra="").encode()
        self.etag = '"v1"'
        self.last_modified = format_datetime(NOW, usegmt=True)
        self.status_override: int | None = None
        self.headers_seen: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
                if server.status_override:
                    self.send_response(server.status_override)
                    self.send_header("Retry-After", "42")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("If-None-Match") == server.etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/calendar; charset=utf-8")
                self.send_header("ETag", server.etag)
                self.send_header("Last-Modified", server.last_modified)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cal.ics"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    yield server
    server.close()


def test_first_fetch_is_full_and_parsed(feed_server: FeedServer) -> None:
    feed = IcsFeed(feed_server.url)
    delta = feed.changes(None, WINDOW)
    assert delta.full and not delta.unchanged
    events = {e.uid: e for r in delta.resources for e in r.events}
    assert events["one"].start == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # CET = UTC+1
    assert events["one"].timezone == "Europe/Berlin"
    assert events["two"].all_day and str(events["two"].start_date) == "2026-11-27"


def test_unchanged_feed_costs_one_conditional_request(feed_server: FeedServer) -> None:
    feed = IcsFeed(feed_server.url)
    token = feed.changes(None, WINDOW).token
    delta = feed.changes(token, WINDOW)
    assert delta.unchanged and not delta.resources
    assert feed.requests == 2
    assert feed_server.headers_seen[-1]["if-none-match"] == '"v1"'
    assert "if-modified-since" in feed_server.headers_seen[-1]


def test_changed_feed_is_fetched_again(feed_server: FeedServer) -> None:
    feed = IcsFeed(feed_server.url)
    token = feed.changes(None, WINDOW).token
    feed_server.body = FEED.format(
        extra="BEGIN:VEVENT\nUID:three\nDTSTART:20261126T120000Z\nDTEND:20261126T130000Z\n"
        "SUMMARY:New\nEND:VEVENT\n"
    ).encode()
    feed_server.etag = '"v2"'
    delta = feed.changes(token, WINDOW)
    assert delta.full
    assert {r.href for r in delta.resources} == {"uid:one", "uid:two", "uid:three"}


def test_same_bytes_without_validators_are_unchanged(feed_server: FeedServer) -> None:
    feed = IcsFeed(feed_server.url)
    token = feed.changes(None, WINDOW).token
    feed_server.etag = '"rotated"'  # etag churn, same content
    assert feed.changes(token, WINDOW).unchanged


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthExpired), (404, NotFound), (429, RateLimited), (500, Transient), (418, InvalidData)],
)
def test_http_errors_are_ours(feed_server: FeedServer, status: int, error: type[Exception]) -> None:
    feed_server.status_override = status
    with pytest.raises(error) as info:
        IcsFeed(feed_server.url).changes(None, WINDOW)
    if status == 429:
        assert info.value.retry_after == 42  # type: ignore[attr-defined]


def test_unreachable_server_is_transient() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Transient):
        IcsFeed(f"http://127.0.0.1:{port}/x.ics", timeout=2).changes(None, WINDOW)


def test_file_feed_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "cal.ics"
    path.write_text(FEED.format(extra=""))
    feed = IcsFeed(str(path))
    token = feed.changes(None, WINDOW).token
    assert feed.changes(token, WINDOW).unchanged
    with pytest.raises(NotFound):
        IcsFeed(str(tmp_path / "nope.ics")).changes(None, WINDOW)


def test_malformed_feed_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.ics"
    path.write_text("this is not a calendar\n")
    with pytest.raises(InvalidData, match=r"not valid iCalendar|VCALENDAR"):
        IcsFeed(str(path)).changes(None, WINDOW)


def test_one_bad_series_does_not_sink_the_feed(tmp_path: Path) -> None:
    path = tmp_path / "mixed.ics"
    bad = "BEGIN:VEVENT\nUID:broken\nSUMMARY:no start\nRRULE:FREQ=DAILY\nEND:VEVENT\n"
    path.write_text(FEED.format(extra=bad))
    delta = IcsFeed(str(path)).changes(None, WINDOW)
    assert {r.href for r in delta.resources} == {"uid:one", "uid:two"}
    assert len(delta.skipped) == 1 and "broken" in delta.skipped[0]
