"""Tasks read from the manager's emails: title, deadline, SMART lines, delegate, asking back."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.domain.feedback import Confidence
from assistant.domain.task_mail import TaskDraft, parse_task_email

MSK = ZoneInfo("Europe/Moscow")
NY = ZoneInfo("America/New_York")
SENT = datetime(2026, 11, 24, 10, 30, tzinfo=MSK)  # a Tuesday morning in Moscow


def msk(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=MSK)


def parse(subject: str, body: str, locale: str | None = None, **kw: object) -> TaskDraft:
    sent = kw.pop("sent", SENT)
    zone = kw.pop("zone", "Europe/Moscow")
    return parse_task_email(subject, body, sent, zone, locale, **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------- deadlines understood

# subject, body, deadline (Moscow wall clock), the words it was read from
CLEAR = [
    ("Board deck by Friday 5pm", "Anna, please prepare the deck for the board.", msk(2026, 11, 27, 17), "by Friday 5pm"),
    ("Board deck", "Hi,\n\nPlease have it ready by Friday 5pm, thanks!\n\nIvan", msk(2026, 11, 27, 17), "by Friday 5pm"),
    ("Board deck", "Due Friday at 5 pm.", msk(2026, 11, 27, 17), "Due Friday at 5 pm"),
    ("Budget review", "deadline 12 Dec", msk(2026, 12, 12, 18), "deadline 12 Dec"),
    ("Budget review", "Deadline is December 12th, 3pm.", msk(2026, 12, 12, 15), "Deadline is December 12th, 3pm"),
    ("Vendor shortlist", "Need this in two weeks.", msk(2026, 12, 8, 18), "in two weeks"),
    ("Vendor shortlist", "Please finish within 3 days", msk(2026, 11, 27, 18), "within 3 days"),
    ("Offsite venue", "Book it by tomorrow", msk(2026, 11, 25, 18), "by tomorrow"),
    ("Offsite venue", "by EOD please", msk(2026, 11, 24, 18), "by EOD"),
    ("Offsite venue", "by 5pm", msk(2026, 11, 24, 17), "by 5pm"),
    ("Offsite venue", "no later than 1 Dec 2026 12:00", msk(2026, 12, 1, 12), "no later than 1 Dec 2026 12:00"),
    ("Close the books", "by the end of the month", msk(2026, 11, 30, 18), "by the end of the month"),
    ("Close the books", "until end of week", msk(2026, 11, 27, 18), "until end of week"),
    ("Close the books", "by 2026-12-15 17:00", msk(2026, 12, 15, 17), "by 2026-12-15 17:00"),
    ("Отчёт", "Подготовь отчёт до пятницы.", msk(2026, 11, 27, 18), "до пятницы"),
    ("Отчёт по продажам", "Сделать к 15 декабря 17:00", msk(2026, 12, 15, 17), "к 15 декабря 17:00"),
    ("Отчёт по продажам", "Нужно к 15-му декабря", msk(2026, 12, 15, 18), "к 15-му декабря"),
    ("Поставщики", "Нужно через неделю", msk(2026, 12, 1, 18), "через неделю"),
    ("Поставщики", "Сделай, пожалуйста, через две недели", msk(2026, 12, 8, 18), "через две недели"),
    ("Поставщики", "Жду до среды, 12:00", msk(2026, 11, 25, 12), "до среды, 12:00"),
    ("Поставщики", "Жду к четвергу 12:00", msk(2026, 11, 26, 12), "к четвергу 12:00"),
    ("Поставщики", "Прошу сделать до завтра, 12:00", msk(2026, 11, 25, 12), "до завтра, 12:00"),
    ("Договор", "Срок до конца недели", msk(2026, 11, 27, 18), "Срок до конца недели"),
    ("Договор", "Не позднее 1 декабря", msk(2026, 12, 1, 18), "Не позднее 1 декабря"),
    ("Договор", "до 15.12", msk(2026, 12, 15, 18), "до 15.12"),
    ("Договор", "до 15.12.2026 17:00", msk(2026, 12, 15, 17), "до 15.12.2026 17:00"),
    ("Договор", "Сдать в течение 3 дней", msk(2026, 11, 27, 18), "в течение 3 дней"),
    ("Договор", "Срок — 10 декабря", msk(2026, 12, 10, 18), "10 декабря"),
    ("Contract: sign-off by 20 Jan", "", msk(2027, 1, 20, 18), "by 20 Jan"),  # the year rolls over
    ("Audit", "deadline 20 Nov 2027", msk(2027, 11, 20, 18), "deadline 20 Nov 2027"),  # far, but said so
]  # fmt: skip


@pytest.mark.parametrize(("subject", "body", "deadline", "words"), CLEAR)
def test_clear_deadlines(subject: str, body: str, deadline: datetime, words: str) -> None:
    draft = parse(subject, body)
    assert draft.question is None
    assert draft.confidence is Confidence.HIGH
    assert draft.deadline == deadline
    assert draft.deadline is not None and draft.deadline.tzinfo == MSK
    assert draft.deadline_text == words
    assert draft.term_start == SENT


def test_deadline_words_leave_the_title() -> None:
    assert parse("Board deck by Friday 5pm", "").title == "Board deck"
    assert parse("Re: Fwd: [urgent] Board deck", "by Friday").title == "Board deck"
    assert parse("Задача: Отчёт к 15 декабря", "").title == "Отчёт"


def test_title_from_the_body_when_the_subject_is_empty() -> None:
    draft = parse("", "Prepare the investor FAQ by Friday 5pm\nThanks")
    assert draft.title == "Prepare the investor FAQ by Friday 5pm"
    assert draft.deadline == msk(2026, 11, 27, 17)


def test_labelled_title_wins() -> None:
    draft = parse("quick one", "Task: Investor FAQ\nDeadline: 1 Dec 12:00")
    assert (draft.title, draft.deadline) == ("Investor FAQ", msk(2026, 12, 1, 12))


def test_relative_dates_count_from_the_sending_time_in_the_managers_zone() -> None:
    # Friday 23:30 in New York is already Saturday in UTC: "tomorrow" is Saturday the 28th.
    sent = datetime(2026, 11, 28, 4, 30, tzinfo=UTC)
    draft = parse("Ping the lawyers", "by tomorrow noon", sent=sent, zone="America/New_York")
    assert draft.deadline == datetime(2026, 11, 28, 12, tzinfo=NY)
    assert draft.term_start == sent
    assert draft.term_start.tzinfo == NY


def test_the_end_of_day_is_configurable_and_survives_dst() -> None:
    sent = datetime(2026, 10, 26, 9, tzinfo=NY)  # DST ends on 1 Nov in New York
    draft = parse("Audit", "in two weeks", sent=sent, zone="America/New_York", end_of_day=time(17))
    assert draft.deadline == datetime(2026, 11, 9, 17, tzinfo=NY)
    assert draft.deadline is not None and draft.deadline.utcoffset() == NY.utcoffset(
        datetime(2026, 11, 9, 17)
    )


# ------------------------------------------------------------------------- SMART lines


def test_smart_lines_english() -> None:
    body = """Hi Anna,

Task: Investor FAQ
Result: a two-page FAQ approved by the CFO
Measure: covers the 10 questions from the last call
Resources: Maria from IR, 4 hours of your time
Why: the roadshow starts on the 14th
Deadline: Friday 17:00

Thanks,
Ivan
"""
    draft = parse("FAQ", body)
    assert draft.title == "Investor FAQ"
    assert draft.result == "a two-page FAQ approved by the CFO"
    assert draft.measure == "covers the 10 questions from the last call"
    assert draft.resources == "Maria from IR, 4 hours of your time"
    assert draft.why == "the roadshow starts on the 14th"
    assert draft.deadline == msk(2026, 11, 27, 17)
    assert draft.question is None


def test_smart_lines_russian_with_delegate() -> None:
    body = """Анна, добрый день!

Результат: презентация для совета директоров
Критерий: совет утвердил без доработок
Ресурсы: отдел аналитики
Зачем: решение по бюджету на 2027 год
Срок: к 1 декабря
Исполнитель: Анна Смирнова <Anna.Smirnova@example.ru>

С уважением,
Иван
"""
    draft = parse("Задача: Презентация", body)
    assert draft.title == "Презентация"
    assert draft.result == "презентация для совета директоров"
    assert draft.measure == "совет утвердил без доработок"
    assert draft.resources == "отдел аналитики"
    assert draft.why == "решение по бюджету на 2027 год"
    assert draft.deadline == msk(2026, 12, 1, 18)
    assert draft.delegate == "anna.smirnova@example.ru"


def test_a_start_line_sets_the_term_start() -> None:
    draft = parse("Audit", "Start: Monday 9:00\nDeadline: 15 Dec")
    assert draft.term_start == msk(2026, 11, 30, 9)
    assert draft.deadline == msk(2026, 12, 15, 18)
    assert parse("Audit", "Начало: 1 декабря\nСрок: 15 декабря").term_start == msk(2026, 12, 1)


def test_the_forwarded_original_is_not_read() -> None:
    body = """Please handle, deadline 1 Dec 12:00.

---------- Forwarded message ---------
From: Client <client@example.com>
Date: Mon, Nov 23, 2026 at 9:00 AM
Subject: Proposal

We need it by tomorrow, contact me at client@example.com.
"""
    draft = parse("Fwd: Proposal", body)
    assert draft.title == "Proposal"
    assert draft.deadline == msk(2026, 12, 1, 12)
    assert draft.delegate is None
    assert draft.question is None


# ------------------------------------------------------------------------------ delegate


@pytest.mark.parametrize(
    ("body", "delegate"),
    [
        ("Delegate: bob@example.com\nby Friday", "bob@example.com"),
        ("Assign to Bob <Bob@Example.com> by Friday", "bob@example.com"),
        ("Please send it to bob@x.com by tomorrow", "bob@x.com"),
        ("Поручить: maria@example.ru\nСрок: завтра", "maria@example.ru"),
        ("by Friday, cc ann@x.com and bob@x.com", None),  # two addresses: not named
        ("by Friday", None),
        ("Delegate: Bob\nby Friday", None),  # a name, not an address
    ],
)
def test_delegate(body: str, delegate: str | None) -> None:
    assert parse("Deck", body).delegate == delegate


def test_ignored_addresses_are_not_the_delegate() -> None:
    body = "by Friday. Questions to ivan@corp.com; do it with bob@corp.com"
    draft = parse("Deck", body, ignore_addresses=["Ivan@corp.com"])
    assert draft.delegate == "bob@corp.com"


# ------------------------------------------------------------------------- asking back

# subject, body, locale, words expected in the question, deadline kept (as a suggestion)
UNSURE = [
    ("Strategy memo", "Please draft a memo on pricing.", None, ["When is “Strategy memo” due?"], None),
    ("Памятка", "Подготовь памятку по ценам.", None, ["Какой срок у задачи «Памятка»?"], None),
    ("Memo", "Sometime next week please", None, ["“next week” is not a precise deadline"], None),
    ("Memo", "by next week", None, ["is not a precise deadline"], None),
    ("Memo", "by December", None, ["is not a precise deadline"], None),
    ("Памятка", "на следующей неделе", None, ["«на следующей неделе» — неточный срок"], None),
    ("Memo", "ASAP please", None, ["“ASAP” is not a precise deadline"], None),
    ("Памятка", "Срочно!", None, ["«Срочно» — неточный срок"], None),
    ("Memo", "by 03/04", None, ["which number is the month"], None),
    ("Memo", "by 03/04", "en", ["which number is the month"], None),
    ("Memo", "Draft by Wednesday, final by Friday", None, ["more than one date", "Wed 25 Nov 18:00", "Fri 27 Nov 18:00"], None),
    ("Memo", "by Tuesday", None, ["today, Tue 24 Nov 18:00, or a week later, Tue 1 Dec 18:00"], None),
    ("Памятка", "до вторника", None, ["сегодня, вт 24 ноября 18:00, или через неделю, вт 1 декабря 18:00"], None),
    ("Memo", "by next Friday", None, ["Fri 27 Nov 18:00 or Fri 4 Dec 18:00"], None),
    ("Memo", "Let's have it next Friday 5pm", None, ["“next Friday 5pm”: do you mean Fri 27 Nov 17:00 or Fri 4 Dec 17:00?"], None),
    ("Памятка", "Жду в следующую пятницу 17:00", None, ["«следующую пятницу 17:00»: пт 27 ноября 17:00 или пт 4 декабря 17:00?"], None),
    ("Памятка", "до следующего вторника", None, ["вт 1 декабря 18:00 или вт 8 декабря 18:00"], None),
    ("Memo", "by 9am", None, ["has already passed"], msk(2026, 11, 24, 9)),
    ("Memo", "deadline 1 Nov 2026", None, ["has already passed"], msk(2026, 11, 1, 18)),
    ("Memo", "deadline 20 Nov", None, ["really Sat 20 Nov 18:00, more than half a year away?"], msk(2027, 11, 20, 18)),
    ("Памятка", "срок 20 ноября", None, ["действительно сб 20 ноября 18:00, больше чем через полгода?"], msk(2027, 11, 20, 18)),
    ("Memo", "Please do it Friday 5pm", None, ["Is Fri 27 Nov 17:00 the deadline for “Memo”?"], msk(2026, 11, 27, 17)),
    ("Памятка", "Сделай в пятницу", None, ["пт 27 ноября 18:00 — это срок задачи «Памятка»?"], msk(2026, 11, 27, 18)),
    ("Memo", "Deadline: when you can", None, ["could not read the deadline “when you can”"], None),
    ("Memo", "Start: 10 Dec\nDeadline: 5 Dec", None, ["comes before the start of the term"], msk(2026, 12, 5, 18)),
    ("", "", None, ["What is the task?"], None),
    ("", "", "ru", ["Что нужно сделать?"], None),
]  # fmt: skip


@pytest.mark.parametrize(("subject", "body", "locale", "words", "deadline"), UNSURE)
def test_unsure_asks_back(
    subject: str, body: str, locale: str | None, words: list[str], deadline: datetime | None
) -> None:
    draft = parse(subject, body, locale)
    assert draft.confidence is Confidence.LOW
    assert draft.question is not None
    for w in words:
        assert w in draft.question
    assert draft.deadline == deadline


@pytest.mark.parametrize(
    ("body", "locale", "deadline"),
    [
        ("by 03/04", "en-US", msk(2027, 3, 4, 18)),
        ("by 03/04", "en_GB", msk(2027, 4, 3, 18)),
        ("до 03/04", "ru", msk(2027, 4, 3, 18)),
        ("by 12/25", None, msk(2026, 12, 25, 18)),  # only one reading is a date
        ("by 25/12", None, msk(2026, 12, 25, 18)),
        ("by 12/12", None, msk(2026, 12, 12, 18)),
        ("до 03.04", None, msk(2027, 4, 3, 18)),  # dots: day first
    ],
)
def test_numeric_dates_follow_the_locale(body: str, locale: str | None, deadline: datetime) -> None:
    draft = parse("Memo", body, locale)
    assert draft.question is None
    assert draft.deadline == deadline


def test_an_impossible_numeric_date_is_no_deadline() -> None:
    draft = parse("Memo", "by 31.02")
    assert draft.deadline is None
    assert draft.question is not None and "When is" in draft.question


def test_the_question_follows_the_locale_not_only_the_text() -> None:
    draft = parse("Memo", "Please draft a memo.", "ru")
    assert draft.question is not None and draft.question.startswith("Какой срок")


def test_naive_sent_at_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_task_email("Memo", "by Friday", datetime(2026, 11, 24, 10), "Europe/Moscow")


def test_the_same_email_reads_the_same() -> None:
    body = "Сделать к 15 декабря 17:00"
    assert parse("Отчёт", body) == parse("Отчёт", body)


def test_a_reply_in_a_thread_reads_only_the_new_text() -> None:
    body = """Let's move it: deadline 4 Dec 12:00.

Best regards,
Ivan Petrov | CEO | +7 495 123-45-67 | available until 20:00

On Mon, Nov 23, 2026 at 9:00 AM Anna Smirnova <anna@example.com> wrote:
> I can deliver the forecast by Friday 5pm.
> Anna
"""
    draft = parse("Re: Forecast", body, ignore_addresses=["ivan@example.com"])
    assert draft.title == "Forecast"
    assert draft.deadline == msk(2026, 12, 4, 12)
    assert draft.question is None
    assert draft.delegate is None  # Anna's address sits in the quoted header only


def test_an_outlook_forward_in_russian() -> None:
    body = """Анна, возьми, пожалуйста. Срок: 7 декабря 15:00.

С уважением,
Иван Петров
Генеральный директор, тел. +7 (495) 123-45-67

От: Клиент <client@example.ru>
Отправлено: 23 ноября 2026 г. 9:00
Кому: Иван Петров <ivan@example.ru>
Тема: Коммерческое предложение

Пришлите КП до завтра.
"""
    draft = parse("ПЕРЕСЛ: Коммерческое предложение", body)
    assert draft.title == "Коммерческое предложение"
    assert draft.deadline == msk(2026, 12, 7, 15)
    assert draft.question is None


WORDS = st.sampled_from(
    ["by", "до", "к", "Friday", "пятницы", "5pm", "17:00", "12 Dec", "15.12", "03/04", "in",
     "two", "weeks", "через", "неделю", "next", "следующую", "deadline", "Срок:", "Result:",
     "\n", ",", ".", "tomorrow", "завтра", "end of", "month", "конца", "недели", "a@b.co",
     "Re:", "> ", "On Mon, 9 Nov 2026 X wrote:"]
)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    subject=st.text(max_size=40) | st.lists(WORDS, max_size=6).map(" ".join),
    body=st.text(max_size=200) | st.lists(WORDS, max_size=20).map(" ".join),
)
def test_any_email_gives_a_task_or_a_question(subject: str, body: str) -> None:
    draft = parse(subject, body)
    assert (draft.question is not None) == (draft.confidence is Confidence.LOW)
    if draft.question is None:
        assert draft.title
        assert draft.deadline is not None and draft.deadline > draft.term_start
    assert draft.deadline is None or draft.deadline.tzinfo == MSK
