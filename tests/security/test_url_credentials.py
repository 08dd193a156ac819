"""Credentials written into account URLs (``https://user:pw@host/``, ``?token=...``).

They are split out when the account is stored and sealed like typed passwords, put back
only when connecting, and redacted wherever a URL could show: httpx's own INFO log line,
``assistant account list`` (table and ``--json``), errors, account pages.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from assistant.services.accounts import check_account
from assistant.services.runner import sync_now
from assistant.services.sync import record_failure
from assistant.store.tables import Account, Base
from config.settings import SecretRef
from connectors.base import ConnectorError
from connectors.netguard import URL_SECRET_KEY, redact_url
from tests.support.web import World, login, world_fixture  # noqa: F401

PASSWORD = "pw-9f8e7d"
TOKEN = "tok-5ekr3t-77"
FEED = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:a\r\n"
    "DTSTART:20261201T100000Z\r\nDTEND:20261201T110000Z\r\nSUMMARY:Board\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)


class FeedServer:
    """Answers the feed to requests with the right token and basic auth; records them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []  # (path with query, Authorization)
        self.body = FEED.encode()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                server.seen.append((self.path, auth))
                expected = "Basic " + base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
                if f"token={TOKEN}" not in self.path or auth != expected:
                    self.send_response(403)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://bob:{PASSWORD}@127.0.0.1:{self.port}/cal.ics?x=1&token={TOKEN}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def feed() -> Iterator[FeedServer]:
    s = FeedServer()
    yield s
    s.close()


def database_text(world: World) -> str:
    parts = []
    with world.svc.uow.read() as s:
        for table in Base.metadata.sorted_tables:
            parts.append(repr(s.execute(select(table)).all()))
    return "\n".join(parts)


def test_credentials_in_a_web_form_url_are_sealed_and_never_logged(
    world: World, feed: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = world.svc.settings
    world.svc.settings = settings.model_copy(
        update={"network": settings.network.model_copy(
            update={"allow_http": True, "allowed_hosts": ["127.0.0.1"]})}
    )  # fmt: skip
    client = world.client()
    token = login(client, "alex@alpha.example")
    r = client.post(
        f"/pairs/{world.alpha.id}/accounts",
        data={"csrf_token": token, "provider": "ics", "name": "Feed", "location": feed.url},
    )
    assert r.status_code == 303, r.text
    with world.svc.uow.read() as s:
        [row] = s.scalars(select(Account).where(Account.name == "Feed"))
    conf = row.settings
    assert conf["location"] == f"http://127.0.0.1:{feed.port}/cal.ics?x=1"
    assert conf["username"] == "bob"
    assert set(conf["password"]) == {"encrypted"} and set(conf[URL_SECRET_KEY]) == {"encrypted"}
    assert SecretRef(**conf["password"]).resolve().get_secret_value() == PASSWORD
    stored = database_text(world)
    assert PASSWORD not in stored and TOKEN not in stored

    with caplog.at_level(logging.INFO, logger="httpx"):
        assert check_account(world.svc, world.alpha.id, row.id).ok
        [result] = sync_now(world.svc, account_id=row.id, send=False).lines
    assert not result.error
    path, _ = feed.seen[-1]
    assert f"token={TOKEN}" in path  # put back when connecting
    assert "HTTP Request: GET" in caplog.text
    assert TOKEN not in caplog.text and PASSWORD not in caplog.text
    assert "token=***" in caplog.text
    page = client.get(f"/pairs/{world.alpha.id}/accounts").text
    assert TOKEN not in page and PASSWORD not in page


def test_errors_never_carry_url_credentials(world: World) -> None:
    with world.svc.uow.read() as s:
        account_id = s.scalars(select(Account.id)).first()
    assert account_id is not None
    error = ConnectorError(f"GET https://bob:{PASSWORD}@dav.example/cal/?access_token={TOKEN}")
    record_failure(world.svc.uow, account_id, error, world.clock())
    with world.svc.uow.read() as s:
        row = s.get(Account, account_id)
        assert row is not None
        assert PASSWORD not in row.last_error and TOKEN not in row.last_error
        assert "dav.example/cal/" in row.last_error


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p@h.example/f.ics", "https://***@h.example/f.ics"),
        ("https://h.example/f.ics?key=K&a=1", "https://h.example/f.ics?key=***&a=1"),
        ("https://h.example/f?access_token=T&api_key=Q", "https://h.example/f?access_token=***&api_key=***"),
        ("https://h.example/f.ics?sig=S", "https://h.example/f.ics?sig=***"),
    ],
)  # fmt: skip
def test_redacted_urls(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# ------------------------------------------------------------------------------ the CLI

BIN = Path(sys.executable).with_name("assistant")


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "assistant.entrypoints.cli.app"]
    env = {**os.environ, "ASSISTANT_CONFIG": str(home / "assistant.toml"), "COLUMNS": "300",
           "NO_COLOR": "1"}  # fmt: skip
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=60, cwd=home
    )


def test_the_cli_seals_url_credentials_and_never_prints_them(
    tmp_path: Path, feed: FeedServer
) -> None:
    home = tmp_path
    assert run(home, "init", str(home)).returncode == 0
    assert run(home, "pair", "add", "alex", "--manager", "alex@example.com",
               "--assistant", "sam@example.com").returncode == 0  # fmt: skip
    done = run(home, "account", "add", "feed", "--provider", "ics", "--url", feed.url, "--json")
    assert done.returncode == 0, done.stderr
    sync = run(home, "sync", "--json", "--no-send")
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert f"token={TOKEN}" in feed.seen[-1][0]
    listed = run(home, "account", "list", "--json")
    table = run(home, "account", "list")
    [row] = json.loads(listed.stdout)
    assert row["settings"]["location"] == f"http://127.0.0.1:{feed.port}/cal.ics?x=1"
    for out in (done, sync, listed, table):
        text = out.stdout + out.stderr
        assert TOKEN not in text and PASSWORD not in text, text
    database = b"".join(p.read_bytes() for p in home.rglob("*.db*"))
    assert b"cal.ics" in database  # the account is in there
    assert TOKEN.encode() not in database and PASSWORD.encode() not in database


def test_what_a_feed_holds_never_shows_in_the_cli(tmp_path: Path, feed: FeedServer) -> None:
    secret = "TOPSECRET-line-of-/etc/shadow"
    feed.body = f"{secret}\r\n{secret}\r\n".encode()
    home = tmp_path
    assert run(home, "init", str(home)).returncode == 0
    assert run(home, "pair", "add", "alex", "--manager", "alex@example.com",
               "--assistant", "sam@example.com").returncode == 0  # fmt: skip
    assert (
        run(home, "account", "add", "feed", "--provider", "ics", "--url", feed.url).returncode == 0
    )
    sync = run(home, "sync", "--json", "--no-send")
    listed = run(home, "account", "list", "--json")
    [row] = json.loads(listed.stdout)
    assert "line 1" in row["last_error"], row
    for out in (sync, listed):
        assert secret not in out.stdout + out.stderr
