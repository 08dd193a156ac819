"""Small server-rendered SVG charts (no JavaScript, no library)."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any


def trend_svg(trend: list[dict[str, Any]], sla: float, width: int = 640, height: int = 180) -> str:
    """Bars: median working minutes per week; a dashed line at the SLA."""
    pad_l, pad_b, pad_t = 40, 28, 10
    values = [w["median_working_minutes"] for w in trend]
    top = max([v for v in values if v is not None] + [sla]) * 1.15 or 1.0
    inner_h = height - pad_b - pad_t
    step = (width - pad_l) / max(1, len(trend))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" '
        f'class="chart" aria-label="weekly median reply time">'
    ]
    y_sla = pad_t + inner_h * (1 - sla / top)
    parts.append(
        f'<line x1="{pad_l}" x2="{width}" y1="{y_sla:.1f}" y2="{y_sla:.1f}" '
        'stroke="#c0392b" stroke-dasharray="4 3"/>'
    )
    parts.append(f'<text x="2" y="{y_sla + 4:.1f}" font-size="10">SLA {sla:g}</text>')
    for i, (week, value) in enumerate(zip(trend, values, strict=True)):
        x = pad_l + i * step + step * 0.15
        label = escape(str(week["week"])[5:])
        if value is not None:
            h = inner_h * value / top
            colour = "#27ae60" if value <= sla else "#e67e22"
            parts.append(
                f'<rect x="{x:.1f}" y="{pad_t + inner_h - h:.1f}" width="{step * 0.7:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{label}: {value:g} min, '
                f"{week['answered']} answered</title></rect>"
            )
        parts.append(f'<text x="{x:.1f}" y="{height - 10}" font-size="10">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(tasks: list[dict[str, Any]], width: int = 640, row: int = 26) -> str:
    """One row per open task: its term as a bar, the Red Line and Dead Line as marks."""
    shown = [t for t in tasks if t["state"] not in ("cancelled",)]
    if not shown:
        return ""

    def at(text: str | None) -> float | None:
        return datetime.fromisoformat(text).timestamp() if text else None

    lo = min(at(t["term_start"]) or 0 for t in shown)
    hi = max(at(t["deadline"]) or 0 for t in shown)
    span = max(hi - lo, 1.0)
    pad_l = 160
    height = row * len(shown) + 6

    def x(ts: float) -> float:
        return pad_l + (width - pad_l - 10) * (ts - lo) / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        'class="chart" role="img" aria-label="task timeline">'
    ]
    for i, t in enumerate(shown):
        y = i * row + 4
        start, end = at(t["term_start"]) or lo, at(t["deadline"]) or hi
        parts.append(f'<text x="2" y="{y + 14}" font-size="11">{escape(t["title"][:24])}</text>')
        parts.append(
            f'<rect x="{x(start):.1f}" y="{y + 6}" width="{max(2.0, x(end) - x(start)):.1f}" '
            'height="8" fill="#d6e4f0"/>'
        )
        for c in t["checkpoints"]:
            when = at(c["start"] or c["line_at"])
            if when is None:
                continue
            colour = "#c0392b" if c["kind"] == "red_line" else "#222"
            parts.append(
                f'<rect x="{x(when) - 2:.1f}" y="{y + 2}" width="4" height="16" '
                f'fill="{colour}"><title>{escape(c["label"])}: '
                f"{escape(c['start'] or c['line_at'] or '')}</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)
