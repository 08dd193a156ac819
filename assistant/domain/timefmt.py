"""Human time formatting in English and Russian, with no locale database needed."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

_WEEKDAYS = {
    "en": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
    "ru": ["пн", "вт", "ср", "чт", "пт", "сб", "вс"],
}
_MONTHS = {
    "en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
    "ru": [
        "января", "февраля", "марта", "апреля", "мая", "июня",
        "июля", "августа", "сентября", "октября", "ноября", "декабря",
    ],
}  # fmt: skip


def lang(locale: str) -> str:
    return "ru" if locale.lower().startswith("ru") else "en"


def weekday_name(index: int, locale: str) -> str:
    """The short name of weekday ``index`` (0 is Monday): "Tue", "вт"."""
    return _WEEKDAYS[lang(locale)][index]


def day(d: date, locale: str) -> str:
    lg = lang(locale)
    return f"{_WEEKDAYS[lg][d.weekday()]} {d.day} {_MONTHS[lg][d.month - 1]}"


def span(start: datetime, end: datetime, zone: str, locale: str) -> str:
    """``Tue 26 Nov 10:00–11:00`` in ``zone`` (dates repeated when the span crosses days)."""
    tz = ZoneInfo(zone or "UTC")
    s, e = start.astimezone(tz), end.astimezone(tz)
    if s.date() == e.date():
        return f"{day(s.date(), locale)} {s:%H:%M}–{e:%H:%M}"
    return f"{day(s.date(), locale)} {s:%H:%M} – {day(e.date(), locale)} {e:%H:%M}"


def date_span(start: date, end_exclusive: date, locale: str) -> str:
    from datetime import timedelta

    last = end_exclusive - timedelta(days=1)
    all_day = "весь день" if lang(locale) == "ru" else "all day"
    if last <= start:
        return f"{day(start, locale)}, {all_day}"
    return f"{day(start, locale)} – {day(last, locale)}, {all_day}"


def zone_label(zone: str) -> str:
    return zone.split("/")[-1].replace("_", " ") if zone else "UTC"
