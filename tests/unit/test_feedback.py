"""Feedback read from email replies: the reply part, the answers, the confidence."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.domain.delegation import (
    CheckpointKind,
    TaskBrief,
    checkpoint_text,
    is_good_delegation,
)
from assistant.domain.feedback import Confidence, is_good, parse_answer, reply_text

BRIEF = TaskBrief(
    title="Quarterly report",
    result="Report approved by the board",
    measure="Board sign-off",
    resources="Finance team, 2 days",
    why="Due to investors",
    delegate="anna@example.com",
    term_start=datetime(2026, 11, 2, 9, tzinfo=UTC),
    deadline=datetime(2026, 11, 16, 17, tzinfo=UTC),
    zone="Europe/Moscow",
)


def prompt(kind: CheckpointKind, locale: str = "en") -> str:
    """The real text of our prompt: it says "on time", "80%", "support is needed"..."""
    return checkpoint_text(kind, BRIEF, "https://ea.example.com/f/v1.abc.def", locale)[1]


def quoted(text: str, prefix: str = "> ") -> str:
    return "\n".join(prefix + line if line else prefix.rstrip() for line in text.splitlines())


DEAD_EN, RED_EN = prompt(CheckpointKind.DEAD_LINE), prompt(CheckpointKind.RED_LINE)
DEAD_RU, RED_RU = prompt(CheckpointKind.DEAD_LINE, "ru"), prompt(CheckpointKind.RED_LINE, "ru")


def test_prompts_would_mislead_if_quoted_text_leaked() -> None:
    # The guard that makes the stripping tests meaningful: read whole, a prompt looks like an answer.
    assert parse_answer(DEAD_EN).percent_done == 80
    assert parse_answer(DEAD_EN).on_time is True
    assert parse_answer(RED_EN).on_track is True or parse_answer(RED_EN).needs_help


# ------------------------------------------------------------------------ reply stripping

GMAIL = f"""80%, the appendix is still with legal.

On Mon, Nov 16, 2026 at 5:00 PM Exec Assistant <assistant@ea.example.com> wrote:

{quoted(DEAD_EN)}
"""

GMAIL_WRAPPED = f"""Done, on time.

On Mon, Nov 16, 2026 at 5:00 PM Exec Assistant Service With A Long Name <
assistant@ea.example.com> wrote:

{quoted(DEAD_EN)}
"""

APPLE = f"""Half done, on track.

Sent from my iPhone

> On 9 Nov 2026, at 13:00, Exec Assistant <assistant@ea.example.com> wrote:
>
{quoted(RED_EN)}
"""

APPLE_NO_PREFIX = f"""Behind — need help with the numbers from finance.

On 9 Nov 2026, at 13:00, Exec Assistant <assistant@ea.example.com> wrote:

{RED_EN}
"""

OUTLOOK = f"""90% done, on time.

Kind regards,
Anna Petrova | Head of Reporting | +7 495 123-45-67 | 100% committed

________________________________
From: Exec Assistant <assistant@ea.example.com>
Sent: Monday, November 16, 2026 5:00 PM
To: Anna Petrova <anna@example.com>
Subject: Dead Line, acceptance: Quarterly report

{DEAD_EN}
"""

OUTLOOK_ORIGINAL = f"""On track.

-----Original Message-----
From: Exec Assistant [mailto:assistant@ea.example.com]
Sent: Monday, November 9, 2026 1:00 PM
To: Anna Petrova
Subject: Red Line: Quarterly report

{RED_EN}
"""

OUTLOOK_BOLD = f"""All good, on schedule. No help needed.

*From:* Exec Assistant <assistant@ea.example.com>
*Sent:* Monday, November 9, 2026 1:00 PM
*To:* Anna Petrova <anna@example.com>
*Subject:* Red Line: Quarterly report

{RED_EN}
"""

SIGNATURE = f"""done

-- 
Anna Petrova
Head of Reporting, 50% of the time on call

{quoted(DEAD_EN)}
"""  # noqa: W291 - the signature delimiter is "-- " with its space

RU_THUNDERBIRD = f"""Сделано на 80%, в срок.

16.11.2026 17:00, Exec Assistant пишет:
{quoted(DEAD_RU)}
"""

RU_YANDEX = f"""Отстаём, нужна помощь с доступом к 1С.

09.11.2026, 13:00, "Exec Assistant" <assistant@ea.example.com>:
{quoted(RED_RU)}
"""

RU_MAILRU = f"""Всё по плану.


Понедельник, 9 ноября 2026, 13:00 +03:00 от Exec Assistant <assistant@ea.example.com>:
{quoted(RED_RU)}
"""

RU_GMAIL = f"""Готово, 100%.

пн, 16 нояб. 2026 г. в 17:00, Exec Assistant <assistant@ea.example.com>:

{quoted(DEAD_RU)}
"""

RU_OLD_GMAIL = f"""наполовину, в графике

9 ноября 2026 г., 13:00 пользователь Exec Assistant <assistant@ea.example.com> написал:

{quoted(RED_RU)}
"""

RU_OUTLOOK = f"""Готово на 95%, но с опозданием на день.

С уважением,
Анна Петрова

От: Exec Assistant <assistant@ea.example.com>
Отправлено: 16 ноября 2026 г. 17:00
Кому: Анна Петрова <anna@example.com>
Тема: Мёртвая линия, приёмка: Quarterly report

{DEAD_RU}
"""

RU_ORIGINAL = f"""В графике, помощь не нужна.

-------- Исходное сообщение --------
От: Exec Assistant <assistant@ea.example.com>
Дата: 09.11.2026 13:00
{RED_RU}
"""

RU_MOBILE = f"""Сделано.

Отправлено из мобильной Почты Mail.ru

{quoted(DEAD_RU)}
"""

WRITTEN_ABOVE = {
    "gmail": (GMAIL, "80%, the appendix is still with legal."),
    "gmail_wrapped": (GMAIL_WRAPPED, "Done, on time."),
    "apple": (APPLE, "Half done, on track."),
    "apple_unquoted": (APPLE_NO_PREFIX, "Behind — need help with the numbers from finance."),
    "outlook": (OUTLOOK, "90% done, on time."),
    "outlook_original": (OUTLOOK_ORIGINAL, "On track."),
    "outlook_bold": (OUTLOOK_BOLD, "All good, on schedule. No help needed."),
    "signature": (SIGNATURE, "done"),
    "ru_thunderbird": (RU_THUNDERBIRD, "Сделано на 80%, в срок."),
    "ru_yandex": (RU_YANDEX, "Отстаём, нужна помощь с доступом к 1С."),
    "ru_mailru": (RU_MAILRU, "Всё по плану."),
    "ru_gmail": (RU_GMAIL, "Готово, 100%."),
    "ru_old_gmail": (RU_OLD_GMAIL, "наполовину, в графике"),
    "ru_outlook": (RU_OUTLOOK, "Готово на 95%, но с опозданием на день."),
    "ru_original": (RU_ORIGINAL, "В графике, помощь не нужна."),
    "ru_mobile": (RU_MOBILE, "Сделано."),
}


@pytest.mark.parametrize(("body", "expected"), WRITTEN_ABOVE.values(), ids=WRITTEN_ABOVE.keys())
def test_reply_text_keeps_only_what_was_written(body: str, expected: str) -> None:
    assert reply_text(body) == expected


def test_reply_text_keeps_inline_answers_between_quotes() -> None:
    body = "> 1. What percent of the task is done?\n85%\n> 2. Was it done on time?\nyes, on time\n"
    assert reply_text(body) == "85%\nyes, on time"
    answer = parse_answer(body)
    assert (answer.percent_done, answer.on_time) == (85, True)


def test_reply_text_handles_crlf_and_keeps_paragraphs() -> None:
    body = "On track.\r\n\r\nThe draft goes out Thursday.\r\n\r\nOn Mon, 9 Nov 2026 Bot <b@x.io> wrote:\r\n> hi\r\n"
    assert reply_text(body) == "On track.\n\nThe draft goes out Thursday."


@pytest.mark.parametrize("gap", ["\n\n", "\n"])
def test_a_reply_starting_with_on_is_not_a_header(gap: str) -> None:
    body = f"On track, don't need any help{gap}On Mon, 9 Nov 2026 Bot <b@x.io> wrote:\n> Red Line\n"
    assert reply_text(body) == "On track, don't need any help"


def test_a_sign_off_alone_is_the_reply() -> None:
    assert reply_text("Thanks!\n\n> quoted") == "Thanks!"
    assert reply_text("Спасибо") == "Спасибо"


# -------------------------------------------------------------------------------- answers

# text, kind, expected fields (only those named are checked), confidence
K = CheckpointKind
ANSWERS: list[tuple[str, K | None, dict[str, Any], Confidence]] = [
    # percentages
    ("80%", K.DEAD_LINE, {"percent_done": 80}, Confidence.HIGH),
    ("80 %", K.DEAD_LINE, {"percent_done": 80}, Confidence.HIGH),
    ("about 85 percent", None, {"percent_done": 85}, Confidence.HIGH),
    ("сделано на 80%", K.DEAD_LINE, {"percent_done": 80}, Confidence.HIGH),
    ("Выполнено на 70 процентов", K.DEAD_LINE, {"percent_done": 70}, Confidence.HIGH),
    ("80% done, 20% left", None, {"percent_done": 80}, Confidence.HIGH),
    ("Осталось 30%", None, {"percent_done": 70}, Confidence.HIGH),
    ("0%, haven't started", K.DEAD_LINE, {"percent_done": 0}, Confidence.HIGH),
    ("80-90%", K.DEAD_LINE, {"percent_done": None}, Confidence.LOW),
    ("Was 40% last week, 60% now", None, {"percent_done": None}, Confidence.LOW),
    ("150%", None, {"percent_done": None}, Confidence.LOW),
    # done, in words
    ("done", K.DEAD_LINE, {"percent_done": 100}, Confidence.HIGH),
    ("Done.", K.DEAD_LINE, {"percent_done": 100}, Confidence.HIGH),
    ("finished", K.DEAD_LINE, {"percent_done": 100}, Confidence.HIGH),
    ("All done!", K.DEAD_LINE, {"percent_done": 100}, Confidence.HIGH),
    ("готово", K.DEAD_LINE, {"percent_done": 100}, Confidence.HIGH),
    ("Всё сделано", K.DEAD_LINE, {"percent_done": 100}, Confidence.HIGH),
    ("Задача выполнена, отчёт сдал", K.DEAD_LINE, {"percent_done": 100}, Confidence.HIGH),
    ("half done", K.DEAD_LINE, {"percent_done": 50}, Confidence.HIGH),
    ("We're halfway there", None, {"percent_done": 50}, Confidence.HIGH),
    ("наполовину", K.DEAD_LINE, {"percent_done": 50}, Confidence.HIGH),
    ("Сделана половина", None, {"percent_done": 50}, Confidence.HIGH),
    ("not done yet", K.DEAD_LINE, {"percent_done": None}, Confidence.LOW),
    ("Ещё не готово", K.DEAD_LINE, {"percent_done": None}, Confidence.LOW),
    ("It isn't finished", K.DEAD_LINE, {"percent_done": None}, Confidence.LOW),
    ("Not done yet, 60% so far", K.DEAD_LINE, {"percent_done": 60}, Confidence.HIGH),
    ("It will be ready by Friday", K.RED_LINE, {"percent_done": None, "on_track": True}, Confidence.HIGH),
    ("Будет готово к пятнице", K.RED_LINE, {"percent_done": None, "on_track": True}, Confidence.HIGH),
    ("Almost done", K.RED_LINE, {"percent_done": None, "on_track": True}, Confidence.HIGH),
    ("почти готово", K.RED_LINE, {"percent_done": None, "on_track": True}, Confidence.HIGH),
    ("Two items still need to be done", None, {"percent_done": None}, Confidence.LOW),
    # on track / behind
    ("on track", K.RED_LINE, {"on_track": True, "needs_help": False}, Confidence.HIGH),
    ("On schedule.", K.RED_LINE, {"on_track": True}, Confidence.HIGH),
    ("в графике", K.RED_LINE, {"on_track": True}, Confidence.HIGH),
    ("Идём по плану", K.RED_LINE, {"on_track": True}, Confidence.HIGH),
    ("Успеваем", K.RED_LINE, {"on_track": True}, Confidence.HIGH),
    ("behind", K.RED_LINE, {"on_track": False}, Confidence.HIGH),
    ("A bit behind schedule", K.RED_LINE, {"on_track": False}, Confidence.HIGH),
    ("отстаём", K.RED_LINE, {"on_track": False}, Confidence.HIGH),
    ("Отстаем на два дня", K.RED_LINE, {"on_track": False}, Confidence.HIGH),
    ("Не успеваем", K.RED_LINE, {"on_track": False}, Confidence.HIGH),
    ("We're not on track", K.RED_LINE, {"on_track": False}, Confidence.HIGH),
    ("isn't on track", K.RED_LINE, {"on_track": False}, Confidence.HIGH),
    ("Off track, the vendor slipped", K.RED_LINE, {"on_track": False}, Confidence.HIGH),
    ("We'll deliver on time", K.RED_LINE, {"on_track": True}, Confidence.HIGH),
    ("on track and behind", K.RED_LINE, {"on_track": None}, Confidence.LOW),
    # help
    ("нужна помощь", K.RED_LINE, {"needs_help": True}, Confidence.HIGH),
    ("need help", K.RED_LINE, {"needs_help": True}, Confidence.HIGH),
    ("Stuck on the data export", K.RED_LINE, {"needs_help": True}, Confidence.HIGH),
    ("We're on track, but I need your decision on the vendor.", K.RED_LINE,
     {"on_track": True, "needs_help": True}, Confidence.HIGH),
    ("Не успеваем, нужна помощь с доступами", K.RED_LINE,
     {"on_track": False, "needs_help": True}, Confidence.HIGH),
    ("Всё по плану, помощь не нужна", K.RED_LINE,
     {"on_track": True, "needs_help": False}, Confidence.HIGH),
    ("No help needed, on schedule.", K.RED_LINE,
     {"on_track": True, "needs_help": False}, Confidence.HIGH),
    ("On track, don't need any help", K.RED_LINE,
     {"on_track": True, "needs_help": False}, Confidence.HIGH),
    # on time, quality
    ("done on time", K.DEAD_LINE, {"percent_done": 100, "on_time": True}, Confidence.HIGH),
    ("Done, a day late", K.DEAD_LINE, {"percent_done": 100, "on_time": False}, Confidence.HIGH),
    ("Сделано в срок, качество: отличное", K.DEAD_LINE,
     {"percent_done": 100, "on_time": True, "quality": "excellent"}, Confidence.HIGH),
    ("сдали с опозданием на день, 90%", K.DEAD_LINE,
     {"percent_done": 90, "on_time": False}, Confidence.HIGH),
    ("1. 85%\n2. Yes, on time\n3. Quality: good, the board signed\n4. Anna's charts", K.DEAD_LINE,
     {"percent_done": 85, "on_time": True, "quality": "good"}, Confidence.HIGH),
    ("Quality is poor, needs rework. 60%", K.DEAD_LINE,
     {"percent_done": 60, "quality": "poor"}, Confidence.HIGH),
    ("Качество нормальное, 100%", K.DEAD_LINE,
     {"percent_done": 100, "quality": "acceptable"}, Confidence.HIGH),
    # nothing recognisable
    ("Thanks!", K.DEAD_LINE, {"percent_done": None, "on_time": None}, Confidence.LOW),
    ("Let's discuss tomorrow", K.RED_LINE, {"on_track": None}, Confidence.LOW),
    ("", None, {}, Confidence.LOW),
    ("ok", None, {}, Confidence.LOW),
    # the right bar for the prompt: a Red Line answer at a Dead Line prompt lacks the percentage
    ("on track", K.DEAD_LINE, {"on_track": True}, Confidence.LOW),
    ("80%", K.RED_LINE, {"percent_done": 80}, Confidence.LOW),
    ("80%", None, {"percent_done": 80}, Confidence.HIGH),
]  # fmt: skip


@pytest.mark.parametrize(("text", "kind", "expected", "confidence"), ANSWERS)
def test_answers(
    text: str, kind: CheckpointKind | None, expected: dict[str, Any], confidence: Confidence
) -> None:
    answer = parse_answer(text, kind=kind)
    assert {k: getattr(answer, k) for k in expected} == expected
    assert answer.confidence is confidence, answer.doubts
    assert bool(answer.doubts) == (confidence is Confidence.LOW)


# (body, kind, percent_done, on_time, on_track, needs_help)
WHOLE_REPLIES = [
    (GMAIL, K.DEAD_LINE, 80, None, None, False),
    (GMAIL_WRAPPED, K.DEAD_LINE, 100, True, None, False),
    (APPLE, K.RED_LINE, 50, None, True, False),
    (APPLE_NO_PREFIX, K.RED_LINE, None, None, False, True),
    (OUTLOOK, K.DEAD_LINE, 90, True, None, False),
    (OUTLOOK_ORIGINAL, K.RED_LINE, None, None, True, False),
    (OUTLOOK_BOLD, K.RED_LINE, None, None, True, False),
    (SIGNATURE, K.DEAD_LINE, 100, None, None, False),
    (RU_THUNDERBIRD, K.DEAD_LINE, 80, True, None, False),
    (RU_YANDEX, K.RED_LINE, None, None, False, True),
    (RU_MAILRU, K.RED_LINE, None, None, True, False),
    (RU_GMAIL, K.DEAD_LINE, 100, None, None, False),
    (RU_OLD_GMAIL, K.RED_LINE, 50, None, True, False),
    (RU_OUTLOOK, K.DEAD_LINE, 95, False, None, False),
    (RU_ORIGINAL, K.RED_LINE, None, None, True, False),
    (RU_MOBILE, K.DEAD_LINE, 100, None, None, False),
]


@pytest.mark.parametrize(
    ("body", "kind", "percent", "on_time", "on_track", "needs_help"),
    WHOLE_REPLIES,
    ids=list(WRITTEN_ABOVE),
)
def test_whole_replies_ignore_the_quoted_prompt(
    body: str,
    kind: CheckpointKind,
    percent: int | None,
    on_time: bool | None,
    on_track: bool | None,
    needs_help: bool,
) -> None:
    answer = parse_answer(body, "en", kind=kind)
    assert (answer.percent_done, answer.on_time, answer.on_track, answer.needs_help) == (
        percent,
        on_time,
        on_track,
        needs_help,
    )
    assert answer.confidence is Confidence.HIGH, answer.doubts
    assert answer.comment == reply_text(body)
    assert "Questions at" not in answer.comment and "Вопросы" not in answer.comment


def test_empty_after_stripping_is_low() -> None:
    answer = parse_answer(quoted(DEAD_EN), kind=K.DEAD_LINE)
    assert answer.comment == ""
    assert answer.confidence is Confidence.LOW
    assert answer.doubts == ("the reply is empty",)


# ---------------------------------------------------------------------------- is_good


@pytest.mark.parametrize(
    ("percent", "on_time", "expected"),
    [
        (80, True, True),
        (100, True, True),
        (79, True, False),
        (100, False, False),
        (0, True, False),
        (None, True, None),
        (90, None, None),
        (None, None, None),
        (79.9, True, False),
    ],
)
def test_is_good(percent: int | float | None, on_time: bool | None, expected: bool | None) -> None:
    assert is_good(percent, on_time) is expected
    if percent is not None and on_time is not None:
        assert is_good(percent, on_time) == is_good_delegation(float(percent), on_time)


def test_is_good_refuses_impossible_percentages() -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        is_good(120, True)


def test_is_good_from_a_parsed_reply() -> None:
    answer = parse_answer(RU_THUNDERBIRD, kind=K.DEAD_LINE)
    assert is_good(answer.percent_done, answer.on_time) is True
    answer = parse_answer(RU_OUTLOOK, kind=K.DEAD_LINE)
    assert is_good(answer.percent_done, answer.on_time) is False


# ---------------------------------------------------------------------------- properties

REPLIES = [text for text, *_ in ANSWERS if text]


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=300))
def test_any_text_gives_a_sane_answer(text: str) -> None:
    answer = parse_answer(text)
    assert answer.percent_done is None or 0 <= answer.percent_done <= 100
    assert (answer.confidence is Confidence.LOW) == bool(answer.doubts)
    assert reply_text(answer.comment) == answer.comment  # stripping is idempotent


@settings(max_examples=60, deadline=None)
@given(
    reply=st.sampled_from(REPLIES),
    original=st.text(max_size=200),
    header=st.sampled_from(
        [
            "On Mon, Nov 16, 2026 at 5:00 PM Exec Assistant <assistant@ea.example.com> wrote:",
            "16.11.2026 17:00, Exec Assistant пишет:",
            "-----Original Message-----",
            "",  # only the "> " prefix marks the original
        ]
    ),
)
def test_a_quoted_original_never_changes_the_answer(reply: str, original: str, header: str) -> None:
    alone = parse_answer(reply)
    body = f"{reply}\n\n{header}\n{quoted(original + chr(10) + DEAD_EN)}\n"
    assert parse_answer(body) == alone
