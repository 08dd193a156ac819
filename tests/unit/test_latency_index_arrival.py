"""LatencyIndex (assistant/domain/latency/index.py) fed as mail arrives: messages in the order
they were sent, in batches of any size. A thread that only gains later messages is measured
on from where it ended; the records must stay those reply_latencies gives on all of it."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.domain.latency import LatencyIndex, LatencyRecord, thread_messages
from assistant.domain.latency.quotes import text_keys
from assistant.domain.model import MessageData
from tests.unit.test_latency_index import (
    AIDE,
    ALIAS,
    ALIAS2,
    ASSISTANTS,
    BOSS,
    HOURS,
    MANAGERS,
    OTHER,
    SUBJECTS,
    T0,
    TEXTS,
    WINDOW,
    at_once,
    batches,
    mailbox,
)


@st.composite
def conversations(draw: st.DrawFn) -> list[MessageData]:
    """A few long conversations, interleaved, each message later than (or as late as) the
    one before: replies by header, by subject alone or by provider thread id, answers at the
    same instant, copies under another id, a message seen twice, and now and then one that
    comes late (sent before the last one)."""
    out: list[MessageData] = []
    minute = 0
    for n in range(draw(st.integers(1, 40))):
        minute += draw(st.sampled_from([0, 0, 1, 5, 60, 600, 3000, 5000]))
        sender = draw(st.sampled_from([AIDE, AIDE, BOSS, BOSS, ALIAS, ALIAS2, OTHER]))
        to = draw(st.sampled_from([(BOSS,), (AIDE,), (ALIAS,), (OTHER,), (BOSS, AIDE)]))
        conversation = draw(st.integers(0, 2))
        headers = draw(st.sampled_from(["none", "reply", "reply", "refs", "thread"]))
        earlier = [m.message_id for m in out]
        text = draw(st.sampled_from(TEXTS))
        late = draw(st.integers(0, 9)) == 0
        m = MessageData(
            message_id=f"<c{n}@corp.com>",
            sent_at=T0 + timedelta(minutes=max(0, minute - 4000) if late else minute),
            from_addr=sender,
            to=to,
            subject=f"{draw(st.sampled_from(SUBJECTS[:4]))} {conversation}",
            in_reply_to=draw(st.sampled_from(earlier)) if headers == "reply" and earlier else "",
            references=(draw(st.sampled_from(earlier)),) if headers == "refs" and earlier else (),
            thread_id=f"T{conversation}" if headers == "thread" else "",
            extra=text_keys(text) if text else {},
        )
        out.append(m)
        if draw(st.integers(0, 7)) == 0:  # a copy under another id, or the same id again
            copy_id = draw(st.sampled_from([m.message_id, f"<copy{n}@archive>"]))
            to2 = draw(st.sampled_from([m.to, (*m.to, OTHER), (AIDE,), (BOSS,)]))
            out.append(MessageData(copy_id, m.sent_at, m.from_addr, to2, (), m.subject,
                                   m.in_reply_to, m.references, m.thread_id, "Archive",
                                   extra=dict(m.extra)))  # fmt: skip
    return out


def check_batches(messages: list[MessageData], cuts: list[int], now_minutes: int) -> None:
    now = T0 + timedelta(minutes=now_minutes)
    index = LatencyIndex(MANAGERS, ASSISTANTS, working_minutes=HOURS.working_minutes, window=WINDOW)
    seen: list[MessageData] = []
    before: dict[str, LatencyRecord] = {}
    for batch in batches(messages, cuts):
        changed = index.add(batch, now)
        seen += batch
        expected = at_once(seen, now)
        assert index.records(now) == expected
        after = {r.message_id: r for r in expected}
        returned = {r.message_id: r for r in changed}
        assert all(after[mid] == r for mid, r in returned.items())
        assert {mid for mid, r in after.items() if before.get(mid) != r} <= set(returned)
        # what was measured holds every message whose record came or went
        gone = {mid for mid in before if mid not in after}
        assert gone <= set(index.last_measured)
        before = after
        keys = thread_messages(seen, WINDOW, (MANAGERS, ASSISTANTS))
        assert {mid: index.thread_key(mid) for mid in keys} == keys
    for later in (T0 + timedelta(minutes=1), T0 + timedelta(days=400)):
        assert index.records(later) == at_once(seen, later)


@settings(max_examples=400, deadline=None)
@given(
    messages=conversations(),
    cuts=st.lists(st.integers(0, 60), max_size=12),
    now_minutes=st.sampled_from([721, 20000, 600000]),
)
def test_conversations_in_order_of_arrival_in_batches(
    messages: list[MessageData], cuts: list[int], now_minutes: int
) -> None:
    check_batches(messages, cuts, now_minutes)


@settings(max_examples=300, deadline=None)
@given(
    messages=mailbox(),
    cuts=st.lists(st.integers(0, 30), max_size=8),
    now_minutes=st.sampled_from([721, 20000]),
)
def test_mailbox_sorted_by_sending_time_in_batches(
    messages: list[MessageData], cuts: list[int], now_minutes: int
) -> None:
    check_batches(sorted(messages, key=lambda m: m.sent_at), cuts, now_minutes)


def test_a_later_reply_measures_only_what_it_answers() -> None:
    """A long thread that gains one later answer: only the answer and the messages it
    answers are measured again, not the thread."""
    thread = []
    for n in range(200):  # 7 minutes apart: none 12 h from another (a copy, as in Enron)
        sender, to = (AIDE, BOSS) if n % 4 else (BOSS, AIDE)
        thread.append(
            MessageData(f"<t{n}@corp.com>", T0 + timedelta(minutes=7 * n), sender, (to,),
                        subject="Budget", in_reply_to=f"<t{n - 1}@corp.com>" if n else "")
        )  # fmt: skip
    now = T0 + timedelta(days=10)
    index = LatencyIndex(MANAGERS, ASSISTANTS, working_minutes=HOURS.working_minutes, window=WINDOW)
    index.add(thread, now)
    answer = MessageData("<answer@corp.com>", T0 + timedelta(minutes=7 * 199 + 5), BOSS, (AIDE,),
                         subject="RE: Budget", in_reply_to="<t199@corp.com>")  # fmt: skip
    changed = index.add([answer], now)
    # the last three messages were the assistant's, waiting; the answer closes them
    assert set(index.last_measured) == {"<t197@corp.com>", "<t198@corp.com>", "<t199@corp.com>",
                                        "<answer@corp.com>"}  # fmt: skip
    assert {r.message_id for r in changed} == {"<t197@corp.com>", "<t198@corp.com>",
                                               "<t199@corp.com>"}  # fmt: skip
    assert index.records(now) == at_once([*thread, answer], now)
    # a message that lands earlier than the thread's end: the thread is measured in full
    early = MessageData("<early@corp.com>", T0 + timedelta(minutes=5), BOSS, (AIDE,),
                        subject="RE: Budget", in_reply_to="<t0@corp.com>")  # fmt: skip
    index.add([early], now)
    assert len(index.last_measured) == 202
    assert index.records(now) == at_once([*thread, answer, early], now)
