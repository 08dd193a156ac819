"""Feedback at a Red Line or a Dead Line, read from a plain email reply (English and Russian).

``reply_text`` keeps what the person wrote: it cuts the quoted original (Gmail's and Apple
Mail's "On ... wrote:", Outlook's "From: ... Sent: ..." block and "-----Original Message-----",
Russian clients' "... писал(а):" and "..., Имя <a@b>:" headers), lines quoted with ">", and the
signature ("-- ", "Sent from my iPhone", a sign-off line such as "Best regards,").

``parse_answer`` turns that text into a :class:`FeedbackAnswer`. It only reports what the words
say; when they say nothing it recognises, or contradict each other, ``confidence`` is LOW and
``doubts`` names the problem so the service asks back instead of storing a guess.
Pure code: no clock, no database.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from assistant.domain.delegation import CheckpointKind, is_good_delegation


class Confidence(StrEnum):
    HIGH = "high"
    LOW = "low"


@dataclass(frozen=True)
class FeedbackAnswer:
    percent_done: int | None
    on_time: bool | None
    needs_help: bool
    on_track: bool | None
    quality: str | None
    comment: str
    confidence: Confidence
    doubts: tuple[str, ...] = ()


PERCENT_RANGE = "percent_done must be a number from 0 to 100"


def parse_percent(value: object) -> int:
    """How much is done, as typed into a form or sent as JSON: a finite number from 0 to 100
    (decimals are cut to the whole percent). ValueError (``PERCENT_RANGE``) otherwise:
    ``inf``, ``1e400``, ``NaN``, ``-1``, ``101``, ``true``, text."""
    import math

    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(PERCENT_RANGE)
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise ValueError(PERCENT_RANGE) from None
    if not math.isfinite(number) or not 0 <= number <= 100:
        raise ValueError(PERCENT_RANGE)
    return int(number)


def is_good(percent_done: int | float | None, on_time: bool | None) -> bool | None:
    """:func:`assistant.domain.delegation.is_good_delegation`, or None while either part is
    unknown."""
    if percent_done is None or on_time is None:
        return None
    return is_good_delegation(float(percent_done), on_time)


# ------------------------------------------------------------------------- the reply part

_EMAIL = r"[^\s<>@]+@[^\s<>@]+"
_HEADER_LINES = [
    re.compile(r"^-{2,}\s*(original message|forwarded message|исходное сообщение"
               r"|пересылаемое сообщение|пересланное сообщение)\s*-{2,}", re.I),
    re.compile(r"^_{10,}\s*$"),  # Outlook's rule above its header block
    re.compile(r"^(begin forwarded message|начало переадресованного сообщения):", re.I),
    re.compile(r"\b(wrote|писал|писала|писал\(а\)|написал|написала|написал\(а\)|пишет):\s*$", re.I),
    # Gmail in Russian, Yandex, Mail.ru: "вт, 24 нояб. 2026 г. в 10:30, Анна <a@b.ru>:"
    re.compile(rf"\d.*<{_EMAIL}>\s*:\s*$"),
]  # fmt: skip
_ON_WROTE_START = re.compile(r"^(on|am|le|el)\s.+", re.I)
_WROTE_END = re.compile(r"\b(wrote|schrieb|a écrit|escribió)\s*:\s*$", re.I)
_OUTLOOK_FROM = re.compile(r"^\*?(from|от|von|de)\s*:\*?\s", re.I)
_OUTLOOK_NEXT = re.compile(
    r"^\*?(sent|date|to|subject|отправлено|дата|кому|тема|gesendet|an|betreff)\s*:", re.I
)
_SIGNATURE = re.compile(
    r"^(--|—|sent from my \w+|sent from (mail|outlook) for|get outlook for \w+"
    r"|отправлено (с|из) .+|sent from yahoo mail.*|скачайте .+)\s*$",
    re.I,
)
_SIGN_OFF = re.compile(
    r"^(best( regards| wishes)?|kind regards|warm regards|regards|cheers|many thanks"
    r"|thanks( again)?|thank you|br|с уважением|всего доброго|всего хорошего|спасибо"
    r"|с наилучшими пожеланиями)[,.!]?\s*$",
    re.I,
)


def _on_wrote(lines: list[str]) -> set[int]:
    """Where "On <date>, <someone> wrote:" headers start; Gmail wraps them over two or three
    lines, so each "wrote:" looks back for the nearest "On ..." line without crossing a blank."""
    starts = set()
    for j, line in enumerate(lines):
        if not _WROTE_END.search(line.strip()):
            continue
        for k in range(j, max(-1, j - 3), -1):
            if not lines[k].strip():
                break
            if _ON_WROTE_START.match(lines[k].strip()):
                if any(c.isdigit() for c in " ".join(lines[k : j + 1])):
                    starts.add(k)
                break
    return starts


def _is_header(lines: list[str], i: int, on_wrote: set[int]) -> bool:
    line = lines[i].strip()
    if i in on_wrote or any(p.search(line) for p in _HEADER_LINES):
        return True
    if _OUTLOOK_FROM.match(line):
        return any(_OUTLOOK_NEXT.match(s.strip()) for s in lines[i + 1 : i + 5])
    return False


def reply_text(text: str) -> str:
    """The part of an email body its sender wrote: no quoted original, no signature."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    on_wrote = _on_wrote(lines)
    for i, line in enumerate(lines):
        stripped = line.strip()
        if _is_header(lines, i, on_wrote) or _SIGNATURE.match(stripped) or line.rstrip() == "--":
            break
        if line == "-- ":
            break
        if _SIGN_OFF.match(stripped) and any(s.strip() for s in kept):
            break
        if stripped.startswith(">"):
            continue
        kept.append(line.rstrip())
    return "\n".join(kept).strip()


# --------------------------------------------------------------------------- the answer


@dataclass
class _Found:
    percents: list[int]
    on_time: list[bool]
    on_track: list[bool]
    needs_help: list[bool]
    quality: list[str]
    done: list[bool]


_NEG = r"(?:not|\w+n't|never|no|не|нет|ещё не|еще не)"
_PCT = re.compile(
    r"(?<![\d.,])(?:(\d{1,3})\s*(?:-|–|to|до)\s*)?(\d{1,3})(?:[.,]\d+)?\s*"
    r"(?:%|percent\b|per cent\b|pct\b|процент\w*)",
    re.I,
)
_LEFT_AFTER = re.compile(r"^\s*(?:is |are )?(?:left|remaining|to go|remain|осталось|остается)\b")
_LEFT_BEFORE = re.compile(r"(?:осталось|остается|remaining|left)\s*(?:ещё|еще|около|about)?\s*$")

_Rule = tuple[re.Pattern[str], Callable[[_Found], None]]


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){pattern}(?![\w-])", re.I)


def _set(attr: str, value: bool | int | str) -> Callable[[_Found], None]:
    def apply(found: _Found) -> None:
        getattr(found, attr).append(value)

    return apply


# Ordered: an earlier rule consumes its words, so "not done" is never also read as "done",
# and "half done" never as "done".
_RULES: list[_Rule] = [
    # -- help
    (_rx(rf"(?:no|without|{_NEG} (?:need|needs|require|requires)(?: any)?) (?:help|support)"
         r"(?: (?:is |are )?(?:needed|required))?"), _set("needs_help", False)),
    (_rx(r"(?:(?:don't|do not|doesn't|does not) need(?: any)? (?:help|support))"),
     _set("needs_help", False)),
    (_rx(r"(?:помощь|поддержка) не (?:нужна|требуется)|без помощи|помощь не нужна"
         r"|ничего не нужно|в помощи не нуждаюсь"), _set("needs_help", False)),
    (_rx(r"(?:need|needs|needed|require|requires|could use|would like|asking for|want)"
         r"(?: some| your| a bit of| a little| more)? (?:help|support|input|decision|approval)"
         r"|help (?:is )?(?:needed|required|wanted)"
         r"|blocked|stuck|can you help|please help|sos"), _set("needs_help", True)),
    (_rx(r"(?:нужна|нужен|нужно|требуется|необходима|нужны)(?: ваша| твоя| ваше| твое| твоё)?"
         r" (?:помощь|поддержка|решение|согласование|одобрение|доступ|ресурсы)"
         r"|помогите|помоги|застрял\w*|заблокирован\w*|без вас не|прошу помощи|нужна помощ\w*"),
     _set("needs_help", True)),
    # -- on track / behind
    (_rx(rf"{_NEG} on (?:track|schedule|plan)|off (?:track|schedule)|behind(?: schedule| plan)?"
         r"|falling behind|slipping|delayed|running late|at risk|won't make it|will not make it"
         r"|can't make it|cannot make it|not going to make it"), _set("on_track", False)),
    (_rx(r"не (?:в графике|по графику|по плану|успеваем|успеваю|успевает|укладываемся"
         r"|укладываюсь)|отста[её]м|отстаю|отстает|отстаёт|отстаем|опаздываем|опаздываю"
         r"|задерживаем|задерживается|задерживаюсь|сорв[её]м срок|срыва\w+ срок|под угрозой"
         r"|не успеем|не успею"), _set("on_track", False)),
    (_rx(r"on (?:track|schedule|plan)|ahead of schedule|going (?:well|fine|ok|to plan)"
         r"|all good|everything(?:'s| is) fine|will make it|progressing (?:well|fine)"),
     _set("on_track", True)),
    (_rx(r"в графике|по графику|по плану|успеваем|успеваю|успевает|укладываемся|укладываюсь"
         r"|идём по плану|идем по плану|всё идёт по плану|все идет по плану|всё в порядке"
         r"|все в порядке|всё хорошо|все хорошо|успеем|успею|опережаем"), _set("on_track", True)),
    # -- on time / late (acceptance)
    (_rx(rf"{_NEG} (?:on|in) time|late|overdue|missed the deadline|past the deadline"
         r"|after the deadline|a day late|days late"), _set("on_time", False)),
    (_rx(r"не в срок|не вовремя|с опозданием|опоздали|опоздал\w*|просрочен\w*|просрочил\w*"
         r"|не успели|не успел\w*|после дедлайна|сорвали срок"), _set("on_time", False)),
    (_rx(r"on time|in time|by the deadline|before the deadline|ahead of (?:time|the deadline)"
         r"|(?:was|were) punctual"), _set("on_time", True)),
    (_rx(r"в срок|вовремя|успели|к сроку|до дедлайна|раньше срока|досрочно"),
     _set("on_time", True)),
    # -- how much is done, in words
    (_rx(r"half(?:-| )?(?:done|way|finished|complete|ready)?|halfway(?: (?:done|there))?"
         r"|50/50"), _set("percents", 50)),
    (_rx(r"наполовину(?: (?:готово|сделано|выполнено))?|половин\w+(?: (?:готова|сделана|работы))?"),
     _set("percents", 50)),
    (_rx(r"(?:a|one) quarter(?: done)?|на четверть"), _set("percents", 25)),
    (_rx(r"three quarters(?: done)?|на три четверти"), _set("percents", 75)),
    (_rx(rf"{_NEG} (?:yet )?(?:done|finished|complete|completed|ready|started)(?: yet)?"
         r"|nothing (?:done|yet)|haven't (?:finished|started|done)|hasn't (?:finished|started)"),
     _set("done", False)),
    (_rx(r"не (?:готово|готов|готова|сделано|сделал\w*|выполнено|выполнил\w*|закончил\w*"
         r"|завершено|начинал\w*|начал\w*)|ещё в работе|еще в работе|в процессе"),
     _set("done", False)),
    (_rx(r"(?:to be|needs to be|need to be|remains to be|left to be) (?:done|finished|completed"
         r"|delivered|ready)|что (?:нужно|надо|осталось) сделать|нужно доделать"), lambda f: None),
    (_rx(r"(?:will|should|shall|'ll) be (?:done|finished|completed|delivered|ready)"
         r"|будет (?:готово|готов|готова|сделано|выполнено|закончено|сдано)|сдам в срок"
         r"|закончу в срок|сделаю в срок|сделаем в срок"), _set("on_track", True)),
    (_rx(r"almost (?:done|finished|ready|there)|nearly (?:done|finished|ready|there)"
         r"|почти (?:готово|готов|готова|сделано|закончил\w*|всё|все)"), _set("on_track", True)),
    (_rx(r"(?:all |it's |it is |is |we're |we are |i'm |i am )?(?:done|finished|completed"
         r"|complete|delivered|ready|accepted|shipped|closed)"), _set("done", True)),
    (_rx(r"(?:всё |все )?(?:готово|готов|готова|сделано|сделал\w*|выполнено|выполнил\w*"
         r"|закончил\w*|закончено|завершено|завершил\w*|сдано|сдал\w*|принято)"),
     _set("done", True)),
]  # fmt: skip

_QUALITY_LINE = re.compile(r"^\s*(?:\d[.)]\s*)?(?:quality|качество)\s*[:\-–—]\s*(.+)$", re.I | re.M)
_QUALITY_WORDS = [
    ("excellent", _rx(r"excellent|outstanding|superb|great|perfect|отлично\w*|превосходн\w*"
                      r"|замечательн\w*|идеальн\w*")),
    ("poor", _rx(r"poor|bad|weak|unacceptable|needs rework|плох\w*|слаб\w*|неудовлетворительн\w*"
                 r"|переделать|переделывать|на доработку")),
    ("acceptable", _rx(r"ok|okay|fine|acceptable|fair|average|satisfactory|нормальн\w*"
                       r"|приемлем\w*|удовлетворительн\w*|сойд[её]т|средн\w*")),
    ("good", _rx(r"good|solid|хорош\w*|добротн\w*|качественн\w*")),
]  # fmt: skip
_QUALITY_PHRASE = re.compile(
    r"(?:quality|качество)\s*(?:is|was|[:\-–—])?\s*(?:\w+\s+)?"
    r"(excellent|great|good|fine|ok|okay|poor|bad|acceptable"
    r"|отличное|хорошее|нормальное|плохое|приемлемое|среднее|слабое)",
    re.I,
)


def _quality(text: str) -> str | None:
    m = _QUALITY_LINE.search(text) or _QUALITY_PHRASE.search(text)
    if m is None:
        return None
    said = m.group(1).strip()
    for label, rx in _QUALITY_WORDS:
        if rx.search(said):
            return label
    return said[:200]


def _normalise(text: str) -> str:
    text = text.lower().replace("ё", "е").replace("’", "'").replace("\u00a0", " ")
    return re.sub(r"[ \t]+", " ", text)


def _percents(text: str, found: _Found) -> str:
    """Numeric percentages, consumed from ``text`` ("20% left" counts as 80% done)."""
    out = []
    last = 0
    for m in _PCT.finditer(text):
        values = [int(g) for g in m.groups() if g is not None]  # "80-90%" is two answers
        before = text[max(0, m.start() - 30) : m.start()]
        if _LEFT_AFTER.match(text[m.end() :]) or _LEFT_BEFORE.search(before):
            values = [100 - v for v in values]
        found.percents.extend(values)
        out.append(text[last : m.start()] + " " * (m.end() - m.start()))
        last = m.end()
    out.append(text[last:])
    return "".join(out)


def parse_answer(
    text: str, locale: str | None = None, *, kind: CheckpointKind | None = None
) -> FeedbackAnswer:
    """What an email reply says about the task.

    ``kind`` (when the reply answers a known prompt) raises the bar: a Dead Line answer without
    a percentage, or a Red Line answer saying neither on track/behind nor asking for help, is
    LOW confidence. ``locale`` is accepted for symmetry with the prompts; both languages are
    always read (people answer a Russian prompt in English and the other way round).
    """
    del locale
    comment = reply_text(text)
    found = _Found([], [], [], [], [], [])
    doubts: list[str] = []
    rest = _percents(_normalise(comment), found)
    for rx, apply in _RULES:
        for _ in rx.finditer(rest):
            apply(found)
        rest = rx.sub(lambda m: " " * len(m.group(0)), rest)
    quality = _quality(comment)

    percent: int | None = None
    if any(p > 100 for p in found.percents):
        doubts.append("a percentage above 100")
    elif len(set(found.percents)) > 1:
        doubts.append("more than one percentage")
    elif found.percents:
        percent = found.percents[0]
    if percent is None and not found.percents and found.done:
        if set(found.done) == {True}:
            percent = 100
        elif set(found.done) == {True, False}:
            doubts.append("both done and not done")

    def one(name: str, values: list[bool]) -> bool | None:
        if len(set(values)) > 1:
            doubts.append(f"contradicting answers on {name.replace('_', ' ')}")
            return None
        return values[0] if values else None

    on_time = one("on_time", found.on_time)
    on_track = one("on_track", found.on_track)
    help_flag = one("needs_help", found.needs_help)
    needs_help = bool(help_flag) if help_flag is not None else bool(found.needs_help)
    if kind is CheckpointKind.RED_LINE and on_track is None and on_time is not None:
        on_track = on_time  # "we'll deliver on time" at the Red Line is "on track"

    if not comment:
        doubts.append("the reply is empty")
    elif not (found.percents or found.done or found.on_time or found.on_track or found.needs_help
              or quality):  # fmt: skip
        doubts.append("no answer recognised")
    elif kind is CheckpointKind.DEAD_LINE and percent is None:
        doubts.append("no percent done")
    elif kind is CheckpointKind.RED_LINE and on_track is None and not needs_help:
        doubts.append("neither on track nor behind")

    return FeedbackAnswer(
        percent_done=percent,
        on_time=on_time,
        needs_help=needs_help,
        on_track=on_track,
        quality=quality,
        comment=comment,
        confidence=Confidence.LOW if doubts else Confidence.HIGH,
        doubts=tuple(doubts),
    )
