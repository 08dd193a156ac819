"""The manager's priorities: rules that rank every schedule change high, normal or low.

A rule matches a change by the people in it (an address or a whole domain), words in
its title or place, its categories, the calendar it is in, or the protected time it
touches (e.g. ``mon-fri 07:00-09:00``). A change takes the highest level of the rules it
matches; with none it is normal. High goes to the assistant at once (even in quiet hours
when allowed), normal is coalesced for a few seconds, low waits for the daily digest.
Pure: the caller passes the rules, the change and the manager's zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import IntEnum
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from assistant.domain.changes import Change
from assistant.domain.model import EventData

RuleKind = Literal["person", "domain", "keyword", "category", "calendar", "protected"]
RULE_KINDS: tuple[str, ...] = get_args(RuleKind)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DOMAIN = re.compile(r"^@?([a-z0-9-]+\.)+[a-z]{2,}$", re.IGNORECASE)
_BLOCK = re.compile(
    r"^\s*(?P<days>[a-z]{3}(?:\s*-\s*[a-z]{3})?(?:\s*,\s*[a-z]{3}(?:\s*-\s*[a-z]{3})?)*)"
    r"(?:\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2}))?\s*$",
    re.IGNORECASE,
)


class Level(IntEnum):
    LOW = 0
    NORMAL = 1
    HIGH = 2

    @classmethod
    def parse(cls, value: str) -> Level:
        try:
            return cls[value.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown priority {value!r} (use high, normal or low)") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Block:
    """Protected time: these weekdays (0 = Monday), from ``start`` to ``end`` local time."""

    weekdays: frozenset[int]
    start: time
    end: time  # time(0) as end means midnight (the whole rest of the day)

    def intervals(
        self, first: datetime, last: datetime, zone: ZoneInfo
    ) -> list[tuple[datetime, datetime]]:
        """The block's occurrences meeting [first, last), as aware datetimes."""
        out = []
        day = first.astimezone(zone).date() - timedelta(days=1)
        end_day = last.astimezone(zone).date() + timedelta(days=1)
        while day <= end_day:
            if day.weekday() in self.weekdays:
                s = datetime.combine(day, self.start, zone)
                e = datetime.combine(day + timedelta(days=1) if self.end == time(0) else day,
                                     self.end, zone)  # fmt: skip
                if s < last and first < e:
                    out.append((s, e))
            day += timedelta(days=1)
        return out


@dataclass(frozen=True, slots=True)
class Rule:
    kind: RuleKind
    pattern: str
    level: Level
    note: str = ""
    block: Block | None = None

    def describe(self, lang: str = "en") -> str:
        words = _WORDS.get(lang, _WORDS["en"])
        text = f"{words[self.level.label]}: {words[self.kind]} {self.pattern}"
        return f"{text} ({self.note})" if self.note else text


_WORDS = {
    "en": {"person": "with", "domain": "with anyone at", "keyword": "mentions",
           "category": "in category", "calendar": "in calendar", "protected": "touches",
           "high": "high", "normal": "normal", "low": "low"},
    "ru": {"person": "с участием", "domain": "с кем-либо из", "keyword": "упоминает",
           "category": "в категории", "calendar": "в календаре", "protected": "задевает",
           "high": "высокий", "normal": "обычный", "low": "низкий"},
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Ranked:
    level: Level
    reasons: tuple[str, ...] = ()


def make_rule(kind: str, pattern: str, level: str | Level, note: str = "") -> Rule:
    """A validated rule; ValueError says what is wrong in words a user understands."""
    if kind not in RULE_KINDS:
        raise ValueError(f"unknown rule kind {kind!r} (use one of: {', '.join(RULE_KINDS)})")
    lvl = level if isinstance(level, Level) else Level.parse(level)
    p = " ".join(pattern.split())
    if not p:
        raise ValueError("a rule needs a pattern")
    block = None
    if kind == "person":
        if not _EMAIL.match(p):
            raise ValueError(f"{p!r} is not an email address")
        p = p.lower()
    elif kind == "domain":
        if not _DOMAIN.match(p):
            raise ValueError(f"{p!r} is not a domain like example.com")
        p = p.lower().lstrip("@")
    elif kind == "protected":
        block = parse_block(p)
    return Rule(kind, p, lvl, note, block)  # type: ignore[arg-type]


def parse_block(text: str) -> Block:
    """``mon-fri 07:00-09:00``, ``sat,sun``, ``tue,thu 12:00-13:00`` → Block."""
    m = _BLOCK.match(text)
    if m is None:
        raise ValueError(
            f"{text!r} is not protected time; write e.g. 'mon-fri 07:00-09:00' or 'sat,sun'"
        )
    days: set[int] = set()
    for part in m["days"].lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValueError(f"unknown weekday in {part!r} (use mon, tue, ..., sun)")
        a, b = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    start, end = time(0), time(0)
    if m["start"]:
        start, end = _clock(m["start"]), _clock(m["end"])
        if end != time(0) and end <= start:
            raise ValueError(f"protected time must end after it starts: {text!r}")
    return Block(frozenset(days), start, end)


def _clock(value: str) -> time:
    h, _, mnt = value.partition(":")
    hour, minute = int(h), int(mnt)
    if hour == 24 and minute == 0:
        return time(0)
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise ValueError(f"{value!r} is not a time of day")
    return time(hour, minute)


def _people(event: EventData) -> set[str]:
    people = {a.email.lower() for a in event.attendees}
    if event.organizer:
        people.add(event.organizer.lower())
    return people


def _matches(rule: Rule, event: EventData, calendar: str, zone: ZoneInfo) -> bool:
    if rule.kind == "person":
        return rule.pattern in _people(event)
    if rule.kind == "domain":
        return any(p.rsplit("@", 1)[-1] == rule.pattern for p in _people(event))
    if rule.kind == "keyword":
        word = rule.pattern.casefold()
        return any(word in text.casefold() for text in (event.summary, event.location))
    if rule.kind == "category":
        return rule.pattern.casefold() in {c.casefold() for c in event.categories}
    if rule.kind == "calendar":
        return rule.pattern.casefold() == calendar.casefold()
    assert rule.block is not None
    return bool(rule.block.intervals(event.start, event.end, zone))


def rank(
    change: Change, rules: Sequence[Rule], zone: str, calendar: str = "", lang: str = "en"
) -> Ranked:
    """The change's level and the rules that gave it (both the before and after event)."""
    tz = ZoneInfo(zone)
    events = [e for e in (change.before, change.after) if e is not None]
    matched = [r for r in rules if any(_matches(r, e, calendar, tz) for e in events)]
    if not matched:
        return Ranked(Level.NORMAL)
    level = max(r.level for r in matched)
    return Ranked(level, tuple(r.describe(lang) for r in matched if r.level == level))


def rank_message(
    subject: str, people: Sequence[str], rules: Sequence[Rule], lang: str = "en"
) -> Ranked:
    """A mail message's level: people and domains by address, keywords in the subject.

    (Calendar, category and protected-time rules are about events and do not apply.)
    """
    addresses = {p.lower() for p in people}
    domains = {a.rsplit("@", 1)[-1] for a in addresses}
    matched = [
        r
        for r in rules
        if (r.kind == "person" and r.pattern in addresses)
        or (r.kind == "domain" and r.pattern in domains)
        or (r.kind == "keyword" and r.pattern.casefold() in subject.casefold())
    ]
    if not matched:
        return Ranked(Level.NORMAL)
    level = max(r.level for r in matched)
    return Ranked(level, tuple(r.describe(lang) for r in matched if r.level == level))


def describe_all(rules: Iterable[Rule]) -> list[str]:
    """The rules for the assistant, highest first."""
    return [r.describe() for r in sorted(rules, key=lambda r: (-r.level, r.kind, r.pattern))]
