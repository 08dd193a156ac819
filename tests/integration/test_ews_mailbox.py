"""The EWS mail connector through real exchangelib over real HTTP, against
tests/support/ews_server (Inbox and Sent Items with their own SyncFolderItems states)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from exchangelib import Message
from lxml import etree

from connectors.base import (
    AuthExpired,
    MailSource,
    RateLimited,
    TokenExpired,
    Transient,
)
from connectors.ews.account import EwsSettings
from connectors.ews.mailbox import EwsMailbox, message_from_item
from tests.support.ews_server import EwsServer, MailItem, T

MANAGER = "alex@example.com"
ASSISTANT = "pat@example.com"
EVALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "evaldata" / "ews"
evaldata = pytest.mark.skipif(not EVALDATA.is_dir(), reason=f"evaldata not present at {EVALDATA}")
FIRST_SYNC = ["ConvertId", "GetFolder", "GetFolder", "SyncFolderItems", "GetFolder",
              "SyncFolderItems", "GetItem"]  # fmt: skip


@pytest.fixture
def server() -> Iterator[EwsServer]:
    with EwsServer() as srv:
        yield srv


def connect(server: EwsServer, **kw: object) -> EwsMailbox:
    settings = EwsSettings(
        mailbox=server.mailbox.address, service_endpoint=server.url,
        username=server.username, password=server.password,
    )  # fmt: skip
    kw.setdefault("timeout", 5)
    return EwsMailbox(settings, **kw)  # type: ignore[arg-type]


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def ask(server: EwsServer, subject: str, when: datetime, **kw: object) -> MailItem:
    """The assistant writes to the manager: it lands in the manager's Inbox."""
    return server.mailbox.deliver("inbox", subject, ASSISTANT, [MANAGER], when, **kw)


def answer(server: EwsServer, question: MailItem, when: datetime) -> MailItem:
    """The manager replies: the reply is filed in Sent Items."""
    return server.mailbox.deliver(
        "sentitems", f"RE: {question.subject}", MANAGER, [ASSISTANT], when,
        in_reply_to=question.message_id, references=question.message_id,
    )  # fmt: skip


def ops_since(server: EwsServer, mark: int) -> list[str]:
    return server.operations()[mark:]


# ------------------------------------------------------------------- sync & costs


def test_first_sync_reads_both_folders_with_their_threading_properties(server: EwsServer) -> None:
    question = ask(server, "Budget sign-off", at(2, 9), cc=["cfo@example.com"],
                   sender_name="Pat Assistant")  # fmt: skip
    reply = answer(server, question, at(2, 9, 40))
    box = connect(server)
    assert isinstance(box, MailSource)
    delta = box.changes(None)
    assert delta.full and delta.token and delta.skipped == ()
    assert server.operations() == FIRST_SYNC
    by_folder = {m.folder: m for m in delta.messages}
    asked, replied = by_folder["Inbox"], by_folder["Sent Items"]
    assert asked.message_id == question.message_id.strip("<>")
    assert (asked.from_addr, asked.to, asked.cc) == (ASSISTANT, (MANAGER,), ("cfo@example.com",))
    assert (asked.subject, asked.sent_at, asked.auto_reply) == ("Budget sign-off", at(2, 9), False)
    assert replied.in_reply_to == asked.message_id
    assert replied.references == (asked.message_id,)
    assert replied.thread_id == asked.thread_id == question.conversation_id != ""
    assert replied.source_id == f"sentitems/{reply.item_id}"
    assert replied.extra["ews_item_id"] == reply.item_id


def test_incremental_sync_returns_only_new_messages(server: EwsServer) -> None:
    first = ask(server, "Travel", at(3, 8))
    box = connect(server)
    token = box.changes(None).token

    mark = len(server.requests)
    quiet = box.changes(token)
    assert quiet.messages == () and not quiet.full
    assert ops_since(server, mark) == ["SyncFolderItems", "SyncFolderItems"]

    second = ask(server, "Visa", at(3, 9))
    answer(server, first, at(3, 10))
    mark = len(server.requests)
    delta = box.changes(quiet.token)
    assert not delta.full
    assert sorted((m.folder, m.subject) for m in delta.messages) == [
        ("Inbox", "Visa"), ("Sent Items", "RE: Travel"),
    ]  # fmt: skip
    assert ops_since(server, mark) == ["SyncFolderItems", "SyncFolderItems", "GetItem"]

    # read flags, edits and deletions cost no GetItem and report nothing
    server.mailbox.mark_read("inbox", second.item_id)
    with server.mailbox.edit_message("inbox", first.item_id) as item:
        item.subject = "Travel (flagged)"
    server.mailbox.remove_message("inbox", second.item_id)
    mark = len(server.requests)
    after = box.changes(delta.token)
    assert after.messages == ()
    assert ops_since(server, mark) == ["SyncFolderItems", "SyncFolderItems"]


def test_a_message_filed_in_both_folders_comes_once_per_folder(server: EwsServer) -> None:
    note = server.mailbox.deliver("sentitems", "Agenda", MANAGER, [ASSISTANT, MANAGER], at(4, 9))
    copy = server.mailbox.copy_message(note, "inbox")  # the manager wrote to self too
    delta = connect(server).changes(None)
    assert sorted(m.folder for m in delta.messages) == ["Inbox", "Sent Items"]
    assert {m.message_id for m in delta.messages} == {note.message_id.strip("<>")}
    assert {m.source_id for m in delta.messages} == {
        f"sentitems/{note.item_id}", f"inbox/{copy.item_id}",
    }  # fmt: skip


def test_auto_replies_are_flagged(server: EwsServer) -> None:
    question = ask(server, "Lunch?", at(5, 11))
    server.mailbox.deliver(
        "inbox", "Automatic reply: Lunch?", ASSISTANT, [MANAGER], at(5, 11, 1),
        item_class="IPM.Note.Rules.OofTemplate.Microsoft",
    )  # fmt: skip
    server.mailbox.deliver(
        "inbox", "Re: Lunch?", "ticket@helpdesk.example.com", [MANAGER], at(5, 11, 2),
        headers=[("Auto-Submitted", "auto-generated"), ("Received", "from mx")],
    )  # fmt: skip
    server.mailbox.deliver(
        "inbox", "Undeliverable: Lunch?", "postmaster@example.com", [MANAGER], at(5, 11, 3),
        item_class="REPORT.IPM.Note.NDR",
    )  # fmt: skip
    answer(server, question, at(5, 12))
    flags = {m.subject: m.auto_reply for m in connect(server).changes(None).messages}
    assert flags == {
        "Lunch?": False, "Automatic reply: Lunch?": True, "Re: Lunch?": True,
        "Undeliverable: Lunch?": True, "RE: Lunch?": False,
    }  # fmt: skip


def test_paging_and_one_get_item_per_hundred(server: EwsServer) -> None:
    for i in range(150):
        ask(server, f"Item {i}", at(6, 8) + timedelta(minutes=i))
    box = connect(server, sync_page=100)
    delta = box.changes(None)
    assert len(delta.messages) == 150
    assert len({m.message_id for m in delta.messages}) == 150
    # Inbox: two pages of 100 and 50; Sent Items: one; then 100 + 50 in GetItem
    assert server.operations().count("SyncFolderItems") == 3
    assert server.operations().count("GetItem") == 2


# ---------------------------------------------------------------------- lost state


def test_an_invalid_sync_state_rereads_that_folder_only(server: EwsServer) -> None:
    question = ask(server, "Offer", at(7, 9))
    answer(server, question, at(7, 10))
    box = connect(server)
    token = box.changes(None).token
    ask(server, "Offer (2)", at(7, 11))
    server.mailbox.expire_mail_states("sentitems")
    mark = len(server.requests)
    delta = box.changes(token)
    assert delta.full
    assert sorted((m.folder, m.subject) for m in delta.messages) == [
        ("Inbox", "Offer (2)"), ("Sent Items", "RE: Offer"),
    ]  # fmt: skip
    assert ops_since(server, mark) == ["SyncFolderItems", "SyncFolderItems", "SyncFolderItems",
                                       "GetItem"]  # fmt: skip
    again = box.changes(delta.token)
    assert again.messages == () and not again.full


def test_a_token_that_is_not_ours_is_token_expired(server: EwsServer) -> None:
    box = connect(server)
    with pytest.raises(TokenExpired):
        box.changes("not json")
    with pytest.raises(TokenExpired):
        box.changes(json.dumps({"v": 1, "kind": "imap", "folders": {}}))
    token = json.loads(str(box.changes(None).token))
    token["account"] = "someone-else"
    with pytest.raises(TokenExpired):
        box.changes(json.dumps(token))
    assert server.operations().count("SyncFolderItems") == 2, "refused before asking"


# -------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("status", "retry_after", "error"),
    [(401, None, AuthExpired), (429, 30, RateLimited), (503, 5, RateLimited),
     (500, None, Transient)],
)  # fmt: skip
def test_http_statuses(server: EwsServer, status: int, retry_after: int | None,
                       error: type[Exception]) -> None:  # fmt: skip
    box = connect(server)
    token = box.changes(None).token
    server.fail_next(status, retry_after=retry_after)
    with pytest.raises(error) as caught:
        box.changes(token)
    if retry_after is not None:
        assert isinstance(caught.value, RateLimited) and caught.value.retry_after == retry_after
    assert box.changes(token).messages == (), "the next sync works again"


def test_server_busy_and_timeouts(server: EwsServer) -> None:
    box = connect(server, timeout=1)
    token = box.changes(None).token
    ask(server, "Hello", at(8, 9))
    server.server_busy(2500)
    with pytest.raises(RateLimited) as caught:
        box.changes(token)
    assert caught.value.retry_after == pytest.approx(2.5)
    server.hang_next(2.5)
    with pytest.raises(Transient):
        box.changes(token)
    assert [m.subject for m in box.changes(token).messages] == ["Hello"]
    gone = EwsSettings(mailbox=MANAGER, service_endpoint="http://127.0.0.1:9/EWS/Exchange.asmx",
                       username="a", password="b")  # fmt: skip
    with pytest.raises(Transient):
        EwsMailbox(gone, timeout=2).changes(None)


def test_wrong_password_is_auth_expired(server: EwsServer) -> None:
    settings = EwsSettings(mailbox=server.mailbox.address, service_endpoint=server.url,
                           username=server.username, password="wrong")  # fmt: skip
    with pytest.raises(AuthExpired):
        EwsMailbox(settings, timeout=5).changes(None)


# ----------------------------------------------------------------- recorded data


@evaldata
def test_recorded_messages_map(server: EwsServer) -> None:
    box = connect(server)
    box.changes(None)
    account = box._mailbox()
    path = (EVALDATA / "msdocs" / "exchange-web-services"
            / "how-to-synchronize-items-by-using-ews-in-exchange__04_response.xml")  # fmt: skip
    root = etree.fromstring(path.read_bytes())
    mapped = [
        message_from_item(Message.from_xml(elem=e, account=account), "Inbox", "recorded")
        for e in root.iter(f"{{{T}}}Message")
    ]
    assert len(mapped) == 3
    soccer = mapped[0]
    assert soccer.message_id == "e5919a09c8fc4d64b6ffd3542e194fc3@BY2SR01MB609.contoso.com"
    assert soccer.in_reply_to == (
        "8e084ea1a5b64f97b95fa8a863a5869d@CH1SR01MB001.namsdf01.sdf.contoso.com"
    )
    assert soccer.from_addr == "alfred.welker@contoso.com"
    assert soccer.thread_id.startswith("AAQkADkzNjJjODUz")
    assert soccer.sent_at == datetime(2013, 8, 29, 15, 22, 10, tzinfo=UTC)
    assert mapped[1].thread_id == mapped[2].thread_id != soccer.thread_id


@evaldata
def test_a_recorded_invalid_sync_state_rereads_the_folder(server: EwsServer) -> None:
    ask(server, "Kept", at(9, 9))
    box = connect(server)
    token = box.changes(None).token
    invalid = (
        EVALDATA / "msdocs" / "web-service-reference" / "syncfolderitems-operation__03_response.xml"
    )
    server.reply_next(invalid.read_bytes())
    delta = box.changes(token)
    assert delta.full and [m.subject for m in delta.messages] == ["Kept"]
