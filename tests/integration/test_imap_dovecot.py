"""The IMAP mailbox connector against a real Dovecot on 127.0.0.1.

Mail is delivered with IMAP APPEND from a second connection, as the manager's own mail
program would; flags are changed and folders recreated the same way.
"""

from __future__ import annotations

import imaplib
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from imapclient import IMAPClient

from connectors.base import (
    AuthExpired,
    ConnectorError,
    MailSource,
    NotFound,
    TokenExpired,
    Transient,
)
from connectors.imap.folders import _by_use
from connectors.imap.mailbox import ImapMailbox, Security
from tests.support.dovecot import Dovecot, start_dovecot

MANAGER = "manager@example.test"
ASSISTANT = "assistant@example.test"


def mail(
    n: int,
    *,
    sender: str = ASSISTANT,
    to: str = MANAGER,
    subject: str = "",
    date: str | None = "Mon, 04 Mar 2030 09:00:00 +0100",
    headers: str = "",
) -> bytes:
    lines = [
        f"From: Someone <{sender}>",
        f"To: {to}",
        f"Subject: {subject or f'Question {n}'}",
        f"Message-ID: <m{n}@example.test>",
    ]
    if date:
        lines.append(f"Date: {date}")
    text = "\r\n".join(lines) + "\r\n" + headers + "\r\nBody of message " + str(n) + "\r\n"
    return text.encode()


@pytest.fixture
def other(dovecot: Dovecot) -> Iterator[IMAPClient]:
    """The manager's other mail program."""
    client = dovecot.client()
    yield client
    client.logout()


@pytest.fixture
def box(dovecot: Dovecot) -> Iterator[ImapMailbox]:
    mailbox = ImapMailbox(
        dovecot.host,
        dovecot.username,
        dovecot.password,
        port=dovecot.port,
        security="none",
        timeout=5,
    )
    yield mailbox
    mailbox.close()


def ids(delta_messages: object) -> set[str]:
    return {m.message_id for m in delta_messages}  # type: ignore[attr-defined]


def deliver(server: Dovecot, *messages: bytes, folder: str = "INBOX") -> None:
    """APPEND from a connection of its own, closed afterwards."""
    client = server.client()
    try:
        for message in messages:
            client.append(folder, message)
    finally:
        client.logout()


def flags_of(client: IMAPClient, folder: str) -> dict[int, tuple[bytes, ...]]:
    client.select_folder(folder, readonly=True)
    uids = client.search(["ALL"])
    return {uid: data[b"FLAGS"] for uid, data in client.fetch(uids, ["FLAGS"]).items()}


def test_dovecot_offers_what_the_connector_uses(other: IMAPClient) -> None:
    caps = set(other.capabilities())
    assert {b"CONDSTORE", b"QRESYNC", b"IDLE", b"SPECIAL-USE"} <= caps


def test_first_sync_lists_inbox_and_sent(box: ImapMailbox, other: IMAPClient) -> None:
    assert isinstance(box, MailSource)
    other.append("INBOX", mail(1))
    other.append("INBOX", mail(2))
    other.append("Sent", mail(3, sender=MANAGER, to=ASSISTANT, subject="Re: Question 1"))
    other.append("Drafts", mail(4, sender=MANAGER, to=ASSISTANT))

    delta = box.changes(None)

    assert delta.full
    assert not delta.skipped
    by_id = {m.message_id: m for m in delta.messages}
    assert set(by_id) == {"m1@example.test", "m2@example.test", "m3@example.test"}
    assert by_id["m1@example.test"].folder == "INBOX"
    assert by_id["m3@example.test"].folder == "Sent"
    first = by_id["m1@example.test"]
    assert first.from_addr == ASSISTANT
    assert first.to == (MANAGER,)
    assert first.sent_at == datetime(2030, 3, 4, 8, 0, tzinfo=UTC)
    assert first.source_id.startswith("INBOX/")
    assert "body_hash" not in first.extra  # the body is read only up to a bound
    assert first.extra["body_key"] and "text_key" not in first.extra  # "Body of message 1"
    assert delta.token is not None
    state = json.loads(delta.token)["folders"]
    assert set(state) == {"INBOX", "Sent"}
    assert state["INBOX"]["uid"] == 2
    assert isinstance(state["INBOX"]["ms"], int)  # CONDSTORE's HIGHESTMODSEQ


def test_incremental_returns_only_new_messages(box: ImapMailbox, other: IMAPClient) -> None:
    other.append("INBOX", mail(1))
    other.append("Sent", mail(2, sender=MANAGER, to=ASSISTANT))
    first = box.changes(None)
    assert ids(first.messages) == {"m1@example.test", "m2@example.test"}

    other.append("INBOX", mail(3))
    other.append("Sent", mail(4, sender=MANAGER, to=ASSISTANT))
    second = box.changes(first.token)
    assert not second.full
    assert ids(second.messages) == {"m3@example.test", "m4@example.test"}

    third = box.changes(second.token)
    assert not third.full
    assert third.messages == ()
    assert third.token == second.token

    # A new connector instance (another worker) continues from the stored token.
    other.append("INBOX", mail(5))
    fresh = ImapMailbox(
        box.host, box.username, box._password, port=box.port, security="none", timeout=5
    )
    try:
        fourth = fresh.changes(third.token)
    finally:
        fresh.close()
    assert ids(fourth.messages) == {"m5@example.test"}


def test_flag_changes_and_expunges_produce_nothing(box: ImapMailbox, other: IMAPClient) -> None:
    for n in range(1, 4):
        other.append("INBOX", mail(n))
    first = box.changes(None)
    assert len(first.messages) == 3

    other.select_folder("INBOX")
    uids = other.search(["ALL"])
    other.add_flags(uids, [b"\\Seen", b"\\Flagged", b"\\Answered"])
    other.remove_flags(uids[:1], [b"\\Seen"])
    other.delete_messages(uids[-1:])
    other.expunge()

    second = box.changes(first.token)
    assert not second.full
    assert second.messages == ()

    other.append("INBOX", mail(9))
    third = box.changes(second.token)
    assert ids(third.messages) == {"m9@example.test"}


def test_uidvalidity_change_rereads_that_folder(box: ImapMailbox, other: IMAPClient) -> None:
    other.append("INBOX", mail(1))
    other.append("Sent", mail(2, sender=MANAGER, to=ASSISTANT))
    first = box.changes(None)
    before = other.folder_status("Sent", [b"UIDVALIDITY"])[b"UIDVALIDITY"]

    other.delete_folder("Sent")
    other.create_folder("Sent")
    other.append("Sent", mail(2, sender=MANAGER, to=ASSISTANT))  # the same message again
    other.append("Sent", mail(3, sender=MANAGER, to=ASSISTANT))
    assert other.folder_status("Sent", [b"UIDVALIDITY"])[b"UIDVALIDITY"] != before

    second = box.changes(first.token)
    assert second.full
    assert ids(second.messages) == {"m2@example.test", "m3@example.test"}
    assert {m.folder for m in second.messages} == {"Sent"}  # INBOX is not re-read

    third = box.changes(second.token)
    assert not third.full
    assert third.messages == ()


def test_auto_replies_keep_their_headers(box: ImapMailbox, other: IMAPClient) -> None:
    other.append(
        "INBOX",
        mail(
            1,
            sender=MANAGER,
            to=ASSISTANT,
            subject="Automatic reply: Question 7",
            headers=(
                "Auto-Submitted: auto-replied\r\n"
                "X-Auto-Response-Suppress: All\r\n"
                "In-Reply-To: <m7@example.test>\r\n"
                "References: <m6@example.test> <m7@example.test>\r\n"
            ),
        ),
    )
    other.append("INBOX", mail(2, headers="Precedence: bulk\r\n"))
    other.append("INBOX", mail(3, headers="Auto-Submitted: no\r\n"))

    delta = box.changes(None)

    by_id = {m.message_id: m for m in delta.messages}
    auto = by_id["m1@example.test"]
    assert auto.auto_reply
    assert auto.in_reply_to == "m7@example.test"
    assert auto.references == ("m6@example.test", "m7@example.test")
    assert auto.subject == "Automatic reply: Question 7"
    assert by_id["m2@example.test"].auto_reply
    assert not by_id["m3@example.test"].auto_reply


def test_message_without_date_uses_internaldate(box: ImapMailbox, other: IMAPClient) -> None:
    arrived = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)  # Dovecot ignores future dates
    other.append("INBOX", mail(1, date=None), msg_time=arrived)

    (msg,) = box.changes(None).messages

    assert msg.sent_at == arrived
    assert msg.extra["date_source"] == "internaldate"


def test_malformed_message_is_skipped_not_fatal(box: ImapMailbox, other: IMAPClient) -> None:
    other.append("INBOX", mail(1))
    other.append("INBOX", b"this is not a mail message at all\r\n")
    other.append("INBOX", mail(3))

    delta = box.changes(None)

    assert ids(delta.messages) == {"m1@example.test", "m3@example.test"}
    assert len(delta.skipped) == 1
    assert delta.skipped[0].startswith("INBOX/")
    assert "no mail headers" in delta.skipped[0]
    assert json.loads(delta.token or "")["folders"]["INBOX"]["uid"] == 3  # not read again


def test_seen_is_never_set(box: ImapMailbox, other: IMAPClient) -> None:
    other.append("INBOX", mail(1))
    other.append("Sent", mail(2, sender=MANAGER))
    token = box.changes(None).token
    other.append("INBOX", mail(3))
    box.changes(token)
    box.idle(0.1)

    for folder in ("INBOX", "Sent"):
        for flags in flags_of(other, folder).values():
            assert b"\\Seen" not in flags


def test_wrong_password_is_auth_expired(dovecot: Dovecot) -> None:
    box = ImapMailbox(
        dovecot.host,
        dovecot.username,
        "not-the-password",
        port=dovecot.port,
        security="none",
        timeout=5,
    )
    with pytest.raises(AuthExpired) as caught:
        box.changes(None)
    assert "not-the-password" not in str(caught.value)
    assert "not-the-password" not in repr(box)


def test_server_stopped_is_transient() -> None:
    server = start_dovecot()
    try:
        deliver(server, mail(1))
        box = ImapMailbox(
            server.host,
            server.username,
            server.password,
            port=server.port,
            security="none",
            timeout=3,
        )
        token = box.changes(None).token
        server.stop()

        with pytest.raises(Transient):  # the open connection was closed
            box.changes(token)
        with pytest.raises(Transient):  # and a new one is refused
            box.changes(token)
        with pytest.raises(Transient):
            box.idle(0.1)
        box.close()
    finally:
        server.cleanup()


def test_silent_server_is_transient() -> None:
    with socket.socket() as listener:  # accepts connections (backlog), never says a word
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        box = ImapMailbox(
            "127.0.0.1", "someone", "secret", port=listener.getsockname()[1], timeout=0.5
        )
        started = time.monotonic()
        with pytest.raises(Transient, match="did not answer"):
            box.changes(None)
        assert time.monotonic() - started < 3


def test_idle_returns_when_mail_arrives(box: ImapMailbox, dovecot: Dovecot) -> None:
    token = box.changes(None).token

    timer = threading.Timer(0.3, deliver, (dovecot, mail(1)))
    timer.start()
    started = time.monotonic()
    try:
        assert box.idle(10) is True
    finally:
        timer.join()
    assert time.monotonic() - started < 5

    delta = box.changes(token)
    assert ids(delta.messages) == {"m1@example.test"}


def test_idle_times_out_quietly_and_ignores_flag_changes(
    box: ImapMailbox, other: IMAPClient
) -> None:
    other.append("INBOX", mail(1))
    box.changes(None)

    def touch() -> None:
        other.select_folder("INBOX")
        other.add_flags(other.search(["ALL"]), [b"\\Flagged"])

    timer = threading.Timer(0.2, touch)
    timer.start()
    started = time.monotonic()
    try:
        # Dovecot also sends "* OK Still here" every second (imap_idle_notify_interval)
        assert box.idle(1.5) is False
    finally:
        timer.join()
    assert time.monotonic() - started >= 1.4


def test_idle_reports_mail_that_came_before_it(
    box: ImapMailbox, other: IMAPClient, dovecot: Dovecot
) -> None:
    token = box.changes(None).token
    other.append("INBOX", mail(1))  # between the sync and the IDLE

    started = time.monotonic()
    assert box.idle(10) is True
    # A push worker of its own learns the same from the stored token.
    with ImapMailbox(
        dovecot.host,
        dovecot.username,
        dovecot.password,
        port=dovecot.port,
        security="none",
        timeout=5,
    ) as watcher:
        assert watcher.idle(10, token=token) is True
    assert time.monotonic() - started < 2
    assert ids(box.changes(token).messages) == {"m1@example.test"}


def test_configured_folders(dovecot: Dovecot, other: IMAPClient) -> None:
    other.create_folder("Projects/Board")
    other.append("INBOX", mail(1))
    other.append("Sent", mail(2, sender=MANAGER))
    other.append("Projects/Board", mail(3))

    def box_of(*folders: str) -> ImapMailbox:
        return ImapMailbox(
            dovecot.host,
            dovecot.username,
            dovecot.password,
            port=dovecot.port,
            security="none",
            folders=folders,
            timeout=5,
        )

    with box_of("\\Sent", "Projects/Board") as box:
        delta = box.changes(None)
    assert {(m.message_id, m.folder) for m in delta.messages} == {
        ("m2@example.test", "Sent"),
        ("m3@example.test", "Projects/Board"),
    }
    with box_of("inbox") as box:
        assert ids(box.changes(None).messages) == {"m1@example.test"}
    with box_of("INBOX", "Archive") as box, pytest.raises(NotFound):
        box.changes(None)


def test_foreign_or_broken_token_asks_for_full_sync(box: ImapMailbox, dovecot: Dovecot) -> None:
    username, password = dovecot.spare_user()
    other_box = ImapMailbox(dovecot.host, username, password, port=dovecot.port, security="none")
    try:
        token = other_box.changes(None).token
    finally:
        other_box.close()
    with pytest.raises(TokenExpired):
        box.changes(token)
    with pytest.raises(TokenExpired):
        box.changes("not json")


def test_sent_folder_found_by_name_without_special_use() -> None:
    listing = [((b"\\hasnochildren",), "INBOX"), ((b"\\hasnochildren",), "INBOX.Sent Items")]
    assert _by_use(listing, "\\Sent") == "INBOX.Sent Items"
    russian = [((), "INBOX"), ((), "Отправленные")]
    assert _by_use(russian, "\\Sent") == "Отправленные"
    assert _by_use([((), "INBOX")], "\\Sent") is None


@pytest.fixture
def tls_dovecot() -> Iterator[Dovecot]:
    server = start_dovecot(tls=True)
    try:
        yield server
    finally:
        server.cleanup()


def test_implicit_tls_and_starttls(tls_dovecot: Dovecot) -> None:
    server = tls_dovecot
    deliver(server, mail(1))
    modes: tuple[tuple[Security, int], ...] = (
        ("ssl", server.imaps_port),
        ("starttls", server.port),
    )
    for security, port in modes:
        with ImapMailbox(
            server.host,
            server.username,
            server.password,
            port=port,
            security=security,
            ssl_context=server.ssl_context(),
            timeout=5,
        ) as box:
            assert ids(box.changes(None).messages) == {"m1@example.test"}, security


def test_untrusted_certificate_is_refused_not_retried(tls_dovecot: Dovecot) -> None:
    server = tls_dovecot
    box = ImapMailbox(
        server.host, server.username, server.password, port=server.imaps_port, timeout=5
    )
    with pytest.raises(ConnectorError) as caught:
        box.changes(None)
    assert not isinstance(caught.value, Transient)
    assert "certificate" in str(caught.value)


def test_starttls_is_required_when_asked_for(dovecot: Dovecot) -> None:
    box = ImapMailbox(
        dovecot.host,
        dovecot.username,
        dovecot.password,
        port=dovecot.port,
        security="starttls",
        timeout=5,
    )
    with pytest.raises(ConnectorError) as caught:
        box.changes(None)
    assert not isinstance(caught.value, Transient | AuthExpired)
    assert "STARTTLS" in str(caught.value)
    assert "Login" not in dovecot.log()  # the password was never sent in clear


def test_a_sync_from_a_token_lists_no_folders(
    box: ImapMailbox, other: IMAPClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every poll of every mailbox opens a new connector: the folders the last sync read
    come from its token, not from a LIST each time (a folder gone since fails its STATUS,
    and the sync after looks the folders up again)."""
    other.append("INBOX", mail(1))
    other.append("Sent", mail(2, sender=MANAGER, to=ASSISTANT))
    token = box.changes(None).token
    box.close()
    commands: list[str] = []
    sent_command = imaplib.IMAP4._command

    def noted(self: imaplib.IMAP4, name: str, *args: object) -> object:
        commands.append(name)
        return sent_command(self, name, *args)

    monkeypatch.setattr(imaplib.IMAP4, "_command", noted)
    fresh = ImapMailbox(box.host, box.username, box._password, port=box.port,
                        security="none", timeout=5)  # fmt: skip
    try:
        assert fresh.changes(token).messages == ()
        assert "LIST" not in commands and commands.count("STATUS") == 2, commands
        other.append("Sent", mail(3, sender=MANAGER, to=ASSISTANT))
        again = fresh.changes(token)
    finally:
        fresh.close()
    assert {m.message_id for m in again.messages} == {"m3@example.test"}
    assert "LIST" not in commands, commands
