"""LatencyIndex (assistant/domain/latency/index.py): mail added in batches, in any order of arrival, gives
what reply_latencies gives on all of it at once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.domain.latency import (
    LatencyIndex,
    LatencyRecord,
    reply_latencies,
    summarize,
    thread_messages,
)
from assistant.domain.latency.quotes import text_keys
from assistant.domain.model import MessageData
from assistant.domain.worktime import WorkingHours

T0 = datetime(2026, 3, 23, 8, 0, tzinfo=UTC)  # a Monday
BOSS, ALIAS, AIDE, OTHER = "boss@corp.com", "B.Boss@corp.com", "aide@corp.com", "x@y.com"
ALIAS2 = "helper@corp.com"  # the assistant's other address
MANAGERS, ASSISTANTS = {BOSS, ALIAS}, {AIDE, ALIAS2}
_ASK = "Shall I accept the lunch with Northwind on Thursday at one for you"
_PLAN = "The board pack goes to the printers tonight unless you need changes"
# Bodies: none, two requests, and replies quoting them (Outlook or ">" style).
TEXTS = [
    "",
    "",
    _ASK,
    _PLAN,
    f"Yes.\n\n-----Original Message-----\nFrom: Aide\nSubject: x\n\n{_ASK}",
    f"No changes.\n\nOn Monday, Aide wrote:\n> {_PLAN}",
    f"Fine.\n\n-----Original Message-----\nFrom: Boss\n\n{_PLAN}\n",
]
HOURS = WorkingHours.from_config(
    {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    "Europe/Berlin",
    [date(2026, 4, 3)],
)
WINDOW = timedelta(days=3)  # short, so that the window decides often
IDS = [f"<{n}@corp.com>" for n in range(12)]
# Minutes after T0: equal instants, the 12 h copy offset, and gaps around the window.
MINUTES = [0, 1, 2, 30, 90, 720, 721, 1440, 4320, 4321, 5000, 9000, 12000]
SUBJECTS = [
    "Budget",
    "RE: Budget",
    "AW: re: Budget",
    "Ответ: Budget",
    "RE: Budget",
    "FW: Travel",
    "",
]


@st.composite
def message(draw: st.DrawFn, refs_pool: tuple[str, ...]) -> MessageData:
    sender = draw(st.sampled_from([AIDE, AIDE, BOSS, ALIAS.upper(), OTHER, ALIAS2]))
    to = draw(
        st.lists(st.sampled_from([BOSS, AIDE, AIDE, OTHER, ALIAS, ALIAS2]), min_size=1, max_size=2)
    )
    cc = draw(st.lists(st.sampled_from([BOSS, AIDE, OTHER]), max_size=1))
    headers = draw(st.sampled_from(["none", "none", "reply", "refs", "refs", "thread"]))
    text = draw(st.sampled_from(TEXTS))
    return MessageData(
        message_id=draw(st.sampled_from(IDS)),
        sent_at=T0
        + timedelta(
            minutes=draw(st.sampled_from(MINUTES)), seconds=draw(st.sampled_from([0, 0, 7]))
        ),
        from_addr=sender,
        to=tuple(to),
        cc=tuple(cc),
        subject=draw(st.sampled_from(SUBJECTS)),
        in_reply_to=draw(st.sampled_from(refs_pool)) if headers == "reply" else "",
        references=tuple(draw(st.lists(st.sampled_from(refs_pool), min_size=1, max_size=2)))
        if headers == "refs"
        else (),
        thread_id=draw(st.sampled_from(["T1", "T2"])) if headers == "thread" else "",
        auto_reply=draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans()),
        extra=text_keys(text) if text else {},
    )


@st.composite
def mailbox(
    draw: st.DrawFn, refs_pool: tuple[str, ...] = (*IDS, "<gone@x>", "<lost@x>")
) -> list[MessageData]:
    """Messages with ids from a small pool (so the same id comes twice), plus copies filed
    under a new id, the same second or 12 h off (as in Enron). References point into
    ``refs_pool``: with ids of other messages, threads join by headers; with missing ones
    only, mostly by subject, where a late message may split a thread."""
    messages = draw(st.lists(message(refs_pool), min_size=1, max_size=24))
    for n in draw(st.lists(st.integers(0, len(messages) - 1), max_size=4)):
        m = messages[n]
        shift = timedelta(hours=draw(st.sampled_from([0, 12, -12])))
        # a copy may have other recipients (a Bcc copy, one more in Cc, another alias)
        to = draw(st.sampled_from([m.to, m.to, (OTHER,), (*m.to, ALIAS), (BOSS,)]))
        cc = draw(st.sampled_from([m.cc, m.cc, (), (AIDE,), (ALIAS2,)]))
        copy = MessageData(
            f"<copy{n}-{shift}@archive>", m.sent_at + shift, m.from_addr, to, cc,
            m.subject, m.in_reply_to, m.references, m.thread_id, "Archive", m.auto_reply,
            extra=dict(m.extra) if draw(st.booleans()) else text_keys(draw(st.sampled_from(TEXTS))),
        )  # fmt: skip
        messages.insert(draw(st.integers(0, len(messages))), copy)
    return messages


def batches(messages: list[MessageData], cuts: list[int]) -> list[list[MessageData]]:
    points = sorted({min(c, len(messages)) for c in cuts} | {0, len(messages)})
    return [messages[a:b] for a, b in pairwise(points)]


def at_once(messages: list[MessageData], now: datetime) -> list[LatencyRecord]:
    return reply_latencies(
        messages, MANAGERS, ASSISTANTS, now, working_minutes=HOURS.working_minutes, window=WINDOW
    )


@settings(max_examples=400, deadline=None)
@given(
    messages=mailbox(),
    cuts=st.lists(st.integers(0, 30), max_size=6),
    now_minutes=st.sampled_from([721, 4321, 20000]),
)
def test_batches_give_what_one_batch_gives(
    messages: list[MessageData], cuts: list[int], now_minutes: int
) -> None:
    now = T0 + timedelta(minutes=now_minutes)
    index = LatencyIndex(MANAGERS, ASSISTANTS, working_minutes=HOURS.working_minutes, window=WINDOW)
    seen: list[MessageData] = []
    before: dict[str, LatencyRecord] = {}
    for batch in batches(messages, cuts):
        changed = index.add(batch, now)
        seen += batch
        expected = at_once(seen, now)
        assert index.records(now) == expected
        # what the batch returns is current, and holds every record that is new or changed
        after = {r.message_id: r for r in expected}
        returned = {r.message_id: r for r in changed}
        assert all(after[mid] == r for mid, r in returned.items())
        assert {mid for mid, r in after.items() if before.get(mid) != r} <= set(returned)
        before = after
        keys = thread_messages(seen, WINDOW, (MANAGERS, ASSISTANTS))
        assert {mid: index.thread_key(mid) for mid in keys} == keys
    # Later (or earlier) clocks: messages after `now` are left out, replies after it too.
    for later in (T0 + timedelta(minutes=1), T0 + timedelta(days=30)):
        assert index.records(later) == at_once(seen, later)


@settings(max_examples=300, deadline=None)
@given(
    messages=st.one_of(mailbox(), mailbox(("<gone@x>", "<lost@x>"))),
    order=st.randoms(use_true_random=False),
)
def test_any_order_of_arrival_one_by_one(messages: list[MessageData], order: object) -> None:
    shuffled = list(messages)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    now = T0 + timedelta(days=30)
    index = LatencyIndex(MANAGERS, ASSISTANTS, working_minutes=HOURS.working_minutes, window=WINDOW)
    for m in shuffled:
        index.add([m], now)
    assert index.records(now) == at_once(shuffled, now)
    assert index.summary(now, 30, "working") == summarize(at_once(shuffled, now), 30, "working")


def test_a_late_message_with_headers_splits_a_subject_thread() -> None:
    """A bare message and a later one with headers are linked by subject; a message with
    headers that arrives late, between them, leaves the earlier one on its own."""

    def mail(
        mid: str, minutes: int, sender: str, to: str, refs: tuple[str, ...] = ()
    ) -> MessageData:
        return MessageData(
            mid, T0 + timedelta(minutes=minutes), sender, (to,), subject="RE: Budget",
            references=refs,
        )  # fmt: skip

    first = mail("a", 0, AIDE, BOSS)
    answer = mail("b", 60, BOSS, AIDE, refs=("<elsewhere>",))
    late = mail("c", 30, AIDE, BOSS, refs=("<other>",))
    index = LatencyIndex(MANAGERS, ASSISTANTS, window=WINDOW)
    index.add([first, answer], T0 + timedelta(days=1))
    assert index.thread_key("b") == "a"
    changed = index.add([late], T0 + timedelta(days=1))
    assert index.thread_key("c") == "a" and index.thread_key("b") == "b"
    assert {r.message_id for r in changed} >= {"a", "b", "c"}
    everything = [first, answer, late]
    assert index.records(T0 + timedelta(days=1)) == reply_latencies(
        everything, MANAGERS, ASSISTANTS, T0 + timedelta(days=1), window=WINDOW
    )


def test_an_unknown_reference_that_arrives_later_joins_the_thread() -> None:
    reply = MessageData(
        "r", T0 + timedelta(minutes=20), BOSS, (AIDE,), subject="x", in_reply_to="q"
    )
    question = MessageData("q", T0, AIDE, (BOSS,), subject="y")
    index = LatencyIndex(MANAGERS, ASSISTANTS)
    index.add([reply], T0 + timedelta(days=1))
    changed = index.add([question], T0 + timedelta(days=1))
    by_id = {r.message_id: r for r in changed}
    assert by_id["q"].reply_message_id == "r" and by_id["q"].wall_minutes == 20
    assert "r" not in by_id and index.thread_key("r") == "q"  # "r" answers: no record


@st.composite
def subject_thread(draw: st.DrawFn) -> list[MessageData]:
    """One subject between the aide and the boss, bare or with a reference of its own that
    joins nothing: threads by subject alone, where late arrivals cut and make links."""
    out = []
    for n in range(draw(st.integers(2, 14))):
        sender, to = draw(st.sampled_from([(AIDE, BOSS), (BOSS, AIDE)]))
        bare = draw(st.booleans())
        out.append(
            MessageData(
                f"<s{n}@corp.com>",
                T0 + timedelta(minutes=draw(st.sampled_from(MINUTES))),
                sender,
                (to,),
                subject=draw(st.sampled_from(["Budget", "RE: Budget", "НА: Budget"])),
                references=() if bare else (f"<elsewhere{n}@x>",),
            )
        )
    return out


@settings(max_examples=300, deadline=None)
@given(messages=subject_thread(), order=st.randoms(use_true_random=False))
def test_late_arrivals_in_subject_threads(messages: list[MessageData], order: object) -> None:
    order.shuffle(messages)  # type: ignore[attr-defined]
    now = T0 + timedelta(days=30)
    index = LatencyIndex(MANAGERS, ASSISTANTS, working_minutes=HOURS.working_minutes, window=WINDOW)
    for n, m in enumerate(messages, 1):
        index.add([m], now)
        assert index.records(now) == at_once(messages[:n], now)
    keys = thread_messages(messages, WINDOW, (MANAGERS, ASSISTANTS))
    assert {mid: index.thread_key(mid) for mid in keys} == keys
