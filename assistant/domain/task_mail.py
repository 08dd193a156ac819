"""A delegated task read from an email the manager sends to the service address.

The manager writes naturally: "Board deck for the investors by Friday 5pm", "Подготовь отчёт к
15 декабря 17:00", "deadline 12 Dec", "через неделю", optionally with SMART lines ("Result:",
"Measure:", "Resources:", "Why:" / "Результат:", "Критерий:", "Ресурсы:", "Зачем:") and the
delegate's address. Dates are read with dateparser (English and Russian), relative to when the
email was sent, in the manager's zone, preferring the future.

When the words do not pin one deadline down — none at all, two different ones, "next week",
"03/04" without a locale to say which is the month, "by Friday" written on a Friday, a date
already past, a date found without a word saying it is the deadline — the draft carries a
``question`` (in the manager's language) and LOW confidence: the service asks back instead of
guessing. A date with no time of day means the end of that working day (``end_of_day``).
Pure code: no clock, no database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from assistant.domain import timefmt
from assistant.domain.feedback import Confidence, reply_text
from assistant.domain.text import one_line

try:  # dateparser has no type hints
    from dateparser.date import DateDataParser
    from dateparser.search import search_dates
except ImportError as exc:  # pragma: no cover - a packaging error, said plainly
    raise ImportError(
        "assistant.domain.task_mail needs dateparser: pip install dateparser"
    ) from exc


@dataclass(frozen=True)
class TaskDraft:
    title: str
    deadline: datetime | None  # aware, in the manager's zone
    term_start: datetime  # aware, in the manager's zone
    delegate: str | None  # an address, when the email names one
    result: str = ""
    measure: str = ""
    resources: str = ""
    why: str = ""
    confidence: Confidence = Confidence.HIGH
    question: str | None = None  # set ⇔ LOW confidence: ask the manager this, create nothing
    deadline_text: str = ""  # the words the deadline was read from


# ------------------------------------------------------------------------------ labels

_LABELS = {
    "title": r"task|title|задача|поручение|название",
    "result": r"result|outcome|deliverable|результат|итог",
    "measure": r"measure|measured by|how it is measured|criteria|criterion|kpi|metric"
    r"|критерий|критерии|критерий успеха|как измеряется|как измерить|метрика|показатель",
    "resources": r"resources|budget|ресурсы|бюджет",
    "why": r"why|why it matters|purpose|goal|зачем|зачем это нужно|цель|почему",
    "deadline": r"deadline|due|due date|by|срок|дедлайн|крайний срок|срок исполнения",
    "start": r"start|starts|start date|начало|старт|дата начала",
    "delegate": r"delegate|delegate to|assignee|assign to|owner|responsible|who"
    r"|исполнитель|ответственный|поручить|кому",
}
_LABEL_LINE = re.compile(
    r"^\s*[-*•]?\s*(?P<label>" + "|".join(f"(?:{v})" for v in _LABELS.values()) + r")"
    r"\s*(?::|：|\s[-–—])\s*(?P<value>.*\S)\s*$",
    re.I,
)
_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_SUBJECT_PREFIX = re.compile(
    r"^\s*(?:(?:re|fw|fwd|aw|wg|tr|ответ|отв|пересл|task|задача|поручение|todo)\s*:\s*"
    r"|\[[^\]]*\]\s*)",
    re.I,
)


def _label_of(label: str) -> str:
    for name, pattern in _LABELS.items():
        if re.fullmatch(pattern, label.strip(), re.I):
            return name
    raise AssertionError(label)  # pragma: no cover - the alternation came from _LABELS


# ---------------------------------------------------------------------- dates: phrases

_RU_WEEKDAYS = {
    "понедельник": r"понедельник(?:а|у|ом|е)?",
    "вторник": r"вторник(?:а|у|ом|е)?",
    "среда": r"сред(?:а|ы|е|у|ой)",
    "четверг": r"четверг(?:а|у|ом|е)?",
    "пятница": r"пятниц(?:а|ы|е|у|ей)",
    "суббота": r"суббот(?:а|ы|е|у|ой)",
    "воскресенье": r"воскресень(?:е|я|ю|ем)",
}
_EN_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_WEEKDAY_RX = [
    re.compile(rf"\b(?:{en}|{en[:3]}|{ru})\b", re.I)
    for en, ru in zip(_EN_WEEKDAYS, _RU_WEEKDAYS.values(), strict=True)
]
_DATEISH = re.compile(
    r"\b(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
    r"|январ\w*|феврал\w*|март\w*|апрел\w*|ма[йя]|июн\w*|июл\w*|август\w*|сентябр\w*"
    r"|октябр\w*|ноябр\w*|декабр\w*|янв|фев|мар|апр|авг|сен|сент|окт|ноя|нояб|дек"
    r"|mon(?:day)?|tue(?:s(?:day)?)?|wed(?:nesday)?|thu(?:rs(?:day)?)?|fri(?:day)?|sat(?:urday)?"
    r"|sun(?:day)?|понедельник\w*|вторник\w*|сред\w+|четверг\w*|пятниц\w*|суббот\w*"
    r"|воскресень\w*|today|tonight|tomorrow|day|days|week|weeks|fortnight|month|months|hour|hours"
    r"|сегодня|завтра|послезавтра|недел\w+|месяц\w*|дн\w+|день|час\w*|noon|midday|полдень"
    r"|eod|eow|cob)\b"
    r"|\d{1,2}[./]\d{1,2}|\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}|\d\s*(?:am|pm|a\.m|p\.m)\b",
    re.I,
)
_TIME_ONLY = re.compile(
    r"^(?:at\s+|в\s+)?(?:(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.?|p\.m\.?)|(\d{1,2}):(\d{2})"
    r"|noon|midday|полдень)$",
    re.I,
)
_NUMERIC = re.compile(r"(?<![\d.:/])(\d{1,2})([./])(\d{1,2})(?:\2(\d{4}|\d{2}))?(?![\d:/]|\.\d)")
_DURATION_CUE = re.compile(r"^(?:in|within|через|в течение)\b", re.I)
_VAGUE_NEXT = re.compile(
    r"\b(?:next|this coming|coming)\s+(?:mon|tue|wed|thu|fri|sat|sun)\w*|следующ\w*\s+(?:пн|вт|ср"
    r"|чт|пт|сб|вс|понедельник|вторник|сред|четверг|пятниц|суббот|воскресень)[а-я]*",
    re.I,
)
_END_OF = re.compile(
    r"^(?:the\s+)?(?:end of (?:the |this )?(?P<en>day|week|month)|(?P<abbr>eod|cob|eow|eom)"
    r"|close of business|end of next (?P<en_next>week|month)"
    r"|конца (?:этой |текущей )?(?P<ru>дня|недели|месяца)|конца следующей (?P<ru_next>недели))$",
    re.I,
)


@dataclass(frozen=True)
class _Read:
    """One reading of a phrase: a deadline, or why it cannot be one."""

    phrase: str
    at: datetime | None
    problem: str = ""  # "" | "vague" | "order" | "same_weekday" | "next_weekday"
    options: tuple[datetime, ...] = ()
    timed: bool = True  # False: the phrase named a day, the time is the end of the day


@lru_cache(maxsize=64)
def _parser(relative_base: datetime, zone: str) -> DateDataParser:
    """English and Russian, relative to ``relative_base`` (naive wall clock in ``zone``)."""
    return DateDataParser(
        languages=["en", "ru"],
        settings={
            "PREFER_DATES_FROM": "future",
            "RELATIVE_BASE": relative_base,
            "TIMEZONE": zone,
            "RETURN_AS_TIMEZONE_AWARE": True,
            "RETURN_TIME_AS_PERIOD": True,
        },
    )


def _order(locale: str | None) -> str | None:
    """``"DMY"``, ``"MDY"`` or None (unknown) for numeric dates with slashes."""
    if not locale:
        return None
    loc = locale.replace("_", "-").lower()
    if loc in ("en-us", "en-ph", "en-ca") or loc.startswith("en-us"):
        return "MDY"
    if loc in ("en", "c", "posix"):
        return None
    return "DMY"


def _numeric(phrase: str, sent: date, locale: str | None) -> tuple[str, str]:
    """Numeric dates rewritten as ISO (``("2026-12-15 17:00", "")``), or the problem."""
    m = _NUMERIC.search(phrase)
    if m is None:
        return phrase, ""
    a, sep, b, year = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
    order = "DMY" if sep == "." else _order(locale)
    if order is None:
        if a > 12 >= b:
            order = "DMY"
        elif b > 12 >= a:
            order = "MDY"
        elif a == b:
            order = "DMY"
        else:
            return phrase, "order"
    day, month = (a, b) if order == "DMY" else (b, a)
    try:
        if year:
            y = int(year) + (2000 if len(year) == 2 else 0)
            when = date(y, month, day)
        else:
            when = date(sent.year, month, day)
            if when < sent:
                when = date(sent.year + 1, month, day)
    except ValueError:
        return phrase, "invalid"
    return phrase[: m.start()] + when.isoformat() + phrase[m.end() :], ""


def _normalise(phrase: str) -> str:
    p = phrase.strip().lower().replace("ё", "е")
    for nominative, forms in _RU_WEEKDAYS.items():
        p = re.sub(rf"\b{forms}\b", nominative, p)
    p = re.sub(r"(\d)-?(?:го|ого|е|ое|му|ому|м)\b", r"\1", p)  # 15-го декабря
    p = re.sub(r"\s(?:к|до)\s+(?=\d{1,2}(?::\d{2})?\b)", " в ", p)  # завтра к 12:00
    p = re.sub(r"\bв (\d{1,2})(?: час\w*)?(?![:.\d])", r"в \1:00", p)  # завтра в 12
    p = re.sub(r"^within\b", "in", p)
    p = re.sub(r"^в течение\b", "через", p)
    return re.sub(r"\s+", " ", p).strip(" ,;:-–—")


def _end_of(m: re.Match[str], sent: datetime, eod: time) -> datetime:
    unit = (m.group("en") or m.group("ru") or "").lower()
    nxt = (m.group("en_next") or m.group("ru_next") or "").lower()
    abbr = (m.group("abbr") or "").lower()
    if abbr in ("eod", "cob") or unit in ("day", "дня") or (not unit and not nxt and not abbr):
        d = sent.date()
    elif abbr == "eom" or unit in ("month", "месяца") or nxt == "month":
        first = date(sent.year + sent.month // 12, sent.month % 12 + 1, 1)
        d = first - timedelta(days=1)
        if nxt == "month":
            d = date(first.year + first.month // 12, first.month % 12 + 1, 1) - timedelta(days=1)
    else:  # the working week ends on Friday
        d = sent.date() + timedelta(days=(4 - sent.weekday()) % 7)
        if nxt:
            d += timedelta(days=7)
    return datetime.combine(d, eod, sent.tzinfo)


def _read(phrase: str, sent: datetime, locale: str | None, eod: time) -> _Read | None:
    """The deadline a phrase names, or None when it names no date at all."""
    p = _normalise(phrase)
    if not p or not _DATEISH.search(p):
        return None
    tz = sent.tzinfo
    assert isinstance(tz, ZoneInfo)
    if m := _END_OF.match(p):
        return _Read(phrase, _end_of(m, sent, eod), timed=False)
    if m := _TIME_ONLY.match(p):
        t = _clock(m)
        return _Read(phrase, datetime.combine(sent.date(), t, tz))
    p, problem = _numeric(p, sent.date(), locale)
    if problem == "invalid":
        return None
    if problem:
        return _Read(phrase, None, problem)
    next_one = _VAGUE_NEXT.search(p)
    if next_one:  # read "next Friday 17:00" as "Friday 17:00", then ask which Friday
        p = re.sub(r"\b(?:next|this coming|coming|следующ\w*)\s+", "", p)
        p = re.sub(r"^(?:в|во|на)\s+", "", p)
    data = _parser(sent.replace(tzinfo=None), tz.key).get_date_data(p)
    found = data["date_obj"]
    if found is None:
        return None
    local = found.astimezone(tz)
    period = data["period"]
    duration = bool(_DURATION_CUE.match(p))
    if period in ("week", "month", "year") and not duration:
        return _Read(phrase, None, "vague")
    at = local if period == "time" else datetime.combine(local.date(), eod, tz)
    named = [wd for wd, rx in enumerate(_WEEKDAY_RX) if rx.search(p)]
    if len(named) == 1:
        wd, clock = named[0], at.timetz().replace(tzinfo=None)
        if next_one:  # "next Friday": this coming one, or the one after?
            first = sent.date() + timedelta(days=(wd - sent.weekday()) % 7 or 7)
            soon = datetime.combine(first, clock, tz)
            return _Read(phrase, None, "next_weekday", (soon, soon + timedelta(days=7)))
        if wd == sent.weekday() and not re.search(r"\b(?:this|эт\w+)\b", p):
            today = datetime.combine(sent.date(), clock, tz)
            return _Read(phrase, None, "same_weekday", (today, today + timedelta(days=7)))
    return _Read(phrase, at, timed=period == "time")


def _clock(m: re.Match[str]) -> time:
    if m.group(4):
        return time(int(m.group(4)) % 24, int(m.group(5)) % 60)
    if m.group(1):
        hour, minute = int(m.group(1)) % 12, int(m.group(2) or 0) % 60
        return time(hour + (12 if m.group(3).lower().startswith("p") else 0), minute)
    return time(12, 0)


# ------------------------------------------------------------------- dates: in the text

_CUE = re.compile(
    r"(?<![\w-])(?:(?P<cue>due(?: by| on| date)?|deadline(?: is)?|by|before|until|till"
    r"|no later than|not later than|до|к|ко|не позднее|не позже|срок(?: до| к)?|дедлайн"
    r"|крайний срок|(?P<dur>in|within|через|в течение))(?![\w-])\s*[:\-–—]?\s*"
    r"|(?=(?:next|this coming|coming|следующ\w*)\s+\w))",  # "next Friday" stands on its own
    re.I,
)
_STOP = re.compile(r"[,;!?()\n\"«»“”]|\.(?=\s|$)|\s[-–—]\s|\s(?:and|и|или|or|but|но)\s", re.I)
_TIME_AFTER = re.compile(
    r"\s*(?:at\s+|в\s+|к\s+|до\s+)?(?:\d{1,2}:\d{2}|\d{1,2}\s*(?:am|pm|a\.m|p\.m)\b|noon)", re.I
)
_VAGUE = re.compile(
    r"(?<![\w-])(?:(?:next|this|the following|coming) (?:week|month)|asap|as soon as possible"
    r"|when you can|whenever|soon|later|на (?:следующей|этой|будущей) неделе"
    r"|в (?:следующем|этом|будущем) месяце|как можно скорее|как только сможешь|когда сможешь"
    r"|срочно|побыстрее|поскорее)(?![\w-])",
    re.I,
)
_MAX_WORDS = 6
FAR = timedelta(days=183)  # a deadline further away, with no year written, is likely a slip


def _cued(text: str, sent: datetime, locale: str | None, eod: time) -> list[tuple[_Read, str]]:
    """Readings after deadline words (``by``, ``до``, ``in``...), with the cue and phrase."""
    out: list[tuple[_Read, str]] = []
    pos = 0
    while m := _CUE.search(text, pos):
        stop = _STOP.search(text, m.end())
        while stop and stop.group(0) == "," and _TIME_AFTER.match(text, stop.end()):
            stop = _STOP.search(text, stop.end())  # "December 12th, 3pm", "до среды, 12:00"
        words = text[m.end() : stop.start() if stop else len(text)].split()[:_MAX_WORDS]
        pos = m.start() + 1
        keep_cue = m.group("dur")
        for n in range(len(words), 0, -1):
            phrase = " ".join(words[:n])
            reading = _read(f"{keep_cue} {phrase}" if keep_cue else phrase, sent, locale, eod)
            if reading is not None:
                out.append((reading, f"{m.group('cue') or ''} {phrase}".strip()))
                pos = m.end() + len(" ".join(words[:n]))
                break
    return out


def _uncued(text: str, sent: datetime, locale: str | None, eod: time) -> list[_Read]:
    found = search_dates(
        _normalise(text),
        languages=["en", "ru"],
        settings={
            "PREFER_DATES_FROM": "future",
            "RELATIVE_BASE": sent.replace(tzinfo=None),
        },
    )
    out = []
    for phrase, _ in found or []:
        reading = _read(phrase, sent, locale, eod)
        if reading is not None:
            out.append(reading)
    return out


# ------------------------------------------------------------------------------ questions

_Q = {
    "none": (
        "When is “{title}” due? I found no deadline in your email. Reply with the date and time, "
        "for example “by Friday 17:00” or “deadline 12 Dec”.",
        "Какой срок у задачи «{title}»? В письме я не нашёл срока. Ответьте датой и временем, "
        "например «до пятницы 17:00» или «срок 12 декабря».",
    ),
    "unreadable": (
        "I could not read the deadline “{phrase}” of “{title}”. When is it due?",
        "Я не понял срок «{phrase}» у задачи «{title}». Когда его сдать?",
    ),
    "vague": (
        "“{phrase}” is not a precise deadline for “{title}”. Which day and time?",
        "«{phrase}» — неточный срок для задачи «{title}». Какой день и время?",
    ),
    "order": (
        "In “{phrase}”, which number is the month? Please write the month as a word, "
        "for example “3 April”.",
        "В «{phrase}» какое число — месяц? Напишите месяц словом, например «3 апреля».",
    ),
    "same_weekday": (
        "“{phrase}”: do you mean today, {a}, or a week later, {b}?",
        "«{phrase}»: сегодня, {a}, или через неделю, {b}?",
    ),
    "next_weekday": (
        "“{phrase}”: do you mean {a} or {b}?",
        "«{phrase}»: {a} или {b}?",
    ),
    "several": (
        "I found more than one date for “{title}”: {dates}. Which one is the deadline?",
        "Для задачи «{title}» я нашёл несколько дат: {dates}. Какая из них — срок?",
    ),
    "past": (
        "The deadline I read for “{title}”, {a}, has already passed. When is it due?",
        "Срок задачи «{title}», который я прочитал, {a}, уже прошёл. Какой срок поставить?",
    ),
    "before_start": (
        "The deadline of “{title}”, {a}, comes before the start of the term, {b}. Which is right?",
        "Срок задачи «{title}», {a}, раньше её начала, {b}. Что верно?",
    ),
    "far": (
        "Is the deadline of “{title}” really {a}, more than half a year away? "
        "Reply “yes” or give the deadline with its year.",
        "Срок задачи «{title}» действительно {a}, больше чем через полгода? "
        "Ответьте «да» или напишите срок с годом.",
    ),
    "confirm": (
        "Is {a} the deadline for “{title}”? Reply “yes” or give the deadline.",
        "{a} — это срок задачи «{title}»? Ответьте «да» или напишите срок.",
    ),
    "title": (
        "What is the task? The email has neither a subject nor a text I could use as its title.",
        "Что нужно сделать? В письме нет ни темы, ни текста, из которого взять название задачи.",
    ),
}


def _ask(key: str, lang: str, **values: str) -> str:
    return _Q[key][1 if lang == "ru" else 0].format(**values)


def _when(t: datetime, lang: str) -> str:
    return f"{timefmt.day(t.date(), lang)} {t:%H:%M}"


def ask_past_deadline(title: str, deadline: datetime, zone: str, lang: str) -> str:
    """The question for a deadline that had passed by the time the email was read (the
    service was down, or the manager wrote a date already gone): a task is never made
    with it, and a "yes" cannot confirm it."""
    name = title or ("задача" if lang == "ru" else "the task")
    return _ask("past", lang, title=name, a=_when(deadline.astimezone(ZoneInfo(zone)), lang))


# ------------------------------------------------------------------------------- the draft


def _language(locale: str | None, text: str) -> str:
    if locale:
        return timefmt.lang(locale)
    cyrillic = len(re.findall(r"[а-яё]", text, re.I))
    latin = len(re.findall(r"[a-z]", text, re.I))
    return "ru" if cyrillic > latin else "en"


def _title(subject: str, lines: list[str]) -> str:
    title = one_line(subject)  # the title becomes the prompts' Subject and events' SUMMARY
    while (m := _SUBJECT_PREFIX.match(title)) and m.end() > 0:
        title = title[m.end() :]
    if not title:
        title = next((one_line(s) for s in lines if one_line(s)), "")
    return title.strip(" \t-–—,:;.")[:500]


def _delegate(labelled: str, free: str, ignore: set[str]) -> str | None:
    if labelled:
        m = _EMAIL.search(labelled)
        return m.group(0).lower() if m else None
    cued = re.search(
        r"(?:delegate to|assign(?:ed)? to|for|поручи(?:ть)?|для)\s+(?:[^\s<>]+\s+){0,3}<?("
        + _EMAIL.pattern
        + ")",
        free,
        re.I,
    )
    if cued and cued.group(1).lower() not in ignore:
        return cued.group(1).lower()
    found = {a.lower() for a in _EMAIL.findall(free)} - ignore
    return found.pop() if len(found) == 1 else None


def parse_task_email(
    subject: str,
    body: str,
    sent_at: datetime,
    zone: str,
    locale: str | None = None,
    *,
    end_of_day: time = time(18, 0),
    ignore_addresses: Iterable[str] = (),
) -> TaskDraft:
    """The task an email describes, with its deadline, or a question to ask back.

    ``sent_at`` (aware) anchors relative dates; ``zone`` is the manager's IANA zone. A
    ``locale`` such as ``"en-US"`` or ``"ru"`` decides the language of the question and the
    order of slashed numeric dates (``None`` or plain ``"en"``: ask when it matters).
    ``ignore_addresses`` (the manager's, the service's own) are never taken for the delegate.
    """
    if sent_at.tzinfo is None or sent_at.utcoffset() is None:
        raise ValueError(f"sent_at must be an aware datetime, got naive {sent_at.isoformat()}")
    tz = ZoneInfo(zone)
    sent = sent_at.astimezone(tz)
    text = reply_text(body)
    lang = _language(locale, f"{subject}\n{text}")

    fields: dict[str, str] = {}
    free_lines: list[str] = []
    for line in text.splitlines():
        m = _LABEL_LINE.match(line)
        if m and _label_of(m.group("label")) not in fields:
            fields[_label_of(m.group("label"))] = m.group("value").strip()
        else:
            free_lines.append(line)
    free = "\n".join(free_lines)

    title_source = fields.get("title", "")
    subject_readings = _cued(subject, sent, locale, end_of_day)
    clean_subject = subject
    for _, words in subject_readings:
        clean_subject = clean_subject.replace(words, " ")
    title = _title(title_source or re.sub(r"\s+", " ", clean_subject), free_lines)

    term_start = sent
    start = _read(fields["start"], sent, locale, end_of_day) if "start" in fields else None
    if start is not None and start.at is not None:
        begin = start.at if start.timed else datetime.combine(start.at.date(), time(0), tz)
        term_start = max(begin, sent) if begin.date() == sent.date() else begin

    delegate = _delegate(fields.get("delegate", ""), free, {a.lower() for a in ignore_addresses})

    def draft(
        deadline: datetime | None, question: str | None, deadline_text: str = ""
    ) -> TaskDraft:
        if not title:
            question = _ask("title", lang)  # first things first: what the task is
        return TaskDraft(
            title=title,
            deadline=deadline,
            term_start=term_start,
            delegate=delegate,
            result=fields.get("result", ""),
            measure=fields.get("measure", ""),
            resources=fields.get("resources", ""),
            why=fields.get("why", ""),
            confidence=Confidence.LOW if question else Confidence.HIGH,
            question=question,
            deadline_text=deadline_text,
        )

    name = title or ("задача" if lang == "ru" else "the task")
    readings: list[tuple[_Read, str]]
    if "deadline" in fields:
        value = fields["deadline"]
        stripped = _CUE.sub("", value, count=1) if _CUE.match(value) else value
        dur = bool(_DURATION_CUE.match(value))
        reading = _read(value if dur else stripped, sent, locale, end_of_day)
        if reading is None:
            return draft(None, _ask("unreadable", lang, phrase=value, title=name))
        readings = [(reading, value)]
    else:
        readings = _cued(subject, sent, locale, end_of_day) + _cued(free, sent, locale, end_of_day)
    if not readings:
        guesses = _uncued(f"{subject}\n{free}", sent, locale, end_of_day)
        distinct = sorted({r.at for r in guesses if r.at is not None and r.at > sent})
        vague = [r.phrase for r in guesses if r.problem == "vague"]
        if (m := _VAGUE.search(f"{subject}\n{free}")) and not distinct:
            vague.insert(0, m.group(0))
        if vague and not distinct:
            return draft(None, _ask("vague", lang, phrase=vague[0], title=name))
        if len(distinct) == 1:
            a = _when(distinct[0], lang)
            phrase = next(r.phrase for r in guesses if r.at == distinct[0])
            return draft(distinct[0], _ask("confirm", lang, a=a, title=name), phrase)
        return draft(None, _ask("none", lang, title=name))

    for reading, words in readings:
        if reading.problem:
            opts = [_when(t, lang) for t in reading.options] + ["", ""]
            key = reading.problem if reading.problem in _Q else "unreadable"
            if key in ("same_weekday", "next_weekday") and not reading.options:
                key = "vague"
            return draft(None, _ask(key, lang, phrase=words, title=name, a=opts[0], b=opts[1]))

    values = sorted({r.at for r, _ in readings if r.at is not None})
    if len(values) > 1:
        dates = ", ".join(_when(t, lang) for t in values)
        return draft(None, _ask("several", lang, title=name, dates=dates))
    deadline, words = values[0], next(w for r, w in readings if r.at == values[0])
    if deadline <= sent:
        return draft(deadline, _ask("past", lang, title=name, a=_when(deadline, lang)), words)
    if deadline <= term_start:
        b = _when(term_start, lang)
        return draft(
            deadline, _ask("before_start", lang, title=name, a=_when(deadline, lang), b=b), words
        )
    if deadline - sent > FAR and not re.search(r"\b\d{4}\b", words):
        return draft(deadline, _ask("far", lang, title=name, a=_when(deadline, lang)), words)
    return draft(deadline, None, words)
