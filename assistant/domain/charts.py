"""Small server-rendered SVG charts (no JavaScript, no plotting library), in English or
Russian.

``trend_svg`` draws the weekly median reply time as bars against the SLA line, with a
value axis and the weeks' dates; the same markup serves the CLI's ``--chart`` file and the
web app's latency page. ``timeline_svg`` draws delegated tasks on a date axis: each term
as a bar, its Red Line and Dead Line as marks, the title in full (wrapped) beside it.
Every value shown is escaped; the SVG scales to its container (``viewBox``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from assistant.domain.timefmt import day, lang

WORDS = {
    "en": {
        "trend_title": "Median reply time per week",
        "min": "min",
        "no_answers": "no answers",
        "median": "median",
        "answered_of": "{answered} of {count} answered",
        "answered": "{answered} answered",
        "week_of": "week of {day}",
        "sla": "SLA {minutes} {unit}",
        "timeline_title": "Delegated tasks",
        "red_line": "Red Line",
        "dead_line": "Dead Line",
        "term": "term",
        "today": "today",
    },
    "ru": {
        "trend_title": "Медиана времени ответа по неделям",
        "min": "мин",
        "no_answers": "ответов нет",
        "median": "медиана",
        "answered_of": "отвечено {answered} из {count}",
        "answered": "отвечено: {answered}",
        "week_of": "неделя с {day}",
        "sla": "SLA {minutes} {unit}",
        "timeline_title": "Делегированные задачи",
        "red_line": "Красная линия",
        "dead_line": "Мёртвая линия",
        "term": "срок",
        "today": "сегодня",
    },
}


def words(locale: str) -> dict[str, str]:
    return WORDS[lang(locale)]


def _short_day(d: date, locale: str) -> str:
    """``7 Dec`` / ``7 дек``: a tick label."""
    _, number, month = day(d, locale).split(" ")[:3]
    return f"{number} {month[:3]}"


def trend_svg(
    weeks: Sequence[dict[str, Any]],
    sla_minutes: float,
    *,
    locale: str = "en",
    title: str | None = None,
    unit: str | None = None,
    width: int = 640,
    height: int = 240,
) -> str:
    """Bars: each week's median minutes (grey when no answer); a red dashed SLA line.

    ``weeks``: ``{"week": ISO date of its Monday, "median_minutes", "answered", "count"}``.
    """
    w = words(locale)
    title = title or w["trend_title"]
    unit = unit or w["min"]
    left, right, top, bottom = 48, 12, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [wk.get("median_minutes") for wk in weeks]
    peak = max([v for v in values if v is not None] + [sla_minutes]) * 1.15 or 1.0

    def y(v: float) -> float:
        return top + plot_h - (v / peak) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" '
        'class="chart" font-family="system-ui, sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="16" font-size="13" font-weight="600">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#888"/>',
        f'<text x="4" y="{top - 6}" fill="#555">{escape(unit)}</text>',
    ]
    for tick in (0.0, peak / 2, peak):
        parts.append(
            f'<line x1="{left - 3}" y1="{y(tick):.1f}" x2="{left + plot_w}" y2="{y(tick):.1f}" '
            'stroke="#eee"/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" fill="#555">'
            f"{tick:.0f}</text>"
        )
    n = max(1, len(weeks))
    slot = plot_w / n
    bar = max(2.0, slot * 0.6)
    for i, wk in enumerate(weeks):
        x = left + i * slot + (slot - bar) / 2
        v = wk.get("median_minutes")
        monday = _as_date(wk.get("week"))
        label = escape(w["week_of"].format(day=day(monday, locale)) if monday else "")
        if v is None:
            parts.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - 3}" width="{bar:.1f}" height="3" '
                f'fill="#ccc"><title>{label}: {escape(w["no_answers"])}</title></rect>'
            )
        else:
            colour = "#2b7a3d" if v <= sla_minutes else "#c0392b"
            answered = wk.get("answered", 0)
            counts = (
                w["answered_of"].format(answered=answered, count=wk["count"])
                if "count" in wk
                else w["answered"].format(answered=answered)
            )
            parts.append(
                f'<rect x="{x:.1f}" y="{y(v):.1f}" width="{bar:.1f}" '
                f'height="{top + plot_h - y(v):.1f}" fill="{colour}">'
                f"<title>{label}: {escape(w['median'])} {v:.0f} {escape(unit)}, "
                f"{escape(counts)}</title></rect>"
            )
            if n <= 16:  # the value on the bar
                parts.append(
                    f'<text x="{x + bar / 2:.1f}" y="{y(v) - 3:.1f}" text-anchor="middle" '
                    f'font-size="10" fill="#333">{v:.0f}</text>'
                )
        if monday and (n <= 8 or i % max(1, n // 6) == 0):
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 14}" text-anchor="middle" '
                f'fill="#555">{escape(_short_day(monday, locale))}</text>'
            )
    sla = escape(w["sla"].format(minutes=f"{sla_minutes:.0f}", unit=unit))
    parts.append(
        f'<line x1="{left}" y1="{y(sla_minutes):.1f}" x2="{left + plot_w}" '
        f'y2="{y(sla_minutes):.1f}" stroke="#c0392b" stroke-dasharray="4 3"/>'
    )
    parts.append(
        f'<text x="{left + plot_w}" y="{y(sla_minutes) - 4:.1f}" text-anchor="end" '
        f'fill="#c0392b">{sla}</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _as_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class TimelineTask:
    """One row of the task timeline."""

    title: str
    term_start: datetime
    deadline: datetime
    red_line: datetime | None = None
    dead_line: datetime | None = None


def _wrap(text: str, width: int, lines: int) -> list[str]:
    """``text`` in at most ``lines`` lines of ``width`` characters (the last one cut
    with "…" only when the whole does not fit; the full title is the row's tooltip)."""
    out: list[str] = []
    rest = text.split()
    while rest and len(out) < lines:
        line = rest.pop(0)
        while rest and len(line) + 1 + len(rest[0]) <= width:
            line += " " + rest.pop(0)
        out.append(line[:width])
    if rest and out:
        out[-1] = out[-1][: width - 1].rstrip() + "…"
    return out or [""]


def timeline_svg(
    tasks: Sequence[TimelineTask],
    zone: str,
    *,
    locale: str = "en",
    today: datetime | None = None,
    width: int = 720,
    row: int = 34,
) -> str:
    """Each task's term as a bar from its start to its deadline, the Red Line (red) and
    Dead Line (black) as marks, dates along the bottom in ``zone``; "" for no task."""
    if not tasks:
        return ""
    w = words(locale)
    tz = ZoneInfo(zone or "UTC")
    lo = min(t.term_start for t in tasks)
    hi = max(t.deadline for t in tasks)
    if today is not None:
        lo, hi = min(lo, today), max(hi, today)
    # whole days in the pair's zone: every date on the axis starts a day
    lo = datetime.combine(lo.astimezone(tz).date(), datetime.min.time(), tz)
    hi = datetime.combine(hi.astimezone(tz).date() + timedelta(days=1), datetime.min.time(), tz)
    span = max((hi - lo).total_seconds(), 3600.0)
    left, right, top, axis = 200, 16, 26, 30
    height = top + row * len(tasks) + axis
    plot_w = width - left - right

    def x(t: datetime) -> float:
        return left + plot_w * (t - lo).total_seconds() / span

    title = escape(w["timeline_title"])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" class="chart" role="img" aria-label="{title}" '
        'font-family="system-ui, sans-serif" font-size="11">',
        f"<title>{title}</title>",
        f'<text x="4" y="16" font-size="13" font-weight="600">{title}</text>',
    ]
    first, last = lo.astimezone(tz).date(), hi.astimezone(tz).date()
    days = (last - first).days + 1
    step = max(1, -(-days // 8))  # at most about 8 date labels
    bottom = top + row * len(tasks)
    for n in range(0, days, step):
        d = first + timedelta(days=n)
        px = x(datetime.combine(d, datetime.min.time(), tz))
        if px > left + plot_w - 36:  # no room for its label before the edge
            continue
        parts.append(
            f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{bottom}" stroke="#eee"/>'
            f'<text x="{px:.1f}" y="{bottom + 16}" text-anchor="start" fill="#555">'
            f"{escape(_short_day(d, locale))}</text>"
        )
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{left + plot_w}" y2="{bottom}" '
                 'stroke="#888"/>')  # fmt: skip
    if today is not None:
        parts.append(
            f'<line x1="{x(today):.1f}" y1="{top}" x2="{x(today):.1f}" y2="{bottom}" '
            f'stroke="#2b6cb0" stroke-dasharray="3 3"><title>{escape(w["today"])}</title></line>'
        )
    for i, t in enumerate(tasks):
        y = top + i * row
        full = escape(t.title)
        lines = _wrap(t.title, 30, 2)
        parts.append(f"<g><title>{full}</title>")  # the whole title on hover, whatever fits
        for k, line in enumerate(lines):
            dy = 14 + k * 13 if len(lines) > 1 else 20
            parts.append(f'<text x="4" y="{y + dy}">{escape(line)}</text>')
        term = f"{w['term']}: {day(t.term_start.astimezone(tz).date(), locale)} – " + day(
            t.deadline.astimezone(tz).date(), locale
        )
        parts.append(
            f'<rect x="{x(t.term_start):.1f}" y="{y + 12}" '
            f'width="{max(2.0, x(t.deadline) - x(t.term_start)):.1f}" height="10" rx="2" '
            f'fill="#d6e4f0"><title>{full} — {escape(term)}</title></rect>'
        )
        for when, colour, name in ((t.red_line, "#c0392b", w["red_line"]),
                                   (t.dead_line, "#222", w["dead_line"])):  # fmt: skip
            if when is None:
                continue
            local = when.astimezone(tz)
            label = f"{name}: {day(local.date(), locale)} {local:%H:%M}"
            parts.append(
                f'<rect x="{x(when) - 2:.1f}" y="{y + 6}" width="4" height="22" '
                f'fill="{colour}"><title>{escape(label)}</title></rect>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
