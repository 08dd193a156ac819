"""Reply latency on what real mailboxes do (issue 14, points 1-4), each on a minimal case:
aliases are one person, copies are one message, quoted replies pair, an answer is not an
open message. The same cases run through ``LatencyIndex``, which must agree."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from assistant.domain.latency import (
    Direction,
    LatencyIndex,
    LatencyRecord,
    reply_latencies,
    summarize,
    thread_messages,
)
from assistant.domain.latency.quotes import BODY_KEY, QUOTE_KEYS, TEXT_KEY, text_keys
from assistant.domain.model import MessageData
from connectors.archive.mbox import MboxSource
from connectors.archive.text import html_to_text

T0 = datetime(2026, 3, 23, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=30)
MANAGER = {"alex.smith@corp.com", "asmith@corp.com", "alex@corp.com"}
ASSISTANT = {"sam.lee@corp.com", "slee@corp.com"}


def mail(mid: str, minutes: int, sender: str, to: tuple[str, ...], subject: str,
         cc: tuple[str, ...] = (), text: str = "") -> MessageData:  # fmt: skip
    return MessageData(
        mid, T0 + timedelta(minutes=minutes), sender, to, cc, subject,
        extra=text_keys(text) if text else {},
    )  # fmt: skip


def both(messages: list[MessageData], managers: set[str] = MANAGER,
         assistants: set[str] = ASSISTANT) -> dict[str, LatencyRecord]:  # fmt: skip
    """The records by message id, after checking that the index gives the same."""
    records = reply_latencies(messages, managers, assistants, NOW)
    index = LatencyIndex(managers, assistants)
    for m in messages:
        index.add([m], NOW)
    assert index.records(NOW) == records
    return {r.message_id: r for r in records}


# ------------------------------------------------------------------ 1. aliases


def test_a_reply_from_another_alias_answers_the_message() -> None:
    ask = mail("ask", 0, "sam.lee@corp.com", ("asmith@corp.com",), "Budget")
    reply = mail("reply", 120, "alex@corp.com", ("slee@corp.com",), "RE: Budget")
    r = both([ask, reply])
    assert r["ask"].reply_message_id == "reply" and r["ask"].wall_minutes == 120
    assert thread_messages([ask, reply], aliases=(MANAGER, ASSISTANT))["reply"] == "ask"
    # the same with the primary addresses, as a control
    primary = mail("reply", 120, "alex.smith@corp.com", ("sam.lee@corp.com",), "RE: Budget")
    to_primary = mail("ask", 0, "sam.lee@corp.com", ("alex.smith@corp.com",), "Budget")
    assert both([to_primary, primary])["ask"].wall_minutes == 120


def test_direction_counts_every_alias_and_nothing_else() -> None:
    to_alias = mail("a", 0, "slee@corp.com", ("alex@corp.com",), "Travel")
    to_stranger = mail("b", 5, "slee@corp.com", ("alex@elsewhere.com",), "Travel")
    r = both([to_alias, to_stranger])
    assert set(r) == {"a"} and r["a"].direction is Direction.ASSISTANT_TO_MANAGER


# ------------------------------------------------------------------ 2. copies


def test_a_copy_with_other_recipients_counts_once() -> None:
    body = "Please sign the board pack by Friday; the auditors need it before noon."
    sent = mail("<1@corp>", 0, "sam.lee@corp.com", ("alex.smith@corp.com",), "Board pack",
                text=body)  # fmt: skip
    bcc_copy = mail("<2@archive>", 0, "sam.lee@corp.com", ("board@corp.com",), "Board pack",
                    text=body)  # fmt: skip
    one_more = mail("<3@archive>", 0, "sam.lee@corp.com", ("alex.smith@corp.com",),
                    "Board pack", cc=("cfo@corp.com",), text=body.replace(" the", "\nthe"))  # fmt: skip
    r = both([bcc_copy, sent, one_more])
    assert list(r) == ["<2@archive>"]  # the first copy stands for all; its direction holds
    assert r["<2@archive>"].direction is Direction.ASSISTANT_TO_MANAGER
    keys = thread_messages([sent, bcc_copy, one_more])
    assert len(set(keys.values())) == 1


def test_same_second_and_sender_with_another_body_is_another_message() -> None:
    a = mail("a", 0, "sam.lee@corp.com", ("alex@corp.com",), "[Fwd: slides]",
             text="Here are the slides for the board, version three with the numbers.")  # fmt: skip
    b = mail("b", 0, "sam.lee@corp.com", ("alex@corp.com",), "[Fwd: memo]",
             text="And the memo for the placement, signed by the lawyers yesterday.")  # fmt: skip
    assert set(both([a, b])) == {"a", "b"}


def test_a_copy_12_hours_off_may_have_another_body_but_not_other_recipients() -> None:
    """An archive conversion that lost AM/PM also rewrote forwarded header blocks."""
    sent = mail("a", 0, "alex@corp.com", ("sam.lee@corp.com",), "FW: Deal count",
                text="Forwarded by Alex\nTo: Sam\ncc: Kim\n\nThe numbers for the week.")  # fmt: skip
    converted = mail("b", 12 * 60, "alex@corp.com", ("sam.lee@corp.com",), "FW: Deal count",
                     text="Forwarded by Alex\n\nThe numbers for the week.")  # fmt: skip
    other = mail("c", 12 * 60, "alex@corp.com", ("kim@corp.com",), "FW: Deal count",
                 text="Forwarded by Alex\n\nThe numbers for the week.")  # fmt: skip
    assert set(both([sent, converted])) == {"a"}
    index = LatencyIndex(MANAGER, ASSISTANT)
    index.add([sent, converted, other], NOW)
    assert len(index) == 2


def test_copies_in_an_mbox_file_count_once(tmp_path: Path) -> None:
    """The same mail filed twice with its own Message-ID, another To and another wrapping."""
    text = "Could you confirm the dinner with the Northwind team on Wednesday at eight?"
    copies = []
    for mid, to, wrapped in (("<a@x>", "alex.smith@corp.com", text),
                             ("<b@x>", "alex.smith@corp.com, cfo@corp.com",
                              text.replace(" with", "\nwith"))):  # fmt: skip
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "sam.lee@corp.com", to, "Dinner"
        msg["Date"], msg["Message-ID"] = format_datetime(T0), mid
        msg.set_content(wrapped)
        copies.append(b"From sam Mon Mar 23 09:00:00 2026\n" + msg.as_bytes() + b"\n")
    path = tmp_path / "box.mbox"
    path.write_bytes(b"".join(copies))
    delta = MboxSource(path).changes(None)
    assert len(delta.messages) == 2
    assert delta.messages[0].extra[BODY_KEY] == delta.messages[1].extra[BODY_KEY]
    assert len(both(list(delta.messages))) == 1


# ------------------------------------------------------------------ 3. quoted replies

ASK = "Northwind asks to move Wednesday's lunch to Thursday at one. Shall I accept for you?"


def test_a_quoting_reply_with_a_blank_subject_pairs() -> None:
    ask = mail("ask", 0, "sam.lee@corp.com", ("alex.smith@corp.com",), "Northwind lunch",
               text=f"{ASK}\n\nSam")  # fmt: skip
    outlook = (
        "Yes, Thursday is fine.\n\n -----Original Message-----\nFrom: \tLee, Sam\n"
        "Sent:\tMonday, March 23, 2026 9:00 AM\nTo:\tSmith, Alex\nSubject:\tNorthwind lunch\n\n"
        "Northwind asks to move Wednesday's lunch to\nThursday at one.  Shall I accept for"
        " you?\n\nSam\n"
    )
    reply = mail("reply", 45, "alex.smith@corp.com", ("sam.lee@corp.com",), "", text=outlook)
    assert TEXT_KEY in ask.extra and ask.extra[TEXT_KEY] in reply.extra[QUOTE_KEYS].split()
    r = both([ask, reply])
    assert r["ask"].reply_message_id == "reply" and r["ask"].wall_minutes == 45
    assert "reply" not in r  # an answer (point 4)


def test_a_quoting_reply_with_a_changed_subject_and_angle_quotes_pairs() -> None:
    ask = mail("ask", 0, "sam.lee@corp.com", ("alex.smith@corp.com",), "Lunch", text=ASK)
    quoted = f"Accept, and book a table.\n\nOn Mon, Sam Lee wrote:\n> {ASK[:40]}\n> {ASK[40:]}\n"
    reply = mail("reply", 30, "alex@corp.com", ("sam.lee@corp.com",), "lunch move OK",
                 text=quoted)  # fmt: skip
    assert both([ask, reply])["ask"].wall_minutes == 30


def test_a_quoting_reply_in_another_provider_conversation_pairs() -> None:
    # Gmail, Microsoft 365 and Exchange give every message a thread id; a reply whose
    # client dropped the subject and the reply headers starts a conversation of its own.
    ask = replace(mail("ask", 0, "sam.lee@corp.com", ("alex.smith@corp.com",), "Lunch",
                       text=ASK), thread_id="conv-1")  # fmt: skip
    quoted = f"Accept.\n\nOn Mon, Sam Lee wrote:\n> {ASK}\n"
    reply = replace(mail("reply", 20, "alex.smith@corp.com", ("sam.lee@corp.com",), "",
                         text=quoted), thread_id="conv-2")  # fmt: skip
    assert both([ask, reply])["ask"].wall_minutes == 20
    # Quoting is read only from a reply without reply headers: headers say what it answers.
    headed = replace(reply, in_reply_to="elsewhere@corp.com")
    assert both([ask, headed])["ask"].replied_at is None


def test_a_reply_that_does_not_quote_and_blank_subjects_do_not_pair() -> None:
    ask = mail("ask", 0, "sam.lee@corp.com", ("alex.smith@corp.com",), "", text=ASK)
    other = mail("other", 30, "alex.smith@corp.com", ("sam.lee@corp.com",), "(no subject)",
                 text="Please book the flights to Lisbon for next week, aisle seats.")  # fmt: skip
    r = both([ask, other])
    assert r["ask"].replied_at is None and r["other"].replied_at is None
    none = [mail("x", 0, "slee@corp.com", ("asmith@corp.com",), "(no subject)"),
            mail("y", 5, "asmith@corp.com", ("slee@corp.com",), "RE: (no subject)")]  # fmt: skip
    keys = thread_messages(none, aliases=(MANAGER, ASSISTANT))
    assert keys["x"] != keys["y"]


def test_short_texts_have_no_text_key() -> None:
    assert TEXT_KEY not in text_keys("Thanks!")
    assert QUOTE_KEYS not in text_keys("ok\n\n> thanks")


# ------------------------------------------------------------------ 4. answers are not open


def test_the_demo_managers_reply_is_not_an_open_message(tmp_path: Path) -> None:
    from assistant.entrypoints.demo_data import write_sample_maildir
    from connectors.archive.mailbox import MaildirSource

    write_sample_maildir(tmp_path / "mail", date(2026, 3, 23))
    messages = list(MaildirSource(tmp_path / "mail").changes(None).messages)
    board = [m for m in messages if m.subject.startswith("Re: Board pack")]
    assert len(board) == 1
    manager, assistant = {board[0].from_addr}, {board[0].to[0]}
    r = both(messages, manager, assistant)
    assert board[0].message_id not in r
    ask = next(x for x in r.values() if x.subject.startswith("Board pack"))
    assert ask.reply_message_id == board[0].message_id
    # no manager reply waits for an answer: what is open to the assistant are requests
    back = summarize(r.values()).by_direction[Direction.MANAGER_TO_ASSISTANT.value]
    still = [x for x in r.values() if x.direction is Direction.MANAGER_TO_ASSISTANT]
    assert back.open == len([x for x in still if not x.answered])
    assert not [x.subject for x in still if not x.answered and x.subject.lower().startswith("re:")]


def test_an_answer_that_is_answered_in_turn_is_measured() -> None:
    ask = mail("1", 0, "slee@corp.com", ("alex@corp.com",), "Budget")
    answer = mail("2", 10, "alex@corp.com", ("slee@corp.com",), "RE: Budget")
    again = mail("3", 25, "slee@corp.com", ("alex@corp.com",), "RE: Budget")
    r = both([ask, answer, again])
    assert r["1"].wall_minutes == 10 and r["2"].wall_minutes == 15 and "3" not in r


def test_text_keys_stay_bounded_on_hostile_text() -> None:
    """Blank lines between words and thousands of quoted lines: at most MAX_QUOTE_LINES
    keys, each a fixed-size digest, and a window never walks the blank lines."""
    from assistant.domain.latency.quotes import MAX_QUOTE_LINES

    many = "\n".join(f"> line {n} of a long quoted text here" for n in range(20_000))
    keys = text_keys("Answer.\n" + many)
    assert len(keys[QUOTE_KEYS].split()) == MAX_QUOTE_LINES
    assert {len(k) for k in keys[QUOTE_KEYS].split()} == {16}
    sparse = text_keys("one two three four five\n" + "\n" * 90_000 + "> six seven eight nine ten")
    assert TEXT_KEY in sparse and QUOTE_KEYS in sparse


def test_an_html_reply_keeps_what_its_blockquote_quotes() -> None:
    # Gmail and Apple Mail quote in a blockquote; a reply with only an HTML part (as
    # archives and Graph or Exchange before 2013 hand it over) still pairs by its quote.
    html = (
        "<div dir=ltr>Yes, Thursday is fine.</div><div class=gmail_quote>On Mon, Sam wrote:"
        f"<blockquote class=gmail_quote>{ASK}<br><div>On Sun, Alex wrote:</div><blockquote>"
        "Older &amp; deeper text of the thread that was quoted before this one."
        "</blockquote></blockquote></div>"
    )
    text = html_to_text(html, quotes=True)
    assert text.splitlines()[0] == "Yes, Thursday is fine."
    assert f"> {ASK}" in text and "> > Older & deeper" in text
    assert text_keys(ASK)[TEXT_KEY] in text_keys(text)[QUOTE_KEYS].split()
    assert "Older" not in html_to_text(html), "without quotes, the reply's own words only"
