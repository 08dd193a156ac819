"""Mail read from Microsoft Graph and Exchange (EWS) keeps what its text says (issue 14,
points 2 and 3), as archived mail does (test_mail_text_keys.py): the real connectors read
the body in the requests they already make, from the protocol-level servers in
tests/support, and the stored path (``import_mail``, ``latency_of_pair``) tells copies from
other messages sent in the same second and sees which reply quotes which message
(SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from assistant.bootstrap import Service
from assistant.domain.latency.quotes import BODY_KEY, QUOTE_KEYS, TEXT_KEY, text_keys
from assistant.services.mail import import_mail
from assistant.services.pairs import add_account
from assistant.store.db import UnitOfWork
from connectors.archive.text import MAX_TEXT_CHARS
from connectors.base import MailSource, TokenExpired
from connectors.ews.account import EwsSettings
from connectors.ews.mailbox import EwsMailbox
from connectors.graph.mailbox import GraphMailbox
from connectors.netguard import NetPolicy
from tests.support.ews_server import EwsServer
from tests.support.graph_server import GraphServer
from tests.support.mail_keys import (
    ASSISTANT,
    CAR,
    CONTRACT,
    MANAGER,
    QUOTED_CONTRACT,
    TUESDAY,
    pair_service,
)
from tests.support.mail_keys import latency_records as _records
from tests.support.mail_keys import stored_messages as _stored

QUOTED_OTHER = "\n".join("> " + line for line in (
    "The quarterly figures for the northern region are due at the board",
    "meeting next week, with the notes from the auditors.",
))  # fmt: skip


class Mailbox:
    """The manager's mailbox on one provider: messages go in as the provider keeps them,
    and come out through our real connector."""

    provider = ""

    def deliver(self, folder: str, mid: str, frm: str, to: list[str], at: datetime,
                subject: str, body: str, **kw: Any) -> None:  # fmt: skip
        raise NotImplementedError

    def source(self) -> MailSource:
        raise NotImplementedError

    def requests(self) -> list[str]:
        """What the connector asked the server so far."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connectors ``source`` opened."""


class GraphBox(Mailbox):
    provider = "graph-mail"

    def __init__(self, server: GraphServer) -> None:
        self.server = server
        self.opened: list[GraphMailbox] = []

    def deliver(self, folder: str, mid: str, frm: str, to: list[str], at: datetime,
                subject: str, body: str, **kw: Any) -> None:  # fmt: skip
        self.server.deliver(folder, subject, frm, to, at, internet_message_id=f"<{mid}>",
                            body=body, body_type=kw.pop("body_type", "text"), **kw)  # fmt: skip

    def source(self) -> MailSource:
        g = self.server
        source = GraphMailbox(
            g.user, tenant=g.tenant, client_id=g.client_id, client_secret=g.client_secret,
            graph_url=g.graph_url, authority_host=g.authority_host, verify=g.ca_file,
            backoff=0.0, timeout=5.0, header_senders=[ASSISTANT],
        )  # fmt: skip
        self.opened.append(source)
        return source

    def close(self) -> None:
        for source in self.opened:
            source.close()

    def requests(self) -> list[str]:
        return [
            f"{r.path.split('/')[-3]} delta" if r.path.endswith("/delta") else "headers"
            for r in self.server.graph_requests()
        ]


class EwsBox(Mailbox):
    provider = "ews-mail"

    def __init__(self, server: EwsServer) -> None:
        self.server = server

    def deliver(self, folder: str, mid: str, frm: str, to: list[str], at: datetime,
                subject: str, body: str, **kw: Any) -> None:  # fmt: skip
        if kw.get("body_type") == "html":
            kw["body_type"] = "HTML"
        self.server.mailbox.deliver(folder, subject, frm, to, at, message_id=f"<{mid}>",
                                    body=body, **kw)  # fmt: skip

    def source(self) -> MailSource:
        s = self.server
        settings = EwsSettings(mailbox=s.mailbox.address, service_endpoint=s.url,
                               username=s.username, password=s.password)  # fmt: skip
        return EwsMailbox(settings, timeout=5)

    def requests(self) -> list[str]:
        return self.server.operations()


@pytest.fixture(params=["graph", "ews"])
def box(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mailbox]:
    if request.param == "graph":
        with GraphServer(tmp_path) as graph:
            graph_box = GraphBox(graph)
            yield graph_box
            graph_box.close()
    else:
        with EwsServer() as ews:
            yield EwsBox(ews)


@pytest.fixture
def svc(uow: UnitOfWork, tmp_path: Path) -> Service:
    return pair_service(uow, tmp_path)


def _account(svc: Service, box: Mailbox) -> int:
    return add_account(svc, pair="alex", name="work", provider=box.provider,
                       settings={"user": MANAGER}).id  # fmt: skip


# ------------------------------------------------------------------------- copies


def test_a_bcc_copy_is_one_message_and_another_text_in_the_same_second_is_another(
    svc: Service, box: Mailbox
) -> None:
    # The assistant sends two messages with one subject in the same second ("send later").
    box.deliver("inbox", "t1@x", ASSISTANT, [MANAGER], TUESDAY, "Today", CONTRACT)
    box.deliver("inbox", "t2@x", ASSISTANT, [MANAGER], TUESDAY, "Today", CAR)
    # A Bcc copy of the first, filed in the other folder: another Message-ID, another To.
    box.deliver("sentitems", "t1-bcc@x", ASSISTANT, ["lee@example.com"], TUESDAY, "Today",
                CONTRACT)  # fmt: skip
    box.deliver("sentitems", "r1@x", MANAGER, [ASSISTANT], TUESDAY + timedelta(minutes=20),
                "RE: Today", "Signed.")  # fmt: skip
    account = _account(svc, box)
    assert import_mail(svc, account, box.source()).new == 4
    # The bodies came with what the connector reads anyway: no request more than before
    # (Graph: the headers of the assistant's two Inbox messages are read, as before).
    first_sync = box.requests()
    assert first_sync == (
        ["inbox delta", "headers", "headers", "sentitems delta"]
        if isinstance(box, GraphBox) else
        ["ConvertId", "GetFolder", "GetFolder", "SyncFolderItems", "GetFolder",
         "SyncFolderItems", "GetItem"]
    )  # fmt: skip

    sent = [m for m in _records(svc).values() if m["direction"] == "assistant_to_manager"]
    ids = sorted(m["id"].strip("<>") for m in sent)
    assert len(ids) == 2 and "t2@x" in ids and ids[0] in ("t1@x", "t1-bcc@x"), (
        "the Bcc copy counts once; the other text sent in the same second is its own message"
    )
    stored = _stored(svc)  # Graph: the keys stay when the headers are read
    assert stored["t1@x"].extra[BODY_KEY] == stored["t1-bcc@x"].extra[BODY_KEY]
    assert stored["t1@x"].extra[BODY_KEY] != stored["t2@x"].extra[BODY_KEY]
    assert stored["t1@x"].extra[TEXT_KEY] == text_keys(CONTRACT)[TEXT_KEY]


# ------------------------------------------------------------------ quoted replies


def _quoting_reply(svc: Service, box: Mailbox, quote: str) -> dict[str, dict[str, Any]]:
    """The assistant asks; the manager answers later with a blank subject, no In-Reply-To
    and another conversation (a client that keeps neither), quoting ``quote``."""
    box.deliver("inbox", "q1@x", ASSISTANT, [MANAGER], TUESDAY, "Lease contract", CONTRACT)
    account = _account(svc, box)
    import_mail(svc, account, box.source())
    first = _records(svc)  # the index is built here
    assert first["q1@x"]["replied_at"] is None
    reply = f"Done, signed and sent back.\n\nOn Tue, Sam wrote:\n{quote}\n"
    box.deliver("sentitems", "q2@x", MANAGER, [ASSISTANT], TUESDAY + timedelta(minutes=30),
                "", reply)  # fmt: skip
    assert import_mail(svc, account, box.source()).new == 1
    stored = _stored(svc)
    q1, q2 = stored["q1@x"].thread_id, stored["q2@x"].thread_id
    assert not q1 or q1 != q2, "no conversation links them"
    assert not stored["q2@x"].in_reply_to and not stored["q2@x"].references
    return _records(svc)  # fed only the new row


def test_a_reply_with_a_blank_subject_keeps_the_keys_of_the_text_it_quotes(
    svc: Service, box: Mailbox
) -> None:
    _quoting_reply(svc, box, QUOTED_CONTRACT)
    stored = _stored(svc)
    assert stored["q1@x"].extra[TEXT_KEY] in stored["q2@x"].extra[QUOTE_KEYS].split()


def test_an_html_reply_quoting_in_a_blockquote_keeps_the_keys_of_what_it_quotes(
    svc: Service, box: Mailbox
) -> None:
    """A reply written in HTML (Outlook on the web, Gmail) quotes in a ``blockquote``. The
    connectors ask for the text Exchange makes of it (Graph: Prefer
    outlook.body-content-type="text"; EWS: TextBody), which keeps the quoted text; HTML
    turned into text here keeps it too, as ``> `` lines."""
    box.deliver("inbox", "q1@x", ASSISTANT, [MANAGER], TUESDAY, "Lease contract", CONTRACT)
    reply = (
        "<html><body><div>Done, signed and sent back.</div><div><br></div>"
        '<div>On Tue, Sam wrote:</div><blockquote style="margin:0 0 0 .8ex">'
        f"<div>{CONTRACT}</div></blockquote></body></html>"
    )
    box.deliver("sentitems", "q2@x", MANAGER, [ASSISTANT], TUESDAY + timedelta(minutes=30),
                "", reply, body_type="html")  # fmt: skip
    import_mail(svc, _account(svc, box), box.source())
    stored = _stored(svc)
    assert stored["q1@x"].extra[TEXT_KEY] in stored["q2@x"].extra[QUOTE_KEYS].split()


def test_a_reply_with_a_blank_subject_that_quotes_the_message_pairs_with_it(
    svc: Service, box: Mailbox
) -> None:
    records = _quoting_reply(svc, box, QUOTED_CONTRACT)
    assert records["q1@x"]["replied_at"] is not None
    assert records["q1@x"]["working_minutes"] == pytest.approx(30)


def test_without_conversation_ids_the_quoting_reply_pairs_and_another_quote_does_not(
    svc: Service, box: Mailbox
) -> None:
    """Where the provider gives no conversation id, the quote alone pairs the reply."""
    deliver = box.deliver

    def bare(*args: Any, **kw: Any) -> None:
        deliver(*args, conversation_id="", **kw)

    box.deliver = bare  # type: ignore[method-assign]
    records = _quoting_reply(svc, box, QUOTED_CONTRACT)
    assert records["q1@x"]["replied_at"] is not None
    assert records["q1@x"]["working_minutes"] == pytest.approx(30)


def test_a_blank_subject_reply_quoting_another_text_does_not_pair(
    svc: Service, box: Mailbox
) -> None:
    records = _quoting_reply(svc, box, QUOTED_OTHER)
    stored = _stored(svc)
    assert stored["q2@x"].extra[QUOTE_KEYS]  # it quotes: only not this message
    assert stored["q1@x"].extra[TEXT_KEY] not in stored["q2@x"].extra[QUOTE_KEYS].split()
    assert records["q1@x"]["replied_at"] is None


# ---------------------------------------------------------------------- the bound


@pytest.mark.parametrize("written", ["text", "html"])
def test_an_oversized_body_imports_with_keys_from_its_bounded_text(
    svc: Service, box: Mailbox, written: str
) -> None:
    filler = " ".join(f"clause{i} of the annexed schedule" for i in range(40_000))  # ~1.4 MB
    assert len(filler) > 10 * MAX_TEXT_CHARS
    text = f"{CONTRACT}\n\n{filler}"
    body = text if written == "text" else "<html><body><p>" + text.replace(
        "\n\n", "</p><p>") + "</p></body></html>"  # fmt: skip
    box.deliver("inbox", "big@x", ASSISTANT, [MANAGER], TUESDAY, "Annex", body,
                body_type=written)  # fmt: skip
    box.deliver("inbox", "small@x", ASSISTANT, [MANAGER], TUESDAY, "Annex", CAR)
    account = _account(svc, box)
    assert import_mail(svc, account, box.source()).new == 2
    stored = _stored(svc)["big@x"].extra
    assert stored[TEXT_KEY] == text_keys(CONTRACT)[TEXT_KEY]
    # Only the first MAX_TEXT_CHARS of the text were keyed: not the whole body.
    assert stored[BODY_KEY] != text_keys(text)[BODY_KEY]
    assert stored[BODY_KEY] == text_keys(text[:MAX_TEXT_CHARS])[BODY_KEY]
    sent = [m for m in _records(svc).values() if m["direction"] == "assistant_to_manager"]
    assert len(sent) == 2


def test_a_body_that_comes_as_html_is_read_as_text(svc: Service, tmp_path: Path) -> None:
    """Graph may answer HTML despite ``Prefer: outlook.body-content-type="text"``: the
    connector turns it into text (the same words, the same keys)."""
    with GraphServer(tmp_path) as graph:
        graph.text_bodies = False
        box = GraphBox(graph)
        markup = CONTRACT.replace("noon", "<b>noon</b>")
        box.deliver("inbox", "h1@x", ASSISTANT, [MANAGER], TUESDAY, "Today",
                    f"<html><body><div>{markup}</div></body></html>", body_type="html")  # fmt: skip
        box.deliver("inbox", "h2@x", ASSISTANT, [MANAGER], TUESDAY, "Today", CONTRACT)
        import_mail(svc, _account(svc, box), box.source())
        box.close()
        assert {r.status for r in graph.graph_requests()} == {200}
    stored = _stored(svc)
    assert stored["h1@x"].extra[BODY_KEY] == stored["h2@x"].extra[BODY_KEY]
    assert stored["h1@x"].extra[TEXT_KEY] == text_keys(CONTRACT)[TEXT_KEY]


def test_a_graph_token_from_before_the_body_was_read_is_read_again(tmp_path: Path) -> None:
    """Delta links keep the ``$select`` they were made with: those of version 1 never ask
    for the body, so their mailbox is read again from the start (one full delta)."""
    with GraphServer(tmp_path) as graph:
        box = GraphBox(graph)
        box.deliver("inbox", "o1@x", ASSISTANT, [MANAGER], TUESDAY, "Old", CONTRACT)
        source = box.source()
        token = json.loads(source.changes(None).token)
        assert token["v"] == 2
        with pytest.raises(TokenExpired):
            source.changes(json.dumps({**token, "v": 1}))
        box.close()


def test_ews_before_exchange_2013_reads_the_body_as_the_server_has_it(svc: Service) -> None:
    """Exchange 2010 has no TextBody: the connector asks for Body (HTML as written), in the
    same GetItem, and reads its text (the same words, the same keys)."""
    with EwsServer() as ews:
        box = EwsBox(ews)
        markup = CONTRACT.replace("noon", "<b>noon</b>")
        box.deliver("inbox", "h1@x", ASSISTANT, [MANAGER], TUESDAY, "Today",
                    f"<html><body><div>{markup}</div></body></html>", body_type="html")  # fmt: skip
        box.deliver("inbox", "h2@x", ASSISTANT, [MANAGER], TUESDAY, "Today", CONTRACT)
        s = ews
        settings = EwsSettings(mailbox=s.mailbox.address, service_endpoint=s.url,
                               username=s.username, password=s.password,
                               version="Exchange2010_SP2")  # fmt: skip
        import_mail(svc, _account(svc, box), EwsMailbox(settings, timeout=5))
        assert ews.operations()[-1] == "GetItem" and ews.operations().count("GetItem") == 1
    stored = _stored(svc)
    assert stored["h1@x"].extra[BODY_KEY] == stored["h2@x"].extra[BODY_KEY]
    assert stored["h1@x"].extra[TEXT_KEY] == text_keys(CONTRACT)[TEXT_KEY]


def test_ews_bodies_too_large_for_one_reply_are_read_without_their_text(
    svc: Service,
) -> None:
    """A GetItem reply whose bodies go beyond ``network.max_response_bytes`` would fail
    every sync of the mailbox: the batch is read again without the text, and said."""
    with EwsServer() as server:
        box = EwsBox(server)
        filler = " ".join(f"clause{i} of the annexed schedule" for i in range(40_000))
        box.deliver("inbox", "big@x", ASSISTANT, [MANAGER], TUESDAY, "Annex", filler)
        box.deliver("inbox", "small@x", ASSISTANT, [MANAGER], TUESDAY, "Car", CAR)
        s = server
        settings = EwsSettings(
            mailbox=s.mailbox.address, service_endpoint=s.url, username=s.username,
            password=s.password,
            policy=NetPolicy(operator=True, allow_http=True, max_response_bytes=400_000),
        )  # fmt: skip
        delta = EwsMailbox(settings, timeout=5).changes(None)
    assert sorted(m.message_id for m in delta.messages) == ["big@x", "small@x"]
    assert all(BODY_KEY not in m.extra for m in delta.messages)
    assert any("read without their text" in why for why in delta.skipped), delta.skipped
