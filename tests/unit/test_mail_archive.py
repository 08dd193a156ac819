"""Maildir and mbox import (connectors/archive/mailbox.py) on small made-up mailboxes."""

from __future__ import annotations

import mailbox
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from assistant.domain.model import MessageData
from connectors.archive.mailbox import MaildirSource, parse_inbound, parse_message
from connectors.archive.mbox import MboxSource
from connectors.archive.text import body_text
from connectors.base import InvalidData, MailSource, NotFound, TokenExpired

MTIME = datetime(2021, 6, 1, 12, 0, tzinfo=UTC)

PLAIN = b"""Message-ID: <plain-1@corp.com>
Date: Tue, 9 May 2000 07:44:00 -0700 (PDT)
From: Aide Person <AIDE@Corp.com>
To: "Boss, The" <Boss@corp.com>, other@corp.com
Cc: 'cc.one@corp.com', mailto:cc.two@corp.com
Subject: =?utf-8?b?0JHRjtC00LbQtdGCINC90LAgMjAyNA==?=
In-Reply-To: <parent@corp.com>
References: <root@corp.com> <parent@corp.com>

Body text.
"""
NO_DATE = b"""Message-ID: <no-date@corp.com>
From: boss@corp.com
To: aide@corp.com
Subject: RE: Budget

ok
"""
NO_ID = b"""Date: Wed, 10 May 2000 09:00:00 +0200
From: boss@corp.com
To: aide@corp.com
Subject: no id here

x
"""
AUTO = b"""Message-ID: <auto@corp.com>
Date: Wed, 10 May 2000 09:00:00 +0000
From: boss@corp.com
To: aide@corp.com
Auto-Submitted: auto-replied
Subject: Automatic reply: Budget

away
"""
GARBAGE = b"\x00\x01\x02 this is not a mail message at all\n"


def delivered(md: mailbox.Maildir, raw: bytes, mtime: datetime = MTIME) -> str:
    key = md.add(raw)
    path = Path(md._path) / md._lookup(key)
    os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    return key


def by_id(messages: Iterable[MessageData]) -> dict[str, MessageData]:
    return {m.message_id: m for m in messages}


# ---------------------------------------------------------------------- mapping


def test_mapping_of_a_plain_message() -> None:
    m = parse_message(PLAIN, source_id="s", folder="INBOX", mtime=MTIME)
    assert m.message_id == "plain-1@corp.com"
    assert m.sent_at == datetime(2000, 5, 9, 14, 44, tzinfo=UTC)
    assert m.from_addr == "aide@corp.com"
    assert m.to == ("boss@corp.com", "other@corp.com")
    assert m.cc == ("cc.one@corp.com", "cc.two@corp.com")
    assert m.subject == "Бюджет на 2024"
    assert m.in_reply_to == "parent@corp.com"
    assert m.references == ("root@corp.com", "parent@corp.com")
    assert not m.auto_reply
    assert "date_source" not in m.extra and len(m.extra["body_hash"]) == 16


@pytest.mark.parametrize(
    "header",
    [
        "Auto-Submitted: auto-generated",
        "X-Auto-Response-Suppress: All",
        "Precedence: bulk",
        "Subject: Out of Office: Budget",
        "Subject: Autoreply: Budget",
        "Subject: Auto: Budget",
        "Subject: Абонент отсутствует: Бюджет",
        "Subject: Автоматический ответ: Бюджет",
    ],
)
def test_auto_replies(header: str) -> None:
    raw = f"From: a@b.c\nTo: d@e.f\nDate: Wed, 10 May 2000 09:00:00 +0000\n{header}\n\nx\n"
    assert parse_message(raw.encode(), source_id="s", folder="", mtime=MTIME).auto_reply


def test_not_auto_replies() -> None:
    raw = b"From: a@b.c\nAuto-Submitted: no\nPrecedence: first-class\nSubject: Re: Office move\n\n"
    assert not parse_message(raw, source_id="s", folder="", mtime=MTIME).auto_reply


def test_enron_forms_and_8bit_headers() -> None:
    raw = (
        b"Message-ID: <1.JavaMail.evans@thyme>\n"
        b"Date: Mon, 14 May 2001 16:39:00 -0000\n"
        b"From: rosalee.fleming@enron.com\n"
        b"X-From: Rosalee Fleming\n"
        b"X-To: Kenneth Lay@ENRON, 'klay@enron.com'\n"
        b"Subject: Caf\xe9 \xab menu \xbb\n\nx\n"
    )
    m = parse_message(raw, source_id="inbox/1.", folder="inbox", mtime=MTIME)
    assert m.sent_at == datetime(2001, 5, 14, 16, 39, tzinfo=UTC)
    assert m.from_addr == "rosalee.fleming@enron.com"
    assert m.to == ("klay@enron.com",)  # To is missing: the addresses found in X-To
    assert "Kenneth Lay" in m.extra["x_to"]
    assert m.subject == "Café « menu »"


def test_missing_date_falls_back_to_mtime_and_missing_id_is_stable() -> None:
    m = parse_message(NO_DATE, source_id="s", folder="", mtime=MTIME)
    assert m.sent_at == MTIME and m.extra["date_source"] == "mtime"
    one = parse_message(NO_ID, source_id="a", folder="", mtime=MTIME)
    two = parse_message(NO_ID, source_id="b", folder="x", mtime=MTIME)
    assert one.message_id == two.message_id and one.message_id.endswith("@synthesized")
    assert (
        one.message_id
        != parse_message(NO_ID + b"more", source_id="c", folder="", mtime=MTIME).message_id
    )


# ---------------------------------------------------------------------- Maildir++


def test_maildir_full_read_and_skipped(tmp_path: Path) -> None:
    md = mailbox.Maildir(tmp_path / "mail")
    for raw in (PLAIN, NO_DATE, NO_ID, AUTO, GARBAGE, b""):
        delivered(md, raw)
    sent = md.add_folder("Sent")
    delivered(sent, NO_DATE.replace(b"no-date@", b"sent-1@"))
    (tmp_path / "mail" / "dovecot-uidlist").write_text("3 V1 N2\n")  # not a message

    source = MaildirSource(tmp_path / "mail")
    assert isinstance(source, MailSource)
    delta = source.changes(None)
    assert delta.full and delta.token
    got = by_id(delta.messages)
    assert len(got) == 5
    assert got["plain-1@corp.com"].folder == "INBOX"
    assert got["sent-1@corp.com"].folder == "Sent"
    assert got["sent-1@corp.com"].source_id.startswith(".Sent/new/")
    assert got["auto@corp.com"].auto_reply
    assert got["no-date@corp.com"].sent_at == MTIME
    assert len(delta.skipped) == 2
    assert any("no mail headers" in s for s in delta.skipped)
    assert any("empty file" in s for s in delta.skipped)

    only_sent = MaildirSource(tmp_path / "mail", folders=["Sent"]).changes(None)
    assert [m.message_id for m in only_sent.messages] == ["sent-1@corp.com"]


def test_maildir_incremental(tmp_path: Path) -> None:
    md = mailbox.Maildir(tmp_path / "mail")
    first = delivered(md, PLAIN)
    delivered(md, AUTO)
    source = MaildirSource(tmp_path / "mail")
    token = source.changes(None).token
    assert token

    again = source.changes(token)
    assert not again.full and again.messages == () and again.token == token

    # Reading a message moves it new/ -> cur/ and adds flags: not a change.
    msg = md.get_message(first)
    msg.set_subdir("cur")
    msg.add_flag("S")
    md[first] = msg
    os.utime(Path(md._path) / md._lookup(first), (MTIME.timestamp(),) * 2)
    assert source.changes(token).messages == ()

    # A new message with the same mtime as the newest seen one, and one later.
    delivered(md, NO_DATE, MTIME)
    delivered(md, NO_ID, datetime(2022, 1, 1, tzinfo=UTC))
    delta = source.changes(token)
    assert {m.subject for m in delta.messages} == {"RE: Budget", "no id here"}
    assert source.changes(delta.token).messages == ()


def test_maildir_token_expires_when_old_files_change(tmp_path: Path) -> None:
    md = mailbox.Maildir(tmp_path / "mail")
    key = delivered(md, PLAIN)
    delivered(md, AUTO, datetime(2022, 1, 1, tzinfo=UTC))
    source = MaildirSource(tmp_path / "mail")
    token = source.changes(None).token
    assert token
    # Delivered with an older mtime (as Dovecot does for APPEND): cannot be told apart.
    delivered(md, NO_DATE, datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(TokenExpired):
        source.changes(token)
    token = source.changes(None).token
    md.remove(key)
    with pytest.raises(TokenExpired):
        source.changes(token)
    with pytest.raises(TokenExpired):
        source.changes("not a token")
    (tmp_path / "x.mbox").write_bytes(b"From a@b Thu Jan  1 00:00:00 2000\n" + PLAIN)
    with pytest.raises(TokenExpired):
        MboxSource(tmp_path / "x.mbox").changes(token)  # a Maildir token is not an mbox one


def test_missing_maildir(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        MaildirSource(tmp_path / "nope").changes(None)


# ---------------------------------------------------------------------- Enron layout


def test_enron_layout(tmp_path: Path) -> None:
    root = tmp_path / "lay-k"
    (root / "inbox" / "genie").mkdir(parents=True)
    (root / "_sent").mkdir()
    (root / "inbox" / "1.").write_bytes(PLAIN)
    (root / "inbox" / "genie" / "1.").write_bytes(NO_ID)
    (root / "_sent" / "7.eml").write_bytes(AUTO)
    (root / "_sent" / ".DS_Store").write_bytes(b"\x00")
    for path in root.rglob("*"):
        os.utime(path, (MTIME.timestamp(),) * 2)

    source = MaildirSource(root)
    delta = source.changes(None)
    assert {(m.folder, m.source_id) for m in delta.messages} == {
        ("inbox", "inbox/1."),
        ("inbox/genie", "inbox/genie/1."),
        ("_sent", "_sent/7.eml"),
    }
    assert delta.skipped == ()
    only = MaildirSource(root, folders=["inbox"]).changes(None)
    assert {m.folder for m in only.messages} == {"inbox", "inbox/genie"}

    (root / "_sent" / "8.eml").write_bytes(NO_DATE)
    os.utime(root / "_sent" / "8.eml", (MTIME.timestamp() + 1,) * 2)
    (root / "deleted_items").mkdir()
    (root / "deleted_items" / "1.").write_bytes(PLAIN.replace(b"plain-1@", b"plain-2@"))
    newer = source.changes(delta.token)
    assert sorted(m.message_id for m in newer.messages) == ["no-date@corp.com", "plain-2@corp.com"]


# ---------------------------------------------------------------------- mbox


def test_mbox_full_and_incremental(tmp_path: Path) -> None:
    path = tmp_path / "archive.mbox"
    box = mailbox.mbox(path)
    for raw in (PLAIN, GARBAGE, NO_DATE, AUTO):
        box.add(raw)
    box.flush()
    source = MboxSource(path)
    assert isinstance(source, MailSource)

    delta = source.changes(None)
    assert delta.full
    assert [(m.message_id, m.source_id) for m in delta.messages] == [
        ("plain-1@corp.com", "0"),
        ("no-date@corp.com", "2"),
        ("auto@corp.com", "3"),
    ]
    assert delta.skipped == ("1: no mail headers",)
    plain = delta.messages[0]
    assert plain.subject == "Бюджет на 2024" and plain.to == ("boss@corp.com", "other@corp.com")
    assert delta.messages[1].extra["date_source"] == "mtime"

    assert source.changes(delta.token).messages == ()
    box.add(NO_ID)
    box.add(PLAIN.replace(b"From: Aide", b"From: Second").replace(b"plain-1@", b"plain-9@"))
    box.flush()
    newer = source.changes(delta.token)
    assert not newer.full
    assert [(m.subject, m.source_id) for m in newer.messages] == [
        ("no id here", "4"),
        ("Бюджет на 2024", "5"),
    ]
    assert newer.messages[1].message_id == "plain-9@corp.com"
    assert source.changes(newer.token).messages == ()


def test_mbox_token_expires_when_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "archive.mbox"
    box = mailbox.mbox(path)
    box.add(PLAIN)
    box.add(AUTO)
    box.flush()
    source = MboxSource(path)
    token = source.changes(None).token
    assert token

    data = path.read_bytes()
    path.write_bytes(data.replace(b"Body text.", b"Body TEXT."))  # same size, other bytes
    with pytest.raises(TokenExpired):
        source.changes(token)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TokenExpired):
        source.changes(token)
    with pytest.raises(NotFound):
        MboxSource(tmp_path / "missing.mbox").changes(None)


def test_a_file_that_is_not_an_mbox_is_refused_and_an_empty_one_is_empty(tmp_path: Path) -> None:
    """Before: a single message file read as an mbox gave "0 messages", silently."""
    eml = tmp_path / "one.eml"
    eml.write_bytes(PLAIN)
    with pytest.raises(InvalidData, match="not an mbox file"):
        MboxSource(eml).changes(None)
    empty = tmp_path / "empty.mbox"
    empty.write_bytes(b"\n")
    assert MboxSource(empty).changes(None).messages == ()
    box = tmp_path / "two.mbox"
    box.write_bytes(
        b"From a Thu Jan  1 00:00:00 2000\n"
        + PLAIN
        + b"\nFrom b Thu Jan  1 00:00:00 2000\n"
        + NO_DATE
    )
    assert len(MboxSource(box).changes(None).messages) == 2


def test_archive_messages_carry_text_keys_and_headers_only_parses_do_not() -> None:
    """Threading finds copies and quoted replies by digests of the text; the text itself
    is not kept, and a headers-only parse (IMAP, Gmail) has no keys to get wrong."""
    full = parse_message(PLAIN, source_id="1", folder="", mtime=MTIME, with_text=True)
    assert set(full.extra) >= {"body_key"} and "Body text" not in str(full.extra)
    heads = parse_message(PLAIN, source_id="1", folder="", mtime=MTIME)
    assert "body_key" not in heads.extra


@pytest.mark.parametrize("cte", ["quoted-printable", "base64", "8bit"])
def test_plain_text_reads_what_body_text_reads(cte: str) -> None:
    from email.message import EmailMessage

    from connectors.archive.text import body_text, plain_text
    from connectors.mime import read_headers

    msg = EmailMessage()
    msg["From"], msg["Subject"] = "aide@corp.com", "Бюджет"
    msg.set_content("Бюджет на 2024 год - готов?\r\nДа.\n", charset="koi8-r", cte=cte)
    raw = msg.as_bytes()
    assert plain_text(read_headers(raw)) == body_text(raw)
    assert "Бюджет на 2024 год" in plain_text(read_headers(raw))


def test_a_text_part_in_a_codec_that_fails_is_read_not_raised(tmp_path: Path) -> None:
    """``charset=idna`` names a codec that raises whatever the error handler: one such mail
    from anyone would have stopped the inbox read and been dropped from an archive."""
    raw = (
        b"From: x@example.com\r\nTo: y@example.com\r\nSubject: hi\r\nMessage-ID: <i@x>\r\n"
        b"Date: Mon, 23 Mar 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain; charset=idna\r\n\r\nPlease sign the lease today.\r\n"
        b"--b--\r\n"
    )
    assert body_text(raw).strip() == "Please sign the lease today."
    assert parse_inbound(raw, source_id="x", mtime=datetime.now(UTC)).text.startswith("Please")
    box = mailbox.Maildir(tmp_path / "box")
    box.add(raw)
    delta = MaildirSource(tmp_path / "box").changes(None)
    assert [m.message_id for m in delta.messages] == ["i@x"] and not delta.skipped
