"""The Graph mail connector over real HTTPS (httpx, msal) against the protocol-level Graph
server in tests/support: messages delta of Inbox and Sent Items."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from connectors.base import (
    AuthExpired,
    MailSource,
    RateLimited,
    TokenExpired,
    Transient,
)
from connectors.graph.mailbox import GraphMailbox
from tests.support.graph_server import GraphServer, MailMessage

MANAGER = "alex@example.com"
ASSISTANT = "pat@example.com"


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[GraphServer]:
    with GraphServer(tmp_path) as server:
        yield server


def connect(graph: GraphServer, **options: Any) -> GraphMailbox:
    settings: dict[str, Any] = {
        "tenant": graph.tenant, "client_id": graph.client_id, "client_secret": graph.client_secret,
        "graph_url": graph.graph_url, "authority_host": graph.authority_host,
        "verify": graph.ca_file, "backoff": 0.0, "timeout": 5.0,
    }  # fmt: skip
    settings.update(options)
    return GraphMailbox(graph.user, **settings)


@pytest.fixture
def mailbox(graph: GraphServer) -> Iterator[GraphMailbox]:
    with connect(graph) as box:
        yield box


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2030, 4, day, hour, minute, tzinfo=UTC)


def ask(graph: GraphServer, subject: str, when: datetime, **kw: Any) -> MailMessage:
    return graph.deliver("inbox", subject, ASSISTANT, [MANAGER], when, **kw)


def answer(graph: GraphServer, question: MailMessage, when: datetime) -> MailMessage:
    return graph.deliver("sentitems", f"RE: {question.subject}", MANAGER, [ASSISTANT], when,
                         conversation_id=question.conversation_id)  # fmt: skip


def deltas(graph: GraphServer) -> int:
    return len(graph.graph_requests("/messages/delta"))


# ------------------------------------------------------------------- sync & costs


def test_first_sync_reads_both_folders(graph: GraphServer, mailbox: GraphMailbox) -> None:
    assert isinstance(mailbox, MailSource)
    question = ask(graph, "Budget sign-off", at(2, 9), cc=["cfo@example.com"])
    reply = answer(graph, question, at(2, 9, 40))
    delta = mailbox.changes(None)
    assert delta.full and delta.token and delta.skipped == ()
    by_folder = {m.folder: m for m in delta.messages}
    asked, replied = by_folder["Inbox"], by_folder["Sent Items"]
    assert asked.message_id == question.internet_message_id.strip("<>")
    assert (asked.from_addr, asked.to, asked.cc) == (ASSISTANT, (MANAGER,), ("cfo@example.com",))
    assert (asked.subject, asked.sent_at, asked.auto_reply) == ("Budget sign-off", at(2, 9), False)
    assert replied.thread_id == asked.thread_id == question.conversation_id != ""
    assert replied.source_id == f"sentitems/{reply.id}"
    requests = graph.graph_requests()
    assert [r.path.rsplit("/", 3)[-3] for r in requests] == ["inbox", "sentitems"]
    assert unquote(requests[0].query).startswith("$select=internetMessageId,conversationId,")


def test_incremental_sync_and_paging(graph: GraphServer) -> None:
    for i in range(7):
        ask(graph, f"Item {i}", at(3, 8) + timedelta(minutes=i))
    box = connect(graph, page_size=3)
    first = box.changes(None)
    assert len(first.messages) == 7
    assert deltas(graph) == 3 + 1, "Inbox in three pages, Sent Items in one"

    quiet = box.changes(first.token)
    assert quiet.messages == () and not quiet.full
    assert deltas(graph) == 6, "nothing new: one request per folder"

    new = ask(graph, "Visa", at(3, 10))
    gone = next(m for m in graph.messages.values() if m.subject == "Item 0")
    graph.delete_message(gone.id)  # @removed: ignored
    delta = box.changes(quiet.token)
    assert [(m.folder, m.subject) for m in delta.messages] == [("Inbox", "Visa")]

    graph.mark_read(new.id)  # a changed message comes again, with the same id
    again = box.changes(delta.token)
    assert [m.message_id for m in again.messages] == [new.internet_message_id.strip("<>")]
    box.close()


def test_a_message_in_both_folders_comes_once_per_folder(
    graph: GraphServer, mailbox: GraphMailbox
) -> None:
    note = graph.deliver("sentitems", "Agenda", MANAGER, [ASSISTANT, MANAGER], at(4, 9))
    copy = graph.copy_message(note, "inbox")
    delta = mailbox.changes(None)
    assert sorted(m.folder for m in delta.messages) == ["Inbox", "Sent Items"]
    assert {m.message_id for m in delta.messages} == {note.internet_message_id.strip("<>")}
    assert {m.source_id for m in delta.messages} == {f"sentitems/{note.id}", f"inbox/{copy.id}"}


def test_headers_are_read_only_for_the_assistants_inbox_messages(graph: GraphServer) -> None:
    question = ask(graph, "Lunch?", at(5, 11), headers=[
        ("In-Reply-To", "<earlier@mail.example.com>"),
        ("References", "<first@mail.example.com> <earlier@mail.example.com>"),
    ])  # fmt: skip
    ask(graph, "Re: Lunch?", at(5, 11, 1), headers=[("Auto-Submitted", "auto-replied")])
    ask(graph, "Automatic reply: Lunch?", at(5, 11, 2))  # flagged by subject: not read
    graph.deliver("inbox", "Newsletter", "news@example.com", [MANAGER], at(5, 11, 3),
                  headers=[("Precedence", "bulk")])  # fmt: skip
    answer(graph, question, at(5, 12))
    box = connect(graph, header_senders=[ASSISTANT.upper()])
    found = {m.subject: m for m in box.changes(None).messages}
    assert {s: m.auto_reply for s, m in found.items()} == {
        "Lunch?": False, "Re: Lunch?": True, "Automatic reply: Lunch?": True,
        "Newsletter": False,  # not from the assistant: its headers were not read
        "RE: Lunch?": False,
    }  # fmt: skip
    lunch = found["Lunch?"]
    assert lunch.in_reply_to == "earlier@mail.example.com"
    assert lunch.references == ("first@mail.example.com", "earlier@mail.example.com")
    reads = [r for r in graph.graph_requests("/messages/") if "delta" not in r.path]
    assert len(reads) == 2 and all("internetMessageHeaders" in r.query for r in reads)
    box.close()


# ---------------------------------------------------------------------- lost state


def test_a_lost_delta_link_rereads_that_folder_only(
    graph: GraphServer, mailbox: GraphMailbox
) -> None:
    question = ask(graph, "Offer", at(7, 9))
    answer(graph, question, at(7, 10))
    token = mailbox.changes(None).token
    ask(graph, "Offer (2)", at(7, 11))
    graph.invalidate_mail_delta("sentitems")
    delta = mailbox.changes(token)
    assert delta.full
    assert sorted((m.folder, m.subject) for m in delta.messages) == [
        ("Inbox", "Offer (2)"), ("Sent Items", "RE: Offer"),
    ]  # fmt: skip
    statuses = [r.status for r in graph.graph_requests("/messages/delta")][-3:]
    assert statuses == [200, 410, 200]
    again = mailbox.changes(delta.token)
    assert again.messages == () and not again.full


def test_a_skip_token_lost_while_paging_restarts_the_folder(graph: GraphServer) -> None:
    for i in range(4):
        ask(graph, f"Item {i}", at(8, 8, i))
    armed: list[bool] = []

    def lose_pages(method: str, url: str, status: int) -> None:
        if armed and "/inbox/" in url and "$deltatoken" in url:
            armed.clear()
            graph.invalidate_mail_delta("inbox")  # the next page's skip token is gone

    box = connect(graph, page_size=2, on_request=lose_pages)
    token = box.changes(None).token
    for i in range(4, 9):
        ask(graph, f"Item {i}", at(8, 9, i))
    armed.append(True)
    delta = box.changes(token)
    assert delta.full
    assert sorted(m.subject for m in delta.messages) == [f"Item {i}" for i in range(9)]
    statuses = [r.status for r in graph.graph_requests("/inbox/messages/delta")]
    assert statuses[-7:] == [200, 410, 200, 200, 200, 200, 200], "then 9 at 2 a page"
    box.close()


def test_a_token_that_is_not_ours_is_token_expired(
    graph: GraphServer, mailbox: GraphMailbox
) -> None:
    with pytest.raises(TokenExpired):
        mailbox.changes("{")
    with pytest.raises(TokenExpired):
        mailbox.changes(json.dumps({"v": 1, "kind": "ews-mail", "folders": {}}))
    token = json.loads(str(mailbox.changes(None).token))
    token["user"] = "someone@example.com"
    with pytest.raises(TokenExpired):
        mailbox.changes(json.dumps(token))


# -------------------------------------------------------------------------- faults


def test_throttling_and_server_errors(graph: GraphServer, mailbox: GraphMailbox) -> None:
    token = mailbox.changes(None).token
    graph.fail_next(429, retry_after=7)
    with pytest.raises(RateLimited) as caught:
        mailbox.changes(token)
    assert caught.value.retry_after == 7
    graph.fail_next(500, times=4)  # three retries, then Transient
    with pytest.raises(Transient):
        mailbox.changes(token)
    graph.fail_next(503, times=2)  # retried: the sync goes through
    assert mailbox.changes(token).messages == ()


def test_an_expired_access_token_is_renewed_once(graph: GraphServer, mailbox: GraphMailbox) -> None:
    token = mailbox.changes(None).token
    graph.expire_access_tokens()
    assert mailbox.changes(token).messages == ()
    assert graph.token_requests == ["client_credentials", "client_credentials"]
    graph.fail_next(401, times=2)
    with pytest.raises(AuthExpired):
        mailbox.changes(token)


def test_timeout_is_transient(graph: GraphServer) -> None:
    box = connect(graph, timeout=0.5)
    token = box.changes(None).token
    graph.hang_next(1.5)
    with pytest.raises(Transient):
        box.changes(token)
    box.close()
