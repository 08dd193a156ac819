"""File and network reads through accounts (SSRF, local files), and bounded reads.

A user who may edit a pair adds accounts from the web form: their locations reach public
https:// addresses only, checked when the form is sent and again at every connection and
redirect (the name is resolved, checked, and the checked address connected to); local
files only for accounts the operator adds (the CLI) or hosts the operator lists in
``network.allowed_hosts``. Errors never show what was read; what is read is bounded.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from assistant.services.accounts import check_account
from assistant.services.pairs import add_account
from assistant.services.runner import sync_now
from assistant.store.tables import Account
from connectors.netguard import OPERATOR_KEY, is_public
from tests.support.deps import deps_for
from tests.support.web import World, login, world_fixture  # noqa: F401

SECRET = "TOPSECRET-sk_live_4f9a2c"
FEED = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:a\r\n"
    "DTSTART:20261201T100000Z\r\nDTEND:20261201T110000Z\r\nSUMMARY:Board\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)


class Server:
    """A local HTTP server that records every path asked for (and can redirect)."""

    def __init__(self, body: bytes = FEED.encode()) -> None:
        self.body = body
        self.paths: list[str] = []
        self.redirect_to = ""
        self.chunked = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.paths.append(self.path)
                if self.path.startswith("/redirect") and server.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", server.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/calendar")
                if server.chunked:  # no Content-Length: the limit must hold while reading
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(server.body), 1000):
                        part = server.body[i : i + 1000]
                        self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def answer_any(self) -> None:  # CalDAV and EWS requests: the same body
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.do_GET()

            do_POST = do_PROPFIND = do_REPORT = answer_any

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/cal.ics"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Listener:
    """A TCP port that counts the connections made to it (IMAP, CalDAV, EWS targets)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    s = Listener()
    yield s
    s.close()


def network(world: World, **values: Any) -> None:
    """Set the operator's ``network`` settings for this world."""
    settings = world.svc.settings
    world.svc.settings = settings.model_copy(
        update={"network": settings.network.model_copy(update=values)}
    )


def client_for(world: World) -> tuple[TestClient, str]:
    client = world.client()
    return client, login(client, "alex@alpha.example")


def add_form(client: TestClient, token: str, pair_id: int, **fields: str) -> Any:
    return client.post(
        f"/pairs/{pair_id}/accounts", data={"csrf_token": token, "name": "Feed", **fields}
    )


def accounts(world: World, provider: str) -> list[Account]:
    """The accounts the test added (not the world's own ``<pair>-cal``)."""
    with world.svc.uow.read() as s:
        rows = s.scalars(select(Account).where(Account.provider == provider))
        return [a for a in rows if not a.name.endswith("-cal")]


def account(world: World, account_id: int) -> Account:
    with world.svc.uow.read() as s:
        row = s.get(Account, account_id)
        assert row is not None
        return row


def accounts_page(world: World) -> str:
    client, _ = client_for(world)
    return client.get(f"/pairs/{world.alpha.id}/accounts").text


def web_account(world: World, provider: str, conf: dict[str, Any], name: str = "Web") -> int:
    """An account as a user added it (no operator mark), stored as it is: e.g. while its
    host was allowed, or before the form checked locations."""
    account_id = add_account(
        deps_for(world.svc.uow, world.clock()), pair=world.alpha.id, name=name, provider=provider, settings=conf,
    ).id  # fmt: skip
    with world.svc.uow.begin() as s:
        row = s.get(Account, account_id)
        assert row is not None
        row.settings = dict(conf)
    return account_id


# ------------------------------------------------------------------ the address check


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True), ("2606:4700:4700::1111", True), ("127.0.0.1", False),
        ("10.1.2.3", False), ("172.16.5.4", False), ("192.168.1.1", False),
        ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False),
        ("224.0.0.1", False), ("240.0.0.1", False), ("255.255.255.255", False),
        ("::1", False), ("::", False), ("fe80::1", False), ("fd00::1", False),
        ("ff02::1", False), ("::ffff:127.0.0.1", False), ("::ffff:10.0.0.1", False),
        ("::127.0.0.1", False), ("64:ff9b::a9fe:a9fe", False), ("2002:7f00:1::", False),
        ("::ffff:8.8.8.8", True),
    ],
)  # fmt: skip
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


# ------------------------------------------------------------------------- web form


@pytest.mark.parametrize(
    "location",
    [
        "/etc/passwd", "/proc/self/environ", "{data_dir}/secret.key", "file:///etc/passwd",
        "~/.ssh/id_rsa", "https://127.0.0.1/cal.ics", "https://localhost/cal.ics",
        "https://[::1]/cal.ics", "https://[::ffff:127.0.0.1]/cal.ics", "https://10.0.0.5/x",
        "https://169.254.169.254/latest/meta-data/", "https://100.64.0.1/x",
        "https://0.0.0.0/x", "https://2130706433/x", "ftp://example.com/cal.ics",
        "http://8.8.8.8/cal.ics", "webcal://127.0.0.1/cal.ics",
    ],
)  # fmt: skip
def test_the_web_form_refuses_local_files_and_internal_addresses(
    world: World, location: str
) -> None:
    (world.tmp / "secret.key").write_text(SECRET)
    client, token = client_for(world)
    location = location.replace("{data_dir}", str(world.tmp))
    r = add_form(client, token, world.alpha.id, provider="ics", location=location)
    assert r.status_code == 400, r.text
    assert accounts(world, "ics") == []
    assert SECRET not in r.text


@pytest.mark.parametrize(
    ("provider", "fields"),
    [
        ("caldav", {"url": "https://127.0.0.1/dav/"}),
        ("caldav", {"url": "https://[::ffff:10.0.0.1]/dav/"}),
        ("ews", {"mailbox": "a@b.example", "service_endpoint": "https://10.1.1.1/EWS/Exchange.asmx",
                 "username": "a", "password": "pw"}),
        ("ews-mail", {"mailbox": "a@b.example", "username": "a", "password": "pw",
                      "service_endpoint": "https://localhost/EWS/Exchange.asmx"}),
        ("imap", {"host": "127.0.0.1", "security": "ssl", "username": "a", "password": "pw"}),
        ("imap", {"host": "169.254.169.254", "username": "a", "password": "pw"}),
        ("imap", {"host": "localhost", "port": "143", "security": "none", "username": "a",
                  "password": "pw"}),
    ],
)  # fmt: skip
def test_every_form_provider_is_checked(
    world: World, provider: str, fields: dict[str, str]
) -> None:
    client, token = client_for(world)
    r = add_form(client, token, world.alpha.id, provider=provider, **fields)
    assert r.status_code == 400, r.text
    assert accounts(world, provider) == []


def test_a_form_cannot_mark_its_account_as_the_operators(world: World, server: Server) -> None:
    network(world, allow_http=True, allowed_hosts=["127.0.0.1"])
    client, token = client_for(world)
    r = add_form(client, token, world.alpha.id, provider="ics", location=server.url,
                 **{OPERATOR_KEY: "true"})  # fmt: skip
    assert r.status_code == 303
    [row] = accounts(world, "ics")
    assert OPERATOR_KEY not in row.settings


def test_listed_hosts_and_http_are_the_operators_choice(world: World, server: Server) -> None:
    client, token = client_for(world)
    assert add_form(client, token, world.alpha.id, provider="ics", location=server.url,
                    name="a").status_code == 400  # fmt: skip
    network(world, allowed_hosts=["127.0.0.1"])  # listed, but http:// is not allowed
    client, token = client_for(world)
    assert add_form(client, token, world.alpha.id, provider="ics", location=server.url,
                    name="b").status_code == 400  # fmt: skip
    webcal = f"webcal://127.0.0.1:{server.port}/cal.ics"  # webcal:// means https://
    assert add_form(client, token, world.alpha.id, provider="ics", location=webcal,
                    name="w").status_code == 303  # fmt: skip
    [row] = accounts(world, "ics")
    assert row.settings["location"] == f"https://127.0.0.1:{server.port}/cal.ics"
    with world.svc.uow.begin() as s:
        s.delete(s.get(Account, row.id))
    network(world, allow_http=True, allowed_hosts=["127.0.0.0/8"])
    client, token = client_for(world)
    r = add_form(client, token, world.alpha.id, provider="ics", location=server.url, name="c")
    assert r.status_code == 303
    [row] = accounts(world, "ics")
    assert check_account(world.svc, world.alpha.id, row.id).ok
    assert server.paths == ["/cal.ics"]


# -------------------------------------------------------------------- at connect time


def test_the_connector_checks_again_at_connect_time(world: World, server: Server) -> None:
    """An account stored when its host was allowed is refused once it is not: the check
    is the connector's, at connect time (also for rows stored before this check)."""
    account_id = web_account(world, "ics", {"location": server.url})
    result = check_account(world.svc, world.alpha.id, account_id)
    assert not result.ok
    assert server.paths == []
    error = account(world, account_id).last_error
    assert "127.0.0.1" in error and "not allowed" in error


def test_a_local_file_in_a_stored_web_account_is_never_read(world: World) -> None:
    secret_file = world.tmp / "secret.key"
    secret_file.write_text(SECRET + "\n")
    account_id = web_account(world, "ics", {"location": str(secret_file)})
    assert not check_account(world.svc, world.alpha.id, account_id).ok
    [result] = sync_now(world.svc, account_id=account_id, send=False).lines
    error = account(world, account_id).last_error
    assert "local files are read only for accounts added with the CLI" in error
    assert SECRET not in error and SECRET not in repr(result)
    page = accounts_page(world)
    assert "local files are read only for accounts added with the CLI" in page
    assert SECRET not in page


def test_dns_rebinding_gains_nothing(
    world: World, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name resolves to a public address when the form is checked, to 127.0.0.1 when
    connecting: the connection is refused and nothing reaches the local server."""
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34"])

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "feed.rebind.example":
            return real(next(answers, "127.0.0.1"), port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    network(world, allow_http=True)
    client, token = client_for(world)
    location = f"http://feed.rebind.example:{server.port}/cal.ics"
    r = add_form(client, token, world.alpha.id, provider="ics", location=location)
    assert r.status_code == 303, r.text
    [row] = accounts(world, "ics")
    assert not check_account(world.svc, world.alpha.id, row.id).ok
    assert server.paths == []
    assert "feed.rebind.example is not a public address" in account(world, row.id).last_error


def test_every_redirect_is_checked(world: World, server: Server) -> None:
    network(world, allow_http=True, allowed_hosts=["localhost"])
    server.redirect_to = f"http://127.0.0.1:{server.port}/cal.ics"
    client, token = client_for(world)
    location = f"http://localhost:{server.port}/redirect"
    assert add_form(client, token, world.alpha.id, provider="ics",
                    location=location).status_code == 303  # fmt: skip
    [row] = accounts(world, "ics")
    assert not check_account(world.svc, world.alpha.id, row.id).ok
    assert server.paths == ["/redirect"]  # the redirect's target was never asked for
    assert "127.0.0.1 is not a public address" in account(world, row.id).last_error


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.parametrize("provider", ["caldav", "ews", "imap"])
def test_caldav_ews_and_imap_connect_only_to_allowed_addresses(
    world: World, listener: Listener, provider: str, host: str
) -> None:
    """An address is refused by the URL check, a name by the guarded resolver or socket
    (``localhost`` resolves to a loopback address): nothing reaches the port."""
    network(world, allow_http=True)
    conf: dict[str, Any] = {
        "caldav": {"url": f"http://{host}:{listener.port}/dav/cal/"},
        "ews": {"mailbox": "alex@alpha.example", "auth": "basic", "username": "alex",
                "service_endpoint": f"http://{host}:{listener.port}/EWS/Exchange.asmx",
                "version": "Exchange2016"},
        "imap": {"host": host, "port": listener.port, "security": "none", "username": "alex"},
    }[provider]  # fmt: skip
    account_id = web_account(world, provider, conf)
    assert not check_account(world.svc, world.alpha.id, account_id).ok
    assert listener.accepted == 0
    assert f"{host} is not a public address" in account(world, account_id).last_error


def test_operator_accounts_reach_private_hosts_and_files(world: World, server: Server) -> None:
    feed = world.tmp / "team.ics"
    feed.write_text(FEED)
    for name, location in (("file", str(feed)), ("url", server.url)):
        row = add_account(deps_for(world.svc.uow, world.clock()), pair=world.alpha.id, name=name, provider="ics",
                          settings={"location": location})  # fmt: skip
        assert row.settings[OPERATOR_KEY] is True
        assert check_account(world.svc, world.alpha.id, row.id).ok, name
    assert server.paths == ["/cal.ics"]


# ------------------------------------------------------------ what the status may show


@pytest.mark.parametrize(
    ("body", "line"),
    [
        (f"{SECRET}\r\nline two {SECRET}\r\n", "line 1"),
        (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{SECRET}\r\nEND:VCALENDAR\r\n", "line 3"),
        (f"BEGIN:VCALENDAR\r\nX-WR-TIMEZONE:{SECRET}\r\nEND:VCALENDAR\r\n", "iCalendar"),
    ],
)
def test_what_was_read_never_shows(world: World, server: Server, body: str, line: str) -> None:
    server.body = body.encode()
    network(world, allow_http=True, allowed_hosts=["127.0.0.1"])
    client, token = client_for(world)
    r = add_form(client, token, world.alpha.id, provider="ics", location=server.url)
    assert r.status_code == 303
    [row] = accounts(world, "ics")
    r = client.post(f"/pairs/{world.alpha.id}/accounts/{row.id}/check",
                    data={"csrf_token": token})  # fmt: skip
    assert SECRET not in client.get(r.headers["location"]).text
    results = sync_now(world.svc, account_id=row.id, send=False)
    error = account(world, row.id).last_error
    assert "127.0.0.1/cal.ics" in error and line in error, error
    assert SECRET not in error and SECRET not in repr(results)
    for page in ("accounts", "settings", ""):
        assert SECRET not in client.get(f"/pairs/{world.alpha.id}/{page}").text
    assert SECRET not in client.get(f"/api/pairs/{world.alpha.id}/accounts").text


# ------------------------------------------------------------------------ bounded reads


def test_a_feed_larger_than_the_limit_stops_while_reading(world: World, server: Server) -> None:
    server.body = (FEED.replace("END:VCALENDAR", "X-PAD:" + "x" * 70 + "\r\n" * 1) * 200).encode()
    server.chunked = True
    network(world, allow_http=True, allowed_hosts=["127.0.0.1"], max_response_bytes=2000)
    account_id = web_account(world, "ics", {"location": server.url})
    assert not check_account(world.svc, world.alpha.id, account_id).ok
    error = account(world, account_id).last_error
    assert "larger than 2000 bytes" in error and "max_response_bytes" in error
    assert "larger than 2000 bytes" in accounts_page(world)  # the account's status says so


@pytest.mark.parametrize("provider", ["caldav", "ews"])
def test_caldav_and_ews_replies_are_bounded_while_reading(
    world: World, server: Server, provider: str
) -> None:
    server.body = b"<x>" + b"y" * 20_000 + b"</x>"
    server.chunked = True
    network(world, allow_http=True, allowed_hosts=["127.0.0.1"], max_response_bytes=2000)
    conf: dict[str, Any] = {
        "caldav": {"url": f"http://127.0.0.1:{server.port}/dav/cal/"},
        "ews": {"mailbox": "alex@alpha.example", "auth": "basic", "username": "alex",
                "service_endpoint": f"http://127.0.0.1:{server.port}/EWS/Exchange.asmx",
                "version": "Exchange2016"},
    }[provider]  # fmt: skip
    account_id = web_account(world, provider, conf)
    assert not check_account(world.svc, world.alpha.id, account_id).ok
    assert server.paths, "the server was asked"
    error = account(world, account_id).last_error
    assert "larger than 2000 bytes" in error, error


def test_an_imap_literal_larger_than_the_limit_is_refused_before_reading(world: World) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def greet() -> None:  # a greeting announcing a 5,000-byte literal, then sending it
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"* OK hello {5000}\r\n" + b"x" * 5000 + b"\r\n")
            conn.recv(100)

    thread = threading.Thread(target=greet, daemon=True)
    thread.start()
    try:
        network(world, allow_http=True, allowed_hosts=["127.0.0.1"], max_response_bytes=1000)
        conf = {"host": "127.0.0.1", "port": port, "security": "none", "username": "alex"}
        account_id = web_account(world, "imap", conf)
        assert not check_account(world.svc, world.alpha.id, account_id).ok
        assert "larger than 1000 bytes" in account(world, account_id).last_error
    finally:
        thread.join(timeout=5)
        listener.close()


def test_a_file_larger_than_the_limit_is_refused(world: World) -> None:
    big = world.tmp / "big.ics"
    big.write_bytes(b"BEGIN:VCALENDAR\r\n" + b"X-PAD:" + b"x" * 5000 + b"\r\nEND:VCALENDAR\r\n")
    network(world, max_response_bytes=1000)
    row = add_account(deps_for(world.svc.uow, world.clock()), pair=world.alpha.id, name="big", provider="ics",
                      settings={"location": str(big)})  # fmt: skip
    assert not check_account(world.svc, world.alpha.id, row.id).ok
    assert "larger than 1000 bytes" in account(world, row.id).last_error


def test_web_accounts_on_listed_hosts_work_through_the_guards(
    world: World, radicale: Any, server: Server
) -> None:
    """The guarded httpx, niquests (caldav) and requests (exchangelib) paths connect to a
    host the operator listed; the same accounts are refused once it is not listed."""
    from tests.support.ews_server import EwsServer

    network(world, allow_http=True, allowed_hosts=["127.0.0.1"])
    with EwsServer() as ews:
        confs = {
            "ics": {"location": server.url},
            "caldav": {"url": radicale.new_calendar("work"), "username": "manager"},
            "ews": {"mailbox": ews.mailbox.address, "service_endpoint": ews.url,
                    "username": ews.username, "password": {"env": "TEST_EWS_PASSWORD"},
                    "auth": "basic"},
        }  # fmt: skip
        os.environ["TEST_EWS_PASSWORD"] = ews.password
        try:
            ids = {p: web_account(world, p, conf, name=p) for p, conf in confs.items()}
            for provider, account_id in ids.items():
                result = check_account(world.svc, world.alpha.id, account_id)
                assert result.ok, (provider, account(world, account_id).last_error)
            network(world, allow_http=True, allowed_hosts=[])
            for provider, account_id in ids.items():
                assert not check_account(world.svc, world.alpha.id, account_id).ok, provider
                assert "127.0.0.1" in account(world, account_id).last_error, provider
        finally:
            del os.environ["TEST_EWS_PASSWORD"]


# ------------------------------------------------------------------------------ the CLI

BIN = Path(sys.executable).with_name("assistant")


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "assistant.entrypoints.cli.app"]
    env = {**os.environ, "ASSISTANT_CONFIG": str(home / "assistant.toml"), "COLUMNS": "300",
           "NO_COLOR": "1"}  # fmt: skip
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=60, cwd=home
    )


def test_the_cli_adds_and_marks_the_operators_accounts(tmp_path: Path) -> None:
    home = tmp_path
    assert run(home, "init", str(home)).returncode == 0
    assert run(home, "pair", "add", "alex", "--manager", "alex@example.com",
               "--assistant", "sam@example.com").returncode == 0  # fmt: skip
    feed = home / "team.ics"
    feed.write_text(FEED)
    added = run(home, "account", "add", "team", "--provider", "ics", "--path", str(feed), "--json")
    assert added.returncode == 0, added.stderr
    account_id = json.loads(added.stdout)["id"]
    synced = run(home, "sync", "--json", "--no-send")
    assert synced.returncode == 0, synced.stdout + synced.stderr

    # an account stored before accounts were marked: its local file is no longer read ...
    [database] = home.rglob("assistant.db")
    with sqlite3.connect(database) as db:
        db.execute(f"UPDATE accounts SET settings = json_remove(settings, '$.{OPERATOR_KEY}')")
    synced = run(home, "sync", "--json", "--no-send")
    [row] = json.loads(synced.stdout)
    assert "local files" in row["error"]
    # ... until the operator says it is theirs
    trusted = run(home, "account", "trust", str(account_id))
    assert trusted.returncode == 0, trusted.stderr
    synced = run(home, "sync", "--json", "--no-send")
    assert synced.returncode == 0 and "error" not in json.loads(synced.stdout)[0]


@pytest.mark.parametrize("provider", ["ics", "caldav", "ews"])
def test_tls_still_names_the_host_when_the_checked_address_is_connected_to(
    world: World, server: Server, provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard connects to the address it checked, yet TLS is made for the name (SNI and
    certificate check): the server sees ``localhost``, not ``127.0.0.1``."""
    import ssl

    from tests.support.graph_server import make_certificate

    cert, key = make_certificate(world.tmp)
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    network(world, allowed_hosts=["127.0.0.0/8", "::1"])
    base = f"https://localhost:{server.port}"
    conf: dict[str, Any] = {
        "ics": {"location": f"{base}/cal.ics"},
        "caldav": {"url": f"{base}/dav/cal/"},
        "ews": {"mailbox": "alex@alpha.example", "auth": "basic", "username": "alex",
                "service_endpoint": f"{base}/EWS/Exchange.asmx", "version": "Exchange2016"},
    }[provider]  # fmt: skip
    account_id = web_account(world, provider, conf)
    result = check_account(world.svc, world.alpha.id, account_id)
    assert names and set(names) == {"localhost"}, names
    if provider == "ics":
        assert result.ok, account(world, account_id).last_error
