"""Mail read over IMAP (a real Dovecot) and from Gmail (the protocol-level server, through
the real googleapiclient) keeps what its text says (issue 14, points 2 and 3), as mail
imported from an archive does (``test_mail_text_keys``): a copy with its own Message-ID
counts once while another text sent in the same second with the same subject counts on
its own; a reply with a blank subject and no In-Reply-To that quotes the assistant's text
pairs with it; a text part beyond what the connector reads still gives keys (from its
start); reading never marks mail as read. Stored path: ``import_mail`` then
``latency_of_pair``, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from imapclient import IMAPClient

from assistant.bootstrap import Service
from assistant.domain.latency.quotes import BODY_KEY, QUOTE_KEYS, TEXT_KEY, text_keys
from assistant.services.mail import import_mail
from assistant.services.pairs import add_account
from assistant.store.db import UnitOfWork
from connectors.archive.text import MAX_TEXT_CHARS
from connectors.google.mailbox import METADATA_SCOPE, GmailMailbox
from connectors.google.payload import MAX_TEXT_BYTES
from connectors.imap.mailbox import ImapMailbox
from connectors.imap.messages import TEXT_BYTES
from tests.support.dovecot import Dovecot
from tests.support.gmail_server import METADATA, GmailServer
from tests.support.mail_keys import (
    ASSISTANT,
    CAR,
    CONTRACT,
    MANAGER,
    QUOTED_CONTRACT,
    TUESDAY,
    latency_records,
    pair_service,
    stored_messages,
)

QUOTED_OTHER = "\n".join("> " + line for line in (
    "Could you move the board dinner to Thursday evening and",
    "tell the caterer that we will be twelve instead of ten?"))  # fmt: skip
# A long text: numbered lines, so every cut is somewhere else in the words.
LONG = CONTRACT + "\n\n" + "".join(f"Clause {n} of the lease says what it says.\n"
                                   for n in range(12_000))  # fmt: skip


def mail(mid: str, frm: str, to: str, at: datetime, subject: str, body: str, *,
         cc: str = "", reply_to: str = "", cte: str | None = None,
         html: bool = False, attachment: bytes = b"") -> bytes:  # fmt: skip
    """An RFC 822 message (CRLF), text/plain; with ``html`` a multipart/alternative,
    with ``attachment`` a PDF after them (multipart/mixed)."""
    msg = EmailMessage()
    msg["From"], msg["To"] = frm, to
    if cc:
        msg["Cc"] = cc
    msg["Subject"], msg["Date"], msg["Message-ID"] = subject, format_datetime(at), f"<{mid}>"
    if reply_to:
        msg["In-Reply-To"] = msg["References"] = f"<{reply_to}>"
    msg.set_content(body, cte=cte)
    if html:
        msg.add_alternative(f"<html><body><p>{body}</p></body></html>", subtype="html")
    if attachment:
        msg.add_attachment(attachment, maintype="application", subtype="pdf",
                           filename="lease.pdf")  # fmt: skip
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture
def svc(uow: UnitOfWork, tmp_path: Path) -> Service:
    return pair_service(uow, tmp_path)


def stored(svc: Service) -> dict[str, dict[str, str]]:
    """The stored messages' text keys by Message-ID."""
    return {mid: m.extra for mid, m in stored_messages(svc).items()}


def sent_records(svc: Service) -> dict[str, dict[str, Any]]:
    """The pair's assistant → manager latency records by Message-ID."""
    return {mid: r for mid, r in latency_records(svc).items()
            if r["direction"] == "assistant_to_manager"}  # fmt: skip


# ------------------------------------------------------------------------- IMAP


@pytest.fixture
def other(dovecot: Dovecot) -> Iterator[IMAPClient]:
    """The manager's other mail program, delivering with APPEND."""
    client = dovecot.client()
    client.create_folder("Archive")
    yield client
    client.logout()


@pytest.fixture
def imap(dovecot: Dovecot, other: IMAPClient) -> Iterator[ImapMailbox]:
    box = ImapMailbox(dovecot.host, dovecot.username, dovecot.password, port=dovecot.port,
                      security="none", folders=("Archive", "INBOX", "\\Sent"), timeout=5)  # fmt: skip
    yield box
    box.close()


def imap_account(svc: Service, dovecot: Dovecot) -> int:
    return add_account(svc, pair="alex", name="imap", provider="imap", settings={
        "host": dovecot.host, "port": dovecot.port, "security": "none",
        "username": dovecot.username, "password": {"env": "IMAP_PASSWORD"}}).id  # fmt: skip


def unseen_everywhere(other: IMAPClient) -> bool:
    for folder in ("INBOX", "Archive", "Sent"):
        other.select_folder(folder, readonly=True)
        uids = other.search(["ALL"])
        if any(b"\\Seen" in d[b"FLAGS"] for d in other.fetch(uids, ["FLAGS"]).values()):
            return False
    return True


def test_imap_a_bcc_copy_is_one_message_and_another_text_in_the_same_second_another(
    svc: Service, dovecot: Dovecot, other: IMAPClient, imap: ImapMailbox
) -> None:
    # The assistant sends two texts with one subject in the same second ("send later").
    other.append("INBOX", mail("t1@x", ASSISTANT, MANAGER, TUESDAY, "Today", CONTRACT))
    other.append("INBOX", mail("t2@x", ASSISTANT, MANAGER, TUESDAY, "Today", CAR))
    # A Bcc copy of the first filed in Archive: its own Message-ID, another To list.
    other.append("Archive", mail("t1-copy@x", ASSISTANT, "lee@example.com", TUESDAY, "Today",
                                 CONTRACT, cc=MANAGER))  # fmt: skip
    other.append("Sent", mail("r1@x", MANAGER, ASSISTANT, TUESDAY + timedelta(minutes=20),
                              "Re: Today", "Signed.", reply_to="t1@x"))  # fmt: skip
    other.append("Sent", mail("r2@x", MANAGER, ASSISTANT, TUESDAY + timedelta(minutes=40),
                              "Re: Today", "Thanks.", reply_to="t2@x"))  # fmt: skip
    assert import_mail(svc, imap_account(svc, dovecot), imap).new == 5

    keys = stored(svc)
    assert keys["t1@x"][BODY_KEY] == keys["t1-copy@x"][BODY_KEY]
    assert keys["t1@x"][BODY_KEY] != keys["t2@x"][BODY_KEY]
    sent = sent_records(svc)
    assert "t2@x" in sent and len(sent) == 2, (
        "the copy counts once; the other text sent in the same second is its own message"
    )
    # One thread (subject "Today"): the manager's first reply answers both.
    assert [m["working_minutes"] for m in sent.values()] == [pytest.approx(20)] * 2
    assert unseen_everywhere(other)


def test_imap_a_reply_with_a_blank_subject_that_quotes_the_message_pairs_with_it(
    svc: Service, dovecot: Dovecot, other: IMAPClient, imap: ImapMailbox
) -> None:
    other.append("INBOX", mail("q1@x", ASSISTANT, MANAGER, TUESDAY, "Lease contract", CONTRACT))
    other.append("INBOX", mail("q3@x", ASSISTANT, MANAGER, TUESDAY + timedelta(minutes=5),
                               "Airport", CAR))  # fmt: skip
    account = imap_account(svc, dovecot)
    assert import_mail(svc, account, imap).new == 2
    assert [m["replied_at"] for m in sent_records(svc).values()] == [None, None]

    # No In-Reply-To, no References, a blank subject: only the quote ties it to q1. The
    # other reply quotes a text the assistant never sent: it ties to nothing.
    other.append("Sent", mail("q2@x", MANAGER, ASSISTANT, TUESDAY + timedelta(minutes=30), "",
                              f"Done, signed and sent back.\n\nOn Tue, Sam wrote:\n"
                              f"{QUOTED_CONTRACT}\n"))  # fmt: skip
    other.append("Sent", mail("q4@x", MANAGER, ASSISTANT, TUESDAY + timedelta(minutes=50), "",
                              f"Yes, will do.\n\nOn Tue, Lee wrote:\n{QUOTED_OTHER}\n"))  # fmt: skip
    assert import_mail(svc, account, imap).new == 2  # incremental, from the token

    keys = stored(svc)
    assert keys["q1@x"][TEXT_KEY] in keys["q2@x"][QUOTE_KEYS].split()
    assert keys["q3@x"][TEXT_KEY] not in keys["q4@x"][QUOTE_KEYS].split()
    sent = sent_records(svc)
    assert sent["q1@x"]["replied_at"] is not None
    assert sent["q1@x"]["working_minutes"] == pytest.approx(30)
    assert sent["q3@x"]["replied_at"] is None, "a quote of another text pairs with nothing"
    assert unseen_everywhere(other)


def test_imap_a_text_part_beyond_what_is_read_still_gives_keys_and_nothing_is_seen(
    svc: Service, dovecot: Dovecot, other: IMAPClient, imap: ImapMailbox
) -> None:
    # A base64 text part well beyond TEXT_BYTES (cut inside a base64 line), then a PDF.
    big = mail("big@x", ASSISTANT, MANAGER, TUESDAY, "Lease", LONG, cte="base64",
               attachment=b"%PDF-1.4 " + b"\x00\xff" * 50_000)  # fmt: skip
    assert len(big) > 2 * TEXT_BYTES
    other.append("INBOX", big)
    other.append("Sent", mail("re-big@x", MANAGER, ASSISTANT, TUESDAY + timedelta(minutes=15),
                              "", f"Signed.\n\nOn Tue, Sam wrote:\n{QUOTED_CONTRACT}\n"))  # fmt: skip
    assert import_mail(svc, imap_account(svc, dovecot), imap).new == 2

    keys = stored(svc)["big@x"]
    assert keys[TEXT_KEY] == text_keys(LONG)[TEXT_KEY]
    assert keys[BODY_KEY] == text_keys(decoded_start(big))[BODY_KEY] != text_keys(LONG)[BODY_KEY]
    assert sent_records(svc)["big@x"]["working_minutes"] == pytest.approx(15)
    assert unseen_everywhere(other)


def decoded_start(raw: bytes) -> str:
    """The text of the whole base64 lines within the first TEXT_BYTES of the body of
    ``raw`` (a multipart whose first part is the base64 text)."""
    body = raw.split(b"\r\n\r\n", 1)[1][:TEXT_BYTES]
    first_part = body[: body.rfind(b"\r\n")].split(b"\r\n\r\n", 1)[1]
    return base64.b64decode(b"".join(first_part.split())).decode()


# ------------------------------------------------------------------------ Gmail


@pytest.fixture
def server() -> Iterator[GmailServer]:
    with GmailServer() as s:
        yield s


def gmail_box(server: GmailServer, scopes: list[str] | None = None) -> GmailMailbox:
    client_id, client_secret = server.add_client()
    refresh = server.issue_refresh_token(MANAGER, client_id, scopes)
    return GmailMailbox.installed_app(client_id, client_secret, refresh,
                                      token_uri=server.token_uri, api_root=server.url,
                                      labels=("INBOX", "SENT", "Archive"), timeout=5)  # fmt: skip


def gmail_account(svc: Service) -> int:
    return add_account(svc, pair="alex", name="gmail", provider="gmail",
                       settings={"auth": "oauth", "refresh_token": {"env": "G"}}).id  # fmt: skip


def test_gmail_a_bcc_copy_is_one_message_and_another_text_in_the_same_second_another(
    svc: Service, server: GmailServer
) -> None:
    server.deliver(MANAGER, mail("t1@x", ASSISTANT, MANAGER, TUESDAY, "Today", CONTRACT,
                                 html=True))  # fmt: skip
    server.deliver(MANAGER, mail("t2@x", ASSISTANT, MANAGER, TUESDAY, "Today", CAR, html=True))
    server.deliver(MANAGER, mail("t1-copy@x", ASSISTANT, "lee@example.com", TUESDAY, "Today",
                                 CONTRACT, cc=MANAGER, html=True), ["Archive"])  # fmt: skip
    server.deliver(MANAGER, mail("r2@x", MANAGER, ASSISTANT, TUESDAY + timedelta(minutes=40),
                                 "Re: Today", "Thanks.", reply_to="t2@x"), ["SENT"])  # fmt: skip
    gmail = gmail_box(server)
    assert import_mail(svc, gmail_account(svc), gmail).new == 4

    keys = stored(svc)
    assert keys["t1@x"][BODY_KEY] == keys["t1-copy@x"][BODY_KEY]
    assert keys["t1@x"][BODY_KEY] != keys["t2@x"][BODY_KEY]
    sent = sent_records(svc)
    assert "t2@x" in sent and len(sent) == 2, (
        "the copy counts once; the other text sent in the same second is its own message"
    )
    assert sent["t2@x"]["working_minutes"] == pytest.approx(40)
    assert {c.params["format"][0] for c in server.api_calls("messages.get")} == {"full"}


def test_gmail_a_reply_with_a_blank_subject_that_quotes_the_message_pairs_with_it(
    svc: Service, server: GmailServer
) -> None:
    # Gmail threads by reply headers and subject: each reply below gets a thread of its own,
    # so only the text it quotes says what it answers (the threading reads quotes whatever
    # the provider's threads say: main's e841821).
    server.deliver(MANAGER, mail("q1@x", ASSISTANT, MANAGER, TUESDAY, "Lease contract",
                                 CONTRACT, html=True))  # fmt: skip
    server.deliver(MANAGER, mail("q3@x", ASSISTANT, MANAGER, TUESDAY + timedelta(minutes=5),
                                 "Airport", CAR))  # fmt: skip
    gmail, account = gmail_box(server), gmail_account(svc)
    assert import_mail(svc, account, gmail).new == 2
    assert [m["replied_at"] for m in sent_records(svc).values()] == [None, None]

    server.deliver(MANAGER, mail("q2@x", MANAGER, ASSISTANT, TUESDAY + timedelta(minutes=30), "",
                                 f"Done, signed and sent back.\n\nOn Tue, Sam wrote:\n"
                                 f"{QUOTED_CONTRACT}\n"), ["SENT"])  # fmt: skip
    server.deliver(MANAGER, mail("q4@x", MANAGER, ASSISTANT, TUESDAY + timedelta(minutes=50), "",
                                 f"Yes, will do.\n\nOn Tue, Lee wrote:\n{QUOTED_OTHER}\n"),
                   ["SENT"])  # fmt: skip
    assert import_mail(svc, account, gmail).new == 2  # incremental, from the history

    keys = stored(svc)
    assert keys["q1@x"][TEXT_KEY] == text_keys(CONTRACT)[TEXT_KEY], "from the text/plain part"
    assert keys["q1@x"][TEXT_KEY] in keys["q2@x"][QUOTE_KEYS].split()
    assert keys["q3@x"][TEXT_KEY] not in keys["q4@x"][QUOTE_KEYS].split()
    sent = sent_records(svc)
    assert sent["q1@x"]["replied_at"] is not None
    assert sent["q1@x"]["working_minutes"] == pytest.approx(30)
    assert sent["q3@x"]["replied_at"] is None, "a quote of another text pairs with nothing"


def test_gmail_a_text_part_beyond_what_is_read_still_gives_keys_attachments_never_read(
    svc: Service, server: GmailServer
) -> None:
    big = mail("big@x", ASSISTANT, MANAGER, TUESDAY, "Lease", LONG, html=True,
               attachment=b"%PDF-1.4 " + b"\x00\xff" * 50_000)  # fmt: skip
    assert len(LONG.encode()) > MAX_TEXT_BYTES
    gmail_id = server.deliver(MANAGER, big)
    parts = server.mailbox(MANAGER).messages[gmail_id].resource["payload"]["parts"]
    assert "attachmentId" in parts[1]["body"] and "data" not in parts[1]["body"]
    assert import_mail(svc, gmail_account(svc), gmail_box(server)).new == 1

    keys = stored(svc)["big@x"]
    assert keys == {k: v for k, v in text_keys(LONG[:MAX_TEXT_CHARS]).items() if k in keys}
    assert keys[BODY_KEY] != text_keys(LONG)[BODY_KEY]
    assert server.api_calls("messages.attachments.get") == []


def test_gmail_with_the_metadata_scope_only_reads_headers_and_says_so_once(
    server: GmailServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="connectors.google.mailbox")
    server.deliver(MANAGER, mail("m1@x", ASSISTANT, MANAGER, TUESDAY, "Today", CONTRACT))
    client_id, client_secret = server.add_client()
    refresh = server.issue_refresh_token(MANAGER, client_id, [METADATA])
    # Configured with the metadata scope: never asks for format=full.
    configured = GmailMailbox.installed_app(client_id, client_secret, refresh,
                                            token_uri=server.token_uri, api_root=server.url,
                                            scopes=[METADATA_SCOPE], timeout=5)  # fmt: skip
    # Credentials that do not say their scopes (a token granted less than was asked for):
    # Gmail's 403 to format=full tells, once.
    unsaid = GmailMailbox(Credentials(None, refresh_token=refresh, client_id=client_id,
                                      client_secret=client_secret, token_uri=server.token_uri),
                          api_root=server.url, timeout=5)  # fmt: skip
    for gmail, formats in ((configured, ["metadata"] * 2),
                           (unsaid, ["full", "metadata", "metadata"])):  # fmt: skip
        before = len(server.api_calls("messages.get"))
        first = gmail.changes(None)
        late = server.deliver(MANAGER, mail("m2@x", ASSISTANT, MANAGER, TUESDAY, "Today", CAR))
        second = gmail.changes(first.token)
        server.delete(MANAGER, late)
        got = first.messages + second.messages
        assert [m.message_id for m in got] == ["m1@x", "m2@x"]
        assert not any(BODY_KEY in m.extra for m in got), "no text: no text keys"
        assert first.skipped == second.skipped == ()
        asked = [c.params["format"][0] for c in server.api_calls("messages.get")[before:]]
        assert asked == formats
    said = [r.getMessage() for r in caplog.records if r.name == "connectors.google.mailbox"]
    assert len(said) == 2, "once for each mailbox"
    assert "metadata scope only" in said[0] and "refused format=full (403)" in said[1]
    assert all("grant gmail.readonly" in line for line in said)
