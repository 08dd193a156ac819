"""The SVG charts people read: axes, values, the SLA line, dates, full titles, both languages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

from assistant.domain.charts import TimelineTask, timeline_svg, trend_svg

WEEKS = [
    {"week": "2026-11-23", "median_minutes": 42.0, "answered": 5, "count": 6},
    {"week": "2026-11-30", "median_minutes": None, "answered": 0, "count": 1},
    {"week": "2026-12-07", "median_minutes": 18.0, "answered": 3},
]
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
TASKS = [
    TimelineTask("Prepare the board pack for the December meeting with the auditors' notes",
                 NOW, NOW + timedelta(days=6), NOW + timedelta(days=3), NOW + timedelta(days=6)),
    TimelineTask("Book <Vienna> & hotel", NOW + timedelta(days=1), NOW + timedelta(days=3)),
]  # fmt: skip


def texts(svg: str) -> list[str]:
    """Every text node a reader sees (tooltips included), parsed as XML (it must be)."""
    root = ElementTree.fromstring(svg)
    return ["".join(e.itertext()).strip() for e in root.iter() if e.tag.endswith(("text", "title"))]


def test_the_trend_has_a_value_axis_dates_values_and_the_sla_line() -> None:
    svg = trend_svg(WEEKS, 30, locale="en")
    seen = texts(svg)
    assert {"0", "24", "48"} <= set(seen)  # the axis: 0, half and the top (42 x 1.15)
    assert "SLA 30 min" in seen
    assert {"23 Nov", "30 Nov", "7 Dec"} <= set(seen)  # each week by its Monday
    assert {"42", "18"} <= set(seen)  # the values on the bars
    assert "week of Mon 23 Nov: median 42 min, 5 of 6 answered" in seen
    assert "week of Mon 7 Dec: median 18 min, 3 answered" in seen
    assert "week of Mon 30 Nov: no answers" in seen
    assert 'stroke-dasharray="4 3"' in svg  # the SLA line itself


def test_the_russian_trend_has_no_english_word() -> None:
    seen = texts(trend_svg(WEEKS, 30, locale="ru"))
    assert "SLA 30 мин" in seen and "7 дек" in seen
    assert "неделя с пн 23 ноября: медиана 42 мин, отвечено 5 из 6" in seen
    english = [t for t in seen if re.search(r"\b(week|median|answered|no answers|min)\b", t)]
    assert english == []


def test_the_timeline_has_a_date_axis_full_titles_and_both_lines() -> None:
    svg = timeline_svg(TASKS, "Europe/Berlin", locale="en", today=NOW)
    seen = texts(svg)
    assert {"7 Dec", "8 Dec", "13 Dec"} <= set(seen)  # a date axis over the terms
    title = TASKS[0].title
    assert title in seen  # in full as the row's tooltip
    root = ElementTree.fromstring(svg)
    drawn = ["".join(e.itertext()) for e in root.iter() if e.tag.endswith("text")]
    at = drawn.index("Prepare the board pack for the")  # wrapped on two lines, not cut at 24
    assert drawn[at + 1] == "December meeting with the…"
    assert "Red Line: Thu 10 Dec 10:00" in seen and "Dead Line: Sun 13 Dec 10:00" in seen
    assert "Book <Vienna> & hotel" in seen  # escaped in the markup, read back whole
    assert "<Vienna>" not in svg
    assert "today" in seen


def test_the_russian_timeline_names_the_lines_in_russian() -> None:
    seen = texts(timeline_svg(TASKS, "Europe/Berlin", locale="ru", today=NOW))
    assert "Красная линия: чт 10 декабря 10:00" in seen
    assert "Мёртвая линия: вс 13 декабря 10:00" in seen
    assert not [t for t in seen if re.search(r"\b(Red Line|Dead Line|today|term)\b", t)]


def test_no_task_no_timeline() -> None:
    assert timeline_svg([], "UTC") == ""
