"""Connecting accounts from the web app: OAuth with PKCE against fake Google and Microsoft
servers over real HTTP(S), password forms with a real Dovecot login, encrypted secrets.

The browser's part is played by the test: the app's redirects are followed through the
TestClient, the provider's over real HTTP, so the authorize URL, the state, the callback
and the token request all take the path they take in production.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from assistant.services.runner import sync_now
from assistant.store.tables import Account, Base, EventSnapshot
from config.settings import (
    GoogleOAuthSettings,
    MicrosoftOAuthSettings,
    NetworkSettings,
    OAuthSettings,
    SecretRef,
)
from tests.support.dovecot import Dovecot
from tests.support.google_server import GoogleCalendarServer
from tests.support.graph_server import GraphServer, trust_for_stored_accounts
from tests.support.web import World, login, world_fixture  # noqa: F401

START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[GoogleCalendarServer]:
    with GoogleCalendarServer(time_zone="Europe/Berlin") as server:
        client_id, secret = server.add_client()
        monkeypatch.setenv("TEST_GOOGLE_CLIENT_SECRET", secret)
        server.client_id = client_id  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphServer]:
    with GraphServer(tmp_path) as server:
        trust_for_stored_accounts(server, monkeypatch)
        yield server


def configure(world: World, google: Any = None, graph: Any = None) -> TestClient:
    """The app with the fake providers' endpoints in [oauth], served as http://testserver."""
    oauth = OAuthSettings()
    if google is not None:
        oauth.google = GoogleOAuthSettings(
            client_id=google.client_id,
            client_secret=SecretRef(env="TEST_GOOGLE_CLIENT_SECRET"),
            authorize_url=google.authorize_url,
            token_url=google.token_uri,
            calendar_api_root=google.url,
            gmail_api_root=google.url,
        )
    if graph is not None:
        oauth.microsoft = MicrosoftOAuthSettings(
            client_id=graph.client_id,
            client_secret=SecretRef(env="TEST_MS_CLIENT_SECRET"),
            authorize_url=graph.authorize_url,
            token_url=graph.token_url,
            graph_url=graph.graph_url,
        )
    # the test servers (Dovecot, an EWS address) are on 127.0.0.1 without TLS: the
    # operator lists them, as a deployment would list its internal hosts
    network = NetworkSettings(allow_http=True, allowed_hosts=["127.0.0.1"])
    world.svc.settings = world.svc.settings.model_copy(update={"oauth": oauth, "network": network})
    return TestClient(world.app(public_url="http://testserver"), follow_redirects=False)


def follow(client: TestClient, r: Any, verify: Any = True, stop_at_callback: bool = False) -> Any:
    """Follow redirects: the app's through the TestClient, a provider's over real HTTP."""
    for _ in range(10):
        if r.status_code not in (301, 302, 303, 307):
            return r
        location = r.headers["location"]
        parts = urlsplit(location)
        if parts.netloc in ("", "testserver"):
            local = parts.path + (f"?{parts.query}" if parts.query else "")
            if stop_at_callback and parts.path.startswith("/oauth/"):
                return local
            r = client.get(local)
        else:
            r = httpx.get(location, verify=verify, follow_redirects=False, timeout=10)
    raise AssertionError("too many redirects")


def start(client: TestClient, token: str, pair_id: int, flow: str, **form: Any) -> Any:
    data = {"csrf_token": token, "part": "calendar", **form}
    return client.post(f"/pairs/{pair_id}/accounts/{flow}/connect", data=data)


def accounts_of(world: World, provider: str) -> list[Account]:
    with world.svc.uow.read() as s:
        return list(s.scalars(select(Account).where(Account.provider == provider)))


def database_text(world: World) -> str:
    """Every row of every table, as text: a secret in clear would show up here."""
    parts = []
    with world.svc.uow.read() as s:
        for table in Base.metadata.sorted_tables:
            parts.append(repr(s.execute(select(table)).all()))
    return "\n".join(parts)


def note(page: str) -> str:
    match = re.search(r'<p id="note" class="(\w+)">([^<]*)</p>', page)
    assert match, page[-2000:]
    return match.group(2)


# ------------------------------------------------------------------------------ Google


def test_connect_google_stores_an_encrypted_refresh_token_and_syncs(
    world: World, google: GoogleCalendarServer
) -> None:
    a = world.alpha
    client = configure(world, google=google)
    token = login(client, "alex@alpha.example")
    r = start(client, token, a.id, "google")
    assert r.status_code == 303
    authorize = urlsplit(r.headers["location"])
    query = parse_qs(authorize.query)
    assert r.headers["location"].startswith(google.authorize_url)
    assert query["code_challenge_method"] == ["S256"] and query["access_type"] == ["offline"]
    assert "https://www.googleapis.com/auth/calendar" in query["scope"][0].split()
    assert query["redirect_uri"] == ["http://testserver/oauth/google/callback"]
    page = follow(client, r)
    assert page.status_code == 200 and "The account is connected" in note(page.text)

    [account] = accounts_of(world, "google")
    assert account.pair_id == a.id and account.settings["identity"] == google.consent_user
    assert set(account.settings["refresh_token"]) == {"encrypted"}
    issued = list(google._refresh_tokens)
    assert len(issued) == 1
    text = database_text(world)
    assert issued[0] not in text and issued[0][3:20] not in text
    assert google.consent_user in page.text  # the account's name names the user

    google.calendar(google.consent_user)  # the manager's calendar, with one meeting
    google.seed_events(google.consent_user, [{
        "summary": "Board meeting", "start": {"dateTime": START.isoformat()},
        "end": {"dateTime": (START + timedelta(hours=1)).isoformat()},
    }])  # fmt: skip
    [row] = sync_now(world.svc, account_id=account.id, send=False).lines
    assert not row.error, row
    with world.svc.uow.read() as s:
        summaries = s.scalars(
            select(EventSnapshot.summary).where(EventSnapshot.account_id == account.id)
        ).all()
        assert list(summaries) == ["Board meeting"]
        assert s.get(Account, account.id).state == "ok"  # type: ignore[union-attr]

    # connecting the same Google user again is a reconnect: still one account, new token
    page = follow(client, start(client, token, a.id, "google"))
    assert "reconnected" in note(page.text)
    assert len(accounts_of(world, "google")) == 1
    # and so is the account's Reconnect button
    r = client.post(f"/pairs/{a.id}/accounts/{account.id}/reconnect", data={"csrf_token": token})
    assert "reconnected" in note(follow(client, r).text)
    assert len(accounts_of(world, "google")) == 1


def test_denied_consent_stores_nothing(world: World, google: GoogleCalendarServer) -> None:
    client = configure(world, google=google)
    token = login(client, "alex@alpha.example")
    google.deny_consent = True
    page = follow(client, start(client, token, world.alpha.id, "google"))
    assert page.status_code == 200
    assert note(page.text) == "Access was not granted, so nothing was connected."
    assert accounts_of(world, "google") == []


def test_tampered_or_expired_state_is_refused(world: World, google: GoogleCalendarServer) -> None:
    a = world.alpha
    client = configure(world, google=google)
    token = login(client, "alex@alpha.example")

    callback = follow(client, start(client, token, a.id, "google"), stop_at_callback=True)
    parts = urlsplit(callback)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    body = q["state"].split(".")
    forged = body[0] + "." + body[1][:-2] + ("AA" if body[1][-2:] != "AA" else "BB") + "." + body[2]
    r = client.get(f"{parts.path}?{urlencode(q | {'state': forged})}")
    assert r.status_code == 400 and "was not started here or was altered" in r.text
    r = client.get(f"{parts.path}?{urlencode({'code': q['code']})}")
    assert r.status_code == 400 and "was not started here" in r.text
    # a state for one provider is not accepted at the other's callback
    r = client.get(f"/oauth/microsoft/callback?{parts.query}")
    assert r.status_code == 400
    assert accounts_of(world, "google") == []

    callback = follow(client, start(client, token, a.id, "google"), stop_at_callback=True)
    world.clock.advance(minutes=16)
    r = client.get(callback)
    assert r.status_code == 400 and "expired" in r.text
    assert accounts_of(world, "google") == []
    world.clock.advance(minutes=-16)
    # the untouched state, in time: it works (and its code was never used)
    r = client.get(callback)
    assert r.status_code == 303 and "n_connected" in r.headers["location"]


def test_another_pairs_user_can_neither_start_nor_finish(
    world: World, google: GoogleCalendarServer
) -> None:
    a = world.alpha
    app_client = configure(world, google=google)
    token = login(app_client, "alex@alpha.example")
    callback = follow(app_client, start(app_client, token, a.id, "google"), stop_at_callback=True)

    other = TestClient(world.app(), follow_redirects=False)
    other_token = login(other, "bob@bravo.example")
    r = start(other, other_token, a.id, "google")
    assert r.status_code == 404 and "location" not in r.headers
    r = other.get(callback)  # the manager's own callback, in another user's session
    assert r.status_code == 400 and "another login session" in r.text
    # an assistant without edit rights in the pair may not connect accounts either
    sam = TestClient(world.app(), follow_redirects=False)
    r = start(sam, login(sam, "sam@alpha.example"), a.id, "google")
    assert r.status_code == 403
    assert accounts_of(world, "google") == []
    # not logged in: off to the login page, nothing stored
    r = TestClient(world.app(), follow_redirects=False).get(callback)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert accounts_of(world, "google") == []


def test_refused_code_and_unconfigured_provider(
    world: World, google: GoogleCalendarServer
) -> None:
    a = world.alpha
    client = configure(world, google=google)
    token = login(client, "alex@alpha.example")
    callback = follow(client, start(client, token, a.id, "google"), stop_at_callback=True)
    parts = urlsplit(callback)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    r = client.get(f"{parts.path}?{urlencode(q | {'code': 'not-a-code'})}")
    assert "refused the sign-in" in note(follow(client, r).text)
    assert accounts_of(world, "google") == []
    # Microsoft is not set up here: a plain message, no redirect anywhere
    page = follow(client, start(client, token, a.id, "microsoft"))
    assert "not set up yet" in note(page.text)


# --------------------------------------------------------------------------- Microsoft


def test_connect_microsoft_365_and_sync(world: World, graph: GraphServer) -> None:
    a = world.alpha
    client = configure(world, graph=graph)
    token = login(client, "alex@alpha.example")
    r = start(client, token, a.id, "microsoft", part=["calendar", "mail"])
    query = parse_qs(urlsplit(r.headers["location"]).query)
    scopes = query["scope"][0].split()
    assert {"Calendars.ReadWrite", "Mail.Read", "offline_access"} <= set(scopes)
    page = follow(client, r, verify=ssl.create_default_context(cafile=graph.ca_file))
    assert "The account is connected" in note(page.text)
    [calendar] = accounts_of(world, "graph")
    [mail] = accounts_of(world, "graph-mail")
    for account in (calendar, mail):
        conf = account.settings
        assert conf["user"] == graph.user and conf["tenant"] == graph.tenant
        assert conf["authority_host"] == graph.authority_host
        assert set(conf["refresh_token"]) == {"encrypted"}
        assert conf["client_secret"] == {"env": "TEST_MS_CLIENT_SECRET"}
    issued = set(graph._refresh)
    text = database_text(world)
    assert issued and not any(t in text for t in issued)
    assert graph.client_secret not in text

    graph.create_event("Quarterly review", START, START + timedelta(hours=1))
    [row] = sync_now(world.svc, account_id=calendar.id, send=False).lines
    assert not row.error, row
    with world.svc.uow.read() as s:
        summaries = s.scalars(
            select(EventSnapshot.summary).where(EventSnapshot.account_id == calendar.id)
        ).all()
    assert list(summaries) == ["Quarterly review"]
    text = database_text(world)
    assert not any(t in text for t in graph._refresh)


def test_a_rotated_microsoft_refresh_token_is_kept_encrypted_and_used_next_time(
    world: World, graph: GraphServer
) -> None:
    client = configure(world, graph=graph)
    token = login(client, "alex@alpha.example")
    r = start(client, token, world.alpha.id, "microsoft")
    follow(client, r, verify=ssl.create_default_context(cafile=graph.ca_file))
    [calendar] = accounts_of(world, "graph")
    first = calendar.settings["refresh_token"]
    graph.single_use_refresh_tokens = True  # an old token is refused once it has been used
    graph.create_event("Quarterly review", START, START + timedelta(hours=1))
    for round_ in range(3):
        graph.expire_access_tokens()  # every sync has to redeem the refresh token
        [row] = sync_now(world.svc, account_id=calendar.id, send=False).lines
        assert not row.error, (round_, row)
    [calendar] = accounts_of(world, "graph")
    stored = calendar.settings["refresh_token"]
    assert set(stored) == {"encrypted"} and stored != first
    assert SecretRef(**stored).resolve().get_secret_value() in graph._refresh
    assert len(graph._refresh) == 1, "each sync used the token the previous one stored"
    assert not any(t in database_text(world) for t in graph._refresh)


def test_microsoft_denied_consent(world: World, graph: GraphServer) -> None:
    client = configure(world, graph=graph)
    token = login(client, "alex@alpha.example")
    graph.deny_consent = True
    tls = ssl.create_default_context(cafile=graph.ca_file)
    page = follow(client, start(client, token, world.alpha.id, "microsoft"), verify=tls)
    assert "nothing was connected" in note(page.text)
    assert accounts_of(world, "graph") == []


# ------------------------------------------------------------------- password forms


def imap_form(token: str, dovecot: Dovecot, password: str, name: str) -> dict[str, str]:
    return {
        "csrf_token": token, "provider": "imap", "name": name, "host": "127.0.0.1",
        "port": str(dovecot.port), "security": "none", "username": dovecot.username,
        "password": password,
    }  # fmt: skip


def test_imap_form_stores_an_encrypted_password_and_checks_the_login(
    world: World, dovecot: Dovecot
) -> None:
    a = world.alpha
    client = configure(world)
    token = login(client, "alex@alpha.example")
    r = client.post(f"/pairs/{a.id}/accounts", data=imap_form(token, dovecot, dovecot.password,
                                                               "Manager mail"))  # fmt: skip
    assert "The account is added" in note(follow(client, r).text)
    [good] = accounts_of(world, "imap")
    assert set(good.settings["password"]) == {"encrypted"}
    assert dovecot.password not in database_text(world)

    r = client.post(f"/pairs/{a.id}/accounts/{good.id}/check", data={"csrf_token": token})
    assert note(follow(client, r).text) == "The connection works."

    wrong = imap_form(token, dovecot, "not-the-password", "Wrong password")
    follow(client, client.post(f"/pairs/{a.id}/accounts", data=wrong))
    bad = next(x for x in accounts_of(world, "imap") if x.name == "Wrong password")
    page = follow(
        client, client.post(f"/pairs/{a.id}/accounts/{bad.id}/check", data={"csrf_token": token})
    )
    assert note(page.text) == (
        "The server refused the password, or access was revoked: reconnect the account."
    )
    with world.svc.uow.read() as s:
        row = s.get(Account, bad.id)
        assert row is not None and row.state == "error"
    assert "Reconnect the account" in page.text  # the account's status, in plain words

    # a new password through the account's Reconnect form: the login works again
    r = client.post(
        f"/pairs/{a.id}/accounts/{bad.id}/reconnect",
        data={"csrf_token": token, "password": dovecot.password},
    )
    assert note(follow(client, r).text) == "The new password is stored."
    r = client.post(f"/pairs/{a.id}/accounts/{bad.id}/check", data={"csrf_token": token})
    assert note(follow(client, r).text) == "The connection works."
    assert dovecot.password not in database_text(world)

    # the app's secret changes: the stored password cannot be read, and the page says so
    world.svc.settings.web.secret_key = SecretRef(env="TEST_NEW_APP_SECRET")
    import os

    os.environ["TEST_NEW_APP_SECRET"] = "a brand new secret of the app, long enough"
    try:
        client = TestClient(world.app(), follow_redirects=False)
        token = login(client, "alex@alpha.example")
        r = client.post(f"/pairs/{a.id}/accounts/{good.id}/check", data={"csrf_token": token})
        page = follow(client, r)
        assert "cannot be read any more" in note(page.text)
        assert "reconnect the account" in page.text
    finally:
        del os.environ["TEST_NEW_APP_SECRET"]


def test_credential_forms_check_their_fields_and_other_pairs_accounts_are_out_of_reach(
    world: World,
) -> None:
    a, b = world.alpha, world.bravo
    client = configure(world)
    token = login(client, "alex@alpha.example")
    r = client.post(f"/pairs/{a.id}/accounts", data={"csrf_token": token, "provider": "ews"})
    assert r.status_code == 400 and "please fill in" in r.text
    r = client.post(
        f"/pairs/{a.id}/accounts",
        data={"csrf_token": token, "provider": "ews", "name": "Exchange",
              "mailbox": "alex@alpha.example", "service_endpoint": "https://127.0.0.1:9/EWS/Exchange.asmx",
              "username": "alex", "password": "ews secret pw"},
    )  # fmt: skip
    assert r.status_code == 303
    [ews] = accounts_of(world, "ews")
    assert ews.settings["auth"] == "basic" and set(ews.settings["password"]) == {"encrypted"}
    assert "ews secret pw" not in database_text(world)
    with world.svc.uow.read() as s:
        bravo_account = s.scalars(select(Account.id).where(Account.pair_id == b.id)).first()
    for action in ("check", "reconnect"):
        r = client.post(
            f"/pairs/{a.id}/accounts/{bravo_account}/{action}",
            data={"csrf_token": token, "password": "x"},
        )
        assert r.status_code == 404
