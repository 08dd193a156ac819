"""The Gmail mailbox connector: full and incremental sync, paging, lost history, messages
deleted mid-sync, threads, auto-replies, auth, faults, request counts, real payloads.

Everything runs through google-api-python-client over real HTTP (batches included)
against the protocol-level server in ``tests/support/gmail_server.py``.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.base import AuthExpired, MailDelta, MailSource, RateLimited, TokenExpired, Transient
from connectors.google.mailbox import METADATA_SCOPE, GmailMailbox
from tests.support.gmail_server import GmailServer

MANAGER = "alex@example.com"
ASSISTANT = "sam@example.com"
EVALDATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "evaldata" / "google" / "gmail"
BASE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[GmailServer]:
    with GmailServer() as s:
        yield s


def connect(server: GmailServer, timeout: float = 5, **kwargs: Any) -> GmailMailbox:
    client_id, client_secret = server.add_client()
    refresh = server.issue_refresh_token(MANAGER, client_id)
    return GmailMailbox.installed_app(
        client_id, client_secret, refresh, token_uri=server.token_uri, api_root=server.url,
        timeout=timeout, **kwargs,
    )  # fmt: skip


def mail(
    n: int,
    *,
    sender: str = ASSISTANT,
    to: str = MANAGER,
    subject: str = "",
    when: datetime | None = None,
    reply_to: str = "",
    headers: dict[str, str] | None = None,
) -> str:
    """An RFC 822 message with Message-ID <n@example.com>."""
    lines = [
        f"From: {'Sam' if sender == ASSISTANT else 'Alex'} <{sender}>",
        f"To: {to}",
        f"Subject: {subject or f'Message {n}'}",
        f"Date: {format_datetime(when or BASE + timedelta(minutes=n))}",
        f"Message-ID: <{n}@example.com>",
    ]
    if reply_to:
        lines += [f"In-Reply-To: <{reply_to}>", f"References: <{reply_to}>"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", f"Body {n}."]
    return "\r\n".join(lines) + "\r\n"


def by_id(delta: MailDelta) -> dict[str, Any]:
    return {m.message_id: m for m in delta.messages}


def wire(server: GmailServer) -> int:
    """HTTP requests that reached the API so far (a batch is one; token requests aside)."""
    return len(server.api_requests())


def grants(server: GmailServer) -> int:
    return sum(1 for r in server.requests if r.path == "/token")


# ------------------------------------------------------------------ sync


def test_full_sync_then_incremental_then_nothing(server: GmailServer) -> None:
    first = server.deliver(MANAGER, mail(1, subject="Budget"))
    server.deliver(MANAGER, mail(2, sender=MANAGER, to=ASSISTANT, subject="Re: Budget",
                                 reply_to="1@example.com"), ["SENT"])  # fmt: skip
    server.deliver(MANAGER, mail(3, sender=MANAGER, to=ASSISTANT), ["DRAFT"])
    server.deliver(MANAGER, mail(4), ["SPAM"])
    server.deliver(MANAGER, mail(5, sender=MANAGER, to=MANAGER), ["INBOX", "SENT"])
    gmail = connect(server)
    assert isinstance(gmail, MailSource)

    full = gmail.changes(None)
    assert full.full
    assert sorted(by_id(full)) == ["1@example.com", "2@example.com", "5@example.com"]
    assert full.token == str(server.history_id(MANAGER))
    reply = by_id(full)["2@example.com"]
    assert reply.thread_id == first == by_id(full)["1@example.com"].thread_id
    assert reply.folder == "SENT"
    assert by_id(full)["1@example.com"].folder == "INBOX"
    assert reply.in_reply_to == "1@example.com"
    assert reply.source_id == reply.extra["gmail_id"]
    assert "body_hash" not in reply.extra
    assert wire(server) == 4, "getProfile, a listing per label, one batch of gets"
    assert len(server.api_calls("messages.get")) == 3
    get = server.api_calls("messages.get")[0]
    assert get.params["format"] == ["full"], "the text is read too, for its keys"
    assert "metadataHeaders" not in get.params
    assert reply.extra["body_key"]

    server.deliver(MANAGER, mail(6, subject="Flights"))
    server.deliver(MANAGER, mail(7, sender=MANAGER, to=ASSISTANT), ["DRAFT"])
    before = wire(server)
    delta = gmail.changes(full.token)
    assert not delta.full
    assert list(by_id(delta)) == ["6@example.com"]
    assert delta.token == str(server.history_id(MANAGER))
    assert wire(server) - before == 2, "history.list and one batch"

    before, counted = wire(server), gmail.requests
    nothing = gmail.changes(delta.token)
    assert nothing.messages == ()
    assert nothing.token == delta.token
    assert not nothing.full
    assert wire(server) - before == 1, "no change costs one request"
    assert gmail.requests - counted == 1
    gmail.close()


def test_paging_of_listings_history_and_batches(server: GmailServer) -> None:
    for n in range(7):
        server.deliver(MANAGER, mail(n))
    for n in range(10, 13):
        server.deliver(MANAGER, mail(n, sender=MANAGER, to=ASSISTANT), ["SENT"])
    gmail = connect(server, page_size=3, batch_size=4)
    full = gmail.changes(None)
    assert len(full.messages) == 10
    assert [m.message_id for m in full.messages] == sorted(
        (m.message_id for m in full.messages), key=lambda i: int(i.split("@")[0])
    ), "oldest first"
    assert len(server.api_calls("messages.list")) == 3 + 1, "7 by 3, then 3 by 3"
    assert sum(1 for r in server.api_requests() if r.path.startswith("/batch")) == 3
    assert len(server.api_calls("messages.get")) == 10

    for n in range(20, 26):
        server.deliver(MANAGER, mail(n))
    server.modify(MANAGER, server.deliver(MANAGER, mail(26)), add=["STARRED"])
    delta = gmail.changes(full.token)
    assert sorted(by_id(delta)) == [f"{n}@example.com" for n in range(20, 27)]
    assert len(server.api_calls("history.list")) == 3, (
        "7 additions by 3; label changes not asked for"
    )
    assert delta.token == str(server.history_id(MANAGER))


def test_lost_history_is_token_expired_then_a_full_sync(server: GmailServer) -> None:
    server.deliver(MANAGER, mail(1))
    gmail = connect(server)
    token = gmail.changes(None).token
    assert token is not None
    server.deliver(MANAGER, mail(2))
    server.expire_history(MANAGER)
    with pytest.raises(TokenExpired):
        gmail.changes(token)
    full = gmail.changes(None)
    assert full.full
    assert sorted(by_id(full)) == ["1@example.com", "2@example.com"]
    before = wire(server)
    assert gmail.changes(full.token).messages == ()
    assert wire(server) - before == 1
    for junk in ("", "not-a-history-id", "12a", "٣٤"):
        with pytest.raises(TokenExpired):
            gmail.changes(junk)


def test_messages_deleted_before_they_are_read_are_left_out(server: GmailServer) -> None:
    server.deliver(MANAGER, mail(1))
    doomed = server.deliver(MANAGER, mail(2))
    server.deliver(MANAGER, mail(3))
    server.delete_after_next_list(MANAGER, doomed)
    gmail = connect(server)
    full = gmail.changes(None)
    assert sorted(by_id(full)) == ["1@example.com", "3@example.com"]
    assert full.skipped == ()
    gets = server.api_calls("messages.get")
    assert [g.status for g in gets if g.path.endswith(doomed)] == [404]

    gone = server.deliver(MANAGER, mail(4))
    server.deliver(MANAGER, mail(5))
    server.delete(MANAGER, gone)  # history still holds its messageAdded
    delta = gmail.changes(full.token)
    assert list(by_id(delta)) == ["5@example.com"]
    assert delta.skipped == ()
    assert delta.token == str(server.history_id(MANAGER))


def test_threads_dates_and_addresses(server: GmailServer) -> None:
    root = server.deliver(MANAGER, mail(1, subject="Offsite"))
    server.deliver(MANAGER, mail(2, sender=MANAGER, to=f"Sam <{ASSISTANT}>", subject="Re: Offsite",
                                 reply_to="1@example.com",
                                 headers={"Cc": "Kim <KIM@Example.com>, lee@example.com"}),
                   ["SENT"])  # fmt: skip
    undated = mail(3).replace(f"Date: {format_datetime(BASE + timedelta(minutes=3))}\r\n", "")
    arrived = datetime(2026, 11, 21, 8, 30, tzinfo=UTC)
    server.deliver(MANAGER, undated, internal_date=arrived)
    server.deliver(MANAGER, "From: Sam <sam@example.com>\r\nSubject: =?utf-8?q?=C3=89t=C3=A9?=\r\n"
                            "Date: Fri, 20 Nov 2026 12:00:00 +0100\r\nMessage-ID: <4@example.com>"
                            "\r\n\r\nbody\r\n")  # fmt: skip
    delta = connect(server).changes(None)
    got = by_id(delta)
    assert got["2@example.com"].thread_id == root == got["1@example.com"].thread_id
    assert got["2@example.com"].references == ("1@example.com",)
    assert got["2@example.com"].to == (ASSISTANT,)
    assert got["2@example.com"].cc == ("kim@example.com", "lee@example.com")
    assert got["2@example.com"].sent_at == BASE + timedelta(minutes=2)
    assert got["3@example.com"].sent_at == arrived
    assert got["3@example.com"].extra["date_source"] == "internaldate"
    assert got["3@example.com"].thread_id != root
    assert got["4@example.com"].subject == "Été"
    assert got["4@example.com"].sent_at == datetime(2026, 11, 20, 11, 0, tzinfo=UTC)


def test_auto_replies_are_marked(server: GmailServer) -> None:
    server.deliver(MANAGER, mail(1, headers={"Auto-Submitted": "auto-replied"}))
    server.deliver(MANAGER, mail(2, headers={"X-Auto-Response-Suppress": "All"}))
    server.deliver(MANAGER, mail(3, headers={"Precedence": "bulk"}))
    server.deliver(MANAGER, mail(4, subject="Automatic reply: Budget"))
    server.deliver(MANAGER, mail(5, headers={"Auto-Submitted": "no"}))
    server.deliver(MANAGER, mail(6))
    got = {k: m.auto_reply for k, m in by_id(connect(server).changes(None)).items()}
    assert got == {"1@example.com": True, "2@example.com": True, "3@example.com": True,
                   "4@example.com": True, "5@example.com": False, "6@example.com": False}  # fmt: skip


def test_a_query_limits_the_first_sync(server: GmailServer) -> None:
    now = datetime.now(UTC)
    server.deliver(MANAGER, mail(1, when=now - timedelta(days=40)))
    server.deliver(MANAGER, mail(2, when=now - timedelta(days=2)))
    server.deliver(MANAGER, mail(3, sender=MANAGER, when=now - timedelta(days=1)), ["SENT"])
    gmail = connect(server, query="newer_than:30d")
    assert sorted(by_id(gmail.changes(None))) == ["2@example.com", "3@example.com"]
    assert {r.params["q"][0] for r in server.api_calls("messages.list")} == {"newer_than:30d"}

    only_query = connect(server, labels=(), query="newer_than:30d")
    token = only_query.changes(None).token
    server.deliver(MANAGER, mail(4, sender=MANAGER), ["DRAFT"])
    server.deliver(MANAGER, mail(5), ["SPAM"])
    server.deliver(MANAGER, mail(6), ["CATEGORY_UPDATES"])  # archived by a filter
    assert list(by_id(only_query.changes(token))) == ["6@example.com"]


def test_the_server_answers_each_format_as_documented(server: GmailServer) -> None:
    multipart = (
        "From: Sam <sam@example.com>\r\nTo: alex@example.com\r\nSubject: Deck\r\n"
        "Message-ID: <9@example.com>\r\nDate: Fri, 20 Nov 2026 10:00:00 +0000\r\n"
        "X-Long: folded\r\n  value\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nSee the deck.\r\n"
        "--b\r\nContent-Type: text/html\r\n\r\n<p>See the deck.</p>\r\n--b--\r\n"
    )
    message_id = server.deliver(MANAGER, multipart)
    base = f"{server.url}gmail/v1/users/me/"
    with httpx.Client(timeout=5) as http:
        auth = {"Authorization": f"Bearer {server.access_token_for(MANAGER)}"}
        full = http.get(f"{base}messages/{message_id}", headers=auth).json()
        assert full["payload"]["mimeType"] == "multipart/alternative"
        assert [p["partId"] for p in full["payload"]["parts"]] == ["0", "1"]
        assert full["snippet"] == "See the deck."
        assert {"name": "X-Long", "value": "folded  value"} in full["payload"]["headers"]
        data = full["payload"]["parts"][0]["body"]["data"]
        assert base64.urlsafe_b64decode(data) == b"See the deck."
        assert full["internalDate"] == str(
            int(datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp() * 1000)
        )
        meta = http.get(f"{base}messages/{message_id}", headers=auth,
                        params={"format": "metadata", "metadataHeaders": ["subject", "FROM"]}).json()  # fmt: skip
        assert [h["name"] for h in meta["payload"]["headers"]] == ["From", "Subject"]
        assert "parts" not in meta["payload"]
        minimal = http.get(
            f"{base}messages/{message_id}", headers=auth, params={"format": "minimal"}
        )
        assert "payload" not in minimal.json()
        assert minimal.json()["labelIds"] == ["INBOX"]
        raw = http.get(
            f"{base}messages/{message_id}", headers=auth, params={"format": "raw"}
        ).json()
        assert base64.urlsafe_b64decode(raw["raw"]).startswith(b"From: Sam")
        missing = http.get(f"{base}messages/ffff", headers=auth)
        assert missing.status_code == 404
        assert missing.json()["error"]["errors"][0]["reason"] == "notFound"
        start = int(full["historyId"]) - 1
        history = http.get(f"{base}history", headers=auth, params={"startHistoryId": start}).json()
        assert history["history"][0]["messagesAdded"][0]["message"]["id"] == message_id
        assert history["historyId"] == str(server.history_id(MANAGER))
        empty = http.get(f"{base}messages", headers=auth, params={"labelIds": "TRASH"}).json()
        assert empty == {"resultSizeEstimate": 0}
        server.expire_history(MANAGER)
        old = http.get(f"{base}history", headers=auth, params={"startHistoryId": start})
        assert old.status_code == 404
        assert old.json()["error"]["status"] == "NOT_FOUND"
        metadata_only = {
            "Authorization": f"Bearer {server.access_token_for(MANAGER, scopes=[METADATA_SCOPE])}"
        }
        refused = http.get(f"{base}messages/{message_id}", headers=metadata_only)
        assert refused.status_code == 403
        anonymous = http.get(f"{base}profile")
        assert anonymous.status_code == 401


# ------------------------------------------------------------------ auth


def test_service_account_with_the_metadata_scope(server: GmailServer) -> None:
    key = server.new_service_account("sync@exec-assistant.iam.gserviceaccount.com", (MANAGER,))
    server.deliver(MANAGER, mail(1))
    gmail = GmailMailbox.service_account(key, MANAGER, api_root=server.url, scopes=[METADATA_SCOPE])
    full = gmail.changes(None)
    assert list(by_id(full)) == ["1@example.com"]
    assert [r.status for r in server.requests if r.path == "/token"] == [200]
    with pytest.raises(AuthExpired, match="403"):  # the metadata scope refuses q
        GmailMailbox.service_account(key, MANAGER, api_root=server.url, query="newer_than:1d",
                                     scopes=[METADATA_SCOPE]).changes(None)  # fmt: skip
    stranger = GmailMailbox.service_account(key, "ceo@example.com", api_root=server.url)
    with pytest.raises(AuthExpired):
        stranger.changes(None)


def test_from_settings(server: GmailServer) -> None:
    server.deliver(MANAGER, mail(1))
    server.deliver(MANAGER, mail(2, sender=MANAGER), ["SENT"])
    client_id, client_secret = server.add_client()
    refresh = server.issue_refresh_token(MANAGER, client_id)
    secrets = {"S": client_secret, "R": refresh}
    settings = {"auth": "oauth", "client_id": client_id, "client_secret": {"env": "S"},
                "refresh_token": {"env": "R"}, "labels": ["INBOX"], "api_root": server.url,
                "token_uri": server.token_uri}  # fmt: skip
    gmail = GmailMailbox.from_settings(settings, lambda ref: secrets[ref["env"]])
    assert list(by_id(gmail.changes(None))) == ["1@example.com"]
    key = server.new_service_account("sync@exec-assistant.iam.gserviceaccount.com", (MANAGER,))
    settings = {"auth": "service_account", "service_account_key": {"env": "K"},
                "subject": MANAGER, "api_root": server.url, "token_uri": server.token_uri}  # fmt: skip
    gmail = GmailMailbox.from_settings(settings, lambda ref: json.dumps(key))
    assert len(gmail.changes(None).messages) == 2
    with pytest.raises(ValueError, match="unknown Google auth"):
        GmailMailbox.from_settings({"auth": "password"}, str)


def test_an_expired_access_token_is_refreshed_once(server: GmailServer) -> None:
    gmail = connect(server)
    token = gmail.changes(None).token
    server.deliver(MANAGER, mail(1))
    server.expire_access_tokens()
    before = grants(server)
    delta = gmail.changes(token)
    assert list(by_id(delta)) == ["1@example.com"]
    assert grants(server) == before + 1

    server.deliver(MANAGER, mail(2))
    server.fail_next(401, reason="authError", method="messages.get")  # inside the batch
    before = grants(server)
    assert list(by_id(gmail.changes(delta.token))) == ["2@example.com"]
    assert grants(server) == before + 1, "the batch refreshed once and sent the part again"


def test_a_refused_refresh_is_auth_expired(server: GmailServer) -> None:
    client_id, client_secret = server.add_client()
    refresh = server.issue_refresh_token(MANAGER, client_id)
    gmail = GmailMailbox.installed_app(
        client_id, client_secret, refresh, token_uri=server.token_uri, api_root=server.url
    )
    token = gmail.changes(None).token
    server.revoke_refresh_token(refresh)
    server.expire_access_tokens()
    with pytest.raises(AuthExpired, match="refresh was refused"):
        gmail.changes(token)
    server.fail_next(401, times=2, method="history.list")  # refreshed, then refused again
    fresh = connect(server)
    fresh_token = fresh.changes(None).token
    with pytest.raises(AuthExpired, match="401"):
        fresh.changes(fresh_token)


# ------------------------------------------------------------------ faults


def test_rate_limits_carry_retry_after(server: GmailServer) -> None:
    gmail = connect(server)
    token = gmail.changes(None).token
    server.fail_next(429, retry_after=7, method="history.list")
    with pytest.raises(RateLimited) as caught:
        gmail.changes(token)
    assert caught.value.retry_after == 7
    server.fail_next(403, reason="userRateLimitExceeded", retry_after=3)
    with pytest.raises(RateLimited) as caught:
        gmail.changes(token)
    assert caught.value.retry_after == 3
    server.fail_next(403, reason="rateLimitExceeded")
    with pytest.raises(RateLimited):
        gmail.changes(token)
    server.fail_next(403, reason="forbidden")
    with pytest.raises(AuthExpired):
        gmail.changes(token)

    server.deliver(MANAGER, mail(1))
    server.deliver(MANAGER, mail(2))
    server.fail_next(500, method="messages.get")  # parts of the batch: a server error,
    server.fail_next(429, retry_after=11, method="messages.get")  # then a rate limit
    with pytest.raises(RateLimited) as caught:
        gmail.changes(token)
    assert caught.value.retry_after == 11
    assert sorted(by_id(gmail.changes(token))) == ["1@example.com", "2@example.com"]


def test_server_errors_and_timeouts_are_transient(server: GmailServer) -> None:
    server.deliver(MANAGER, mail(1))
    gmail = connect(server, timeout=0.4)
    server.fail_next(500)
    with pytest.raises(Transient, match="500"):
        gmail.changes(None)
    server.fail_next(503, method="batch")
    with pytest.raises(Transient, match="503"):
        gmail.changes(None)
    server.fail_next(502, method="messages.get")
    with pytest.raises(Transient):
        gmail.changes(None)
    token = gmail.changes(None).token
    server.deliver(MANAGER, mail(2))
    server.hang_next(1.2, method="history.list")
    with pytest.raises(Transient, match="timed out"):
        gmail.changes(token)
    server.hang_next(1.2, method="batch")
    with pytest.raises(Transient, match="timed out"):
        gmail.changes(token)
    assert list(by_id(gmail.changes(token))) == ["2@example.com"], "nothing lost"
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    with pytest.raises(Transient):
        GmailMailbox(gmail._credentials, api_root=dead, timeout=2).changes(token)


# ----------------------------------------------------------------- evaldata

HTK = EVALDATA / "heedspin-htk"
BATCH = EVALDATA / "PunitDh-Gmail-API" / "batch_messages_get_metadata.multipart.txt"


@pytest.mark.evaldata
def test_real_message_dumps_map_onto_message_data(server: GmailServer) -> None:
    if not HTK.is_dir():
        pytest.skip(f"evaldata absent: {HTK}")
    dumps = json.loads((HTK / "chocolate_procurement.json").read_text())
    tim = dumps["tim@126bps.com"]
    server.load("tim@126bps.com", tim)
    client_id, client_secret = server.add_client()
    refresh = server.issue_refresh_token("tim@126bps.com", client_id)
    gmail = GmailMailbox.installed_app(client_id, client_secret, refresh,
                                       token_uri=server.token_uri, api_root=server.url)  # fmt: skip
    delta = gmail.changes(None)
    assert delta.skipped == ()
    assert {m.source_id for m in delta.messages} == {m["id"] for m in tim}
    assert {m.thread_id for m in delta.messages} == {"148002f2fd0cf062"}
    latest = next(m for m in delta.messages if m.source_id == "14804ad5ff61cc88")
    assert latest.message_id == "CAODAaKo3U8S+mP7+7zyZ6c16fibQdEg1eZowLx6-gVHmvtnYvA@mail.gmail.com"
    assert latest.from_addr == "tharrison@lxdinc.com"
    assert latest.cc == ("lindsay@126bps.com", "tim.harrison@yahoo.com")
    assert (
        latest.in_reply_to == "CAODAaKqZp+XhukG2RY4q=2qhqnfUbmTNPVcv_tC1p5iSmzkF6w@mail.gmail.com"
    )
    assert len(latest.references) == 4
    assert latest.sent_at == datetime(2014, 8, 23, 21, 2, 2, tzinfo=UTC)
    assert latest.folder == "INBOX"
    assert {m.folder for m in delta.messages if m.source_id in ("14804ab5abc1d83d",
                                                                "148002f2fd0cf062")} == {"SENT"}  # fmt: skip
    assert not any(m.auto_reply for m in delta.messages)
    # Gmail's real format=full payloads (multipart/alternative): the text/plain part read.
    assert all(m.extra.get("body_key") and m.extra.get("text_key") for m in delta.messages)
    assert {m.extra["text_key"] for m in delta.messages if m.source_id in (
        "14804ad5ff61cc88", "14804ad611214514")} == {latest.extra["text_key"]}  # fmt: skip

    for name in ("same_email_to_two_groups.json", "two_emails_one_message.json"):
        for user, items in json.loads((HTK / name).read_text()).items():
            with GmailServer() as other:
                other.load(user, items)
                cid, secret = other.add_client()
                box = GmailMailbox.installed_app(
                    cid, secret, other.issue_refresh_token(user, cid), token_uri=other.token_uri,
                    api_root=other.url, labels=(), query="in:inbox OR in:sent",
                )  # fmt: skip
                got = box.changes(None)
                assert got.skipped == (), (name, user)
                assert len(got.messages) == len(items), (name, user)
                assert all(m.from_addr and m.message_id for m in got.messages)


@pytest.mark.evaldata
def test_a_recorded_batch_reply_is_read(server: GmailServer) -> None:
    if not BATCH.is_file():
        pytest.skip(f"evaldata absent: {BATCH}")
    recorded = BATCH.read_text()
    items = []
    for chunk in recorded.split("\n\n{\n")[1:]:
        body = json.loads("{\n" + chunk.split("\n\n--batch_")[0])
        if "id" in body:
            items.append(body)
    assert len(items) == 70
    server.load(MANAGER, items)
    gone = [server.deliver(MANAGER, mail(n)) for n in range(3)]  # answered 404 in the recording
    server.replay_next_batch(recorded)
    gmail = connect(server, labels=("INBOX",), batch_size=100)
    delta = gmail.changes(None)
    # Gmail answered format=metadata with no headers (the request named none that the
    # messages had): nothing to thread on, so each is named in skipped, none is fatal.
    assert delta.messages == ()
    assert len(delta.skipped) == 70
    assert all(s.endswith("the reply holds no headers") for s in delta.skipped)
    assert not any(g in s for g in gone for s in delta.skipped)
    assert sum(1 for r in server.api_requests() if r.path.startswith("/batch")) == 1
