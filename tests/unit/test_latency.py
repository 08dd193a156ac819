"""Threading and reply latency (assistant/domain/latency/), on hand-built messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from assistant.domain.latency import (
    Direction,
    LatencyRecord,
    classify,
    normalize_subject,
    percentile,
    reply_latencies,
    summarize,
    thread_messages,
)
from assistant.domain.model import MessageData

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=30)
BOSS = {"boss@corp.com", "B.Boss@Corp.com"}
AIDE = {"aide@corp.com"}


def msg(
    mid: str,
    minutes: float,
    sender: str,
    to: tuple[str, ...],
    subject: str = "Budget",
    *,
    cc: tuple[str, ...] = (),
    in_reply_to: str = "",
    references: tuple[str, ...] = (),
    thread_id: str = "",
    auto: bool = False,
) -> MessageData:
    return MessageData(
        message_id=mid,
        sent_at=T0 + timedelta(minutes=minutes),
        from_addr=sender,
        to=to,
        cc=cc,
        subject=subject,
        in_reply_to=in_reply_to,
        references=references,
        thread_id=thread_id,
        auto_reply=auto,
    )


def a2m(mid: str, minutes: float, subject: str = "Budget", **kw: object) -> MessageData:
    return msg(mid, minutes, "aide@corp.com", ("boss@corp.com",), subject, **kw)  # type: ignore[arg-type]


def m2a(mid: str, minutes: float, subject: str = "RE: Budget", **kw: object) -> MessageData:
    return msg(mid, minutes, "boss@corp.com", ("aide@corp.com",), subject, **kw)  # type: ignore[arg-type]


def by_id(records: list[LatencyRecord]) -> dict[str, LatencyRecord]:
    return {r.message_id: r for r in records}


# ------------------------------------------------------------------ subjects


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Budget", "budget"),
        ("RE: Budget", "budget"),
        ("Re: re: RE: Budget", "budget"),
        ("FW: Re: Budget", "budget"),
        ("Fwd: FWD: Budget", "budget"),
        ("AW: WG: Budget", "budget"),
        ("SV: TR: Budget", "budget"),
        ("RE[2]: Budget", "budget"),
        ("Re(3): Budget", "budget"),
        ("Re:Budget", "budget"),
        ("[EXT] RE: Budget", "budget"),
        ("RE: [External] FW: Budget", "budget"),
        ("Ответ: Бюджет", "бюджет"),
        ("НА: НА: Бюджет", "бюджет"),
        ("Пересл: Re: Бюджет  на 2024", "бюджет на 2024"),
        ("Пересл.: Отв.: Бюджет", "бюджет"),  # Outlook in Russian abbreviates with a dot
        ("  RE :   Budget   Q3 ", "budget q3"),
        ("Budget: RE: numbers", "budget: re: numbers"),  # only leading prefixes go
        ("Reorganisation", "reorganisation"),  # "Re" without a colon is a word
        ("Natural gas", "natural gas"),  # "Na" likewise
        ("", ""),
    ],
)
def test_normalize_subject(raw: str, expected: str) -> None:
    assert normalize_subject(raw) == expected


# ------------------------------------------------------------------ classify


def test_classify_case_insensitive_and_cc() -> None:
    m = msg("1", 0, "AIDE@corp.com", ("other@x.com",), cc=("b.boss@corp.com",))
    assert classify(m, BOSS, AIDE) is Direction.OTHER
    assert classify(m, BOSS, AIDE, include_cc=True) is Direction.ASSISTANT_TO_MANAGER
    back = msg("2", 0, "B.BOSS@corp.com", ("x@y.com", "Aide@Corp.com"))
    assert classify(back, BOSS, AIDE) is Direction.MANAGER_TO_ASSISTANT
    assert classify(msg("3", 0, "x@y.com", ("boss@corp.com",)), BOSS, AIDE) is Direction.OTHER


# ------------------------------------------------------------------ threading


def test_threading_by_headers_joins_different_subjects() -> None:
    root = a2m("r", 0, "Budget")
    reply = m2a("a", 5, "Something else", in_reply_to="r")
    deeper = a2m("b", 9, "Again different", references=("r", "a"))
    keys = thread_messages([deeper, reply, root])
    assert keys == {"r": "r", "a": "r", "b": "r"}


def test_replies_to_a_missing_parent_share_a_thread() -> None:
    one = m2a("1", 0, "x", in_reply_to="gone")
    two = a2m("2", 1, "y", references=("gone",))
    keys = thread_messages([one, two])
    assert keys["1"] == keys["2"]


def test_provider_thread_id_wins_over_subject() -> None:
    one = a2m("1", 0, thread_id="T1")
    two = m2a("2", 5, thread_id="T2")
    three = a2m("3", 6, "other subject", thread_id="T1")
    keys = thread_messages([one, two, three])
    assert keys["1"] == keys["3"] != keys["2"]


def test_threading_by_subject_participants_and_window() -> None:
    first = a2m("1", 0, "Budget")
    reply = m2a("2", 60, "RE: Budget")
    other_pair = msg("3", 70, "aide@corp.com", ("cfo@corp.com",), "Budget")
    other_subject = m2a("4", 80, "RE: Travel")
    later = a2m("5", 60 + 14 * 24 * 60, "FW: Budget")  # exactly the window after "2"
    too_late = a2m("6", 60 + 29 * 24 * 60, "Budget")  # 15 days after "5"
    keys = thread_messages([first, reply, other_pair, other_subject, later, too_late])
    assert keys["1"] == keys["2"] == keys["5"] == "1"
    assert len({keys["1"], keys["3"], keys["4"], keys["6"]}) == 4


def test_empty_subjects_do_not_thread() -> None:
    keys = thread_messages([a2m("1", 0, ""), m2a("2", 1, "RE: ")])
    assert keys["1"] != keys["2"]


def test_copies_are_deduplicated() -> None:
    original = a2m("1", 0, "Budget")
    same_id = a2m("1", 0, "Budget")
    enron_copy = a2m("copy-in-other-folder", 0, "Budget")  # own Message-ID
    half_day_copy = a2m("am-pm-copy", 12 * 60, "Budget")
    distinct = a2m("later", 7, "Budget")
    keys = thread_messages([original, same_id, enron_copy, half_day_copy, distinct])
    assert set(keys) == {"1", "copy-in-other-folder", "am-pm-copy", "later"}
    records = reply_latencies(
        [original, same_id, enron_copy, half_day_copy, distinct], BOSS, AIDE, NOW
    )
    assert [r.message_id for r in records] == ["1", "later"]


# ------------------------------------------------------------------ open / closed


def test_one_reply_answers_every_open_message_before_it() -> None:
    records = reply_latencies(
        [a2m("1", 0), a2m("2", 10, "RE: Budget"), m2a("3", 40), a2m("4", 50, "Re: Budget")],
        BOSS,
        AIDE,
        NOW,
    )
    r = by_id(records)
    assert r["1"].reply_message_id == r["2"].reply_message_id == "3"
    assert r["1"].wall_minutes == 40
    assert r["2"].wall_minutes == 30
    assert "4" not in r  # it answers "3": an answer, not a message waiting for one
    assert r["3"].direction is Direction.MANAGER_TO_ASSISTANT
    assert r["3"].reply_message_id == "4" and r["3"].wall_minutes == 10


def test_a_reply_in_another_thread_does_not_answer() -> None:
    records = reply_latencies([a2m("1", 0, "Budget"), m2a("2", 5, "Travel")], BOSS, AIDE, NOW)
    assert by_id(records)["1"].replied_at is None


def test_auto_replies_neither_open_nor_answer() -> None:
    records = reply_latencies(
        [
            a2m("1", 0),
            m2a("ooo", 1, "Automatic reply: Budget", auto=True),
            a2m("auto-a", 2, auto=True),
            m2a("2", 30),
        ],
        BOSS,
        AIDE,
        NOW,
    )
    r = by_id(records)
    assert set(r) == {"1"}  # "2" answers "1" and waits for nothing
    assert r["1"].reply_message_id == "2" and r["1"].wall_minutes == 30


def test_manager_messages_before_the_assistants_do_not_count() -> None:
    records = reply_latencies([m2a("early", 0, "Budget"), a2m("1", 5)], BOSS, AIDE, NOW)
    r = by_id(records)
    assert "1" not in r  # the aide's answer to "early", not a message of its own
    assert r["early"].reply_message_id == "1"  # the other direction: the aide answered


def test_same_instant_is_not_an_answer_and_future_messages_are_ignored() -> None:
    records = reply_latencies(
        [a2m("1", 0), m2a("2", 0), m2a("future", 60 * 24 * 365)], BOSS, AIDE, NOW
    )
    r = by_id(records)
    assert r["1"].replied_at is None and "future" not in r


def test_cc_only_counts_when_asked() -> None:
    cc_mail = msg("1", 0, "aide@corp.com", ("x@y.com",), cc=("boss@corp.com",))
    reply = msg("2", 3, "boss@corp.com", ("aide@corp.com",), "RE: Budget")
    assert reply_latencies([cc_mail, reply], BOSS, AIDE, NOW)[0].message_id == "2"
    with_cc = by_id(reply_latencies([cc_mail, reply], BOSS, AIDE, NOW, include_cc=True))
    assert with_cc["1"].wall_minutes == 3


def test_working_minutes_callback() -> None:
    seen: list[tuple[datetime, datetime]] = []

    def working(start: datetime, end: datetime) -> float:
        seen.append((start, end))
        return 7.5

    records = reply_latencies([a2m("1", 0), m2a("2", 20)], BOSS, AIDE, NOW, working_minutes=working)
    r = by_id(records)
    assert r["1"].working_minutes == 7.5 and "2" not in r  # "2" answers; it waits for nothing
    assert seen == [(T0, T0 + timedelta(minutes=20))]
    # an open one's wait so far is measured up to now
    seen.clear()
    alone = by_id(reply_latencies([a2m("1", 0)], BOSS, AIDE, NOW, working_minutes=working))
    assert seen == [(T0, NOW)] and alone["1"].waiting_working_minutes == 7.5


# ------------------------------------------------------------------ summary


def test_percentile_is_linear_interpolation() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 50) == 25.0
    assert percentile(values, 90) == pytest.approx(37.0)
    assert percentile([5.0], 90) == 5.0
    assert percentile([], 50) is None


def test_summary_on_a_hand_computed_example() -> None:
    # Five assistant messages in five threads, answered after 5, 10, 20, 40 and 100 minutes,
    # one left open; one manager message answered after 15 minutes. Answers that close a
    # thread (r0..r4, "m-reply") wait for nothing: they have no record.
    messages: list[MessageData] = []
    for n, wait in enumerate([5, 10, 20, 40, 100]):
        messages += [a2m(f"a{n}", n * 1000, f"S{n}"), m2a(f"r{n}", n * 1000 + wait, f"RE: S{n}")]
    messages += [a2m("open", 9000, "S9")]
    messages += [m2a("m", 20000, "Ask"), a2m("m-reply", 20015, "Re: Ask")]
    summary = summarize(reply_latencies(messages, BOSS, AIDE, NOW), sla_minutes=30)
    main = summary.by_direction["assistant_to_manager"]
    assert (main.count, main.answered, main.open) == (6, 5, 1)  # "open"
    assert main.median_minutes == 20
    assert main.p90_minutes == pytest.approx(76.0)  # 40 + 0.6 * (100 - 40)
    assert main.mean_minutes == 35
    assert main.max_minutes == 100
    # the open one has waited past the SLA by NOW: a breach already, 3 of 6 decided
    assert main.within_sla == 3 and main.overdue == 1
    assert main.within_sla_share == pytest.approx(3 / 6)
    back = summary.by_direction["manager_to_assistant"]
    assert (back.count, back.answered, back.median_minutes) == (1, 1, 15)
    assert (summary.count, summary.answered, summary.open) == (7, 6, 1)
    assert summary.median_minutes == 17.5
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["by_direction"]["assistant_to_manager"]["p90_minutes"] == pytest.approx(76.0)


def test_summary_without_data() -> None:
    summary = summarize([])
    assert summary.count == 0
    assert summary.median_minutes is None and summary.p90_minutes is None
    assert summary.within_sla_share is None


def test_summary_on_working_minutes() -> None:
    records = reply_latencies(
        [a2m("1", 0), m2a("2", 50)], BOSS, AIDE, NOW, working_minutes=lambda s, e: 12.0
    )
    assert summarize(records, basis="working").within_sla == 1
    assert summarize(records).within_sla == 0
    with pytest.raises(ValueError, match="working minutes"):
        summarize(reply_latencies([a2m("1", 0), m2a("2", 50)], BOSS, AIDE, NOW), basis="working")


def test_record_to_dict_is_json_friendly() -> None:
    record = reply_latencies([a2m("1", 0), m2a("2", 20)], BOSS, AIDE, NOW)[0]
    data = json.loads(json.dumps(record.to_dict()))
    assert data["direction"] == "assistant_to_manager"
    assert data["replied_at"] == (T0 + timedelta(minutes=20)).isoformat()
