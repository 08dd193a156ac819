"""Small server-rendered SVG charts (no JavaScript, no plotting library).

``trend_svg`` draws the weekly median reply time as bars against the SLA line; the
same markup serves the CLI's ``--chart`` file and the web app's latency page.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any


def trend_svg(
    weeks: Sequence[dict[str, Any]],
    sla_minutes: float,
    *,
    title: str = "Median reply time per week",
    unit: str = "min",
    width: int = 640,
    height: int = 240,
) -> str:
    """Bars: each week's median minutes (grey when no answer); a red dashed SLA line."""
    left, right, top, bottom = 48, 12, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [w.get("median_minutes") for w in weeks]
    peak = max([v for v in values if v is not None] + [sla_minutes]) * 1.15 or 1.0

    def y(v: float) -> float:
        return top + plot_h - (v / peak) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" '
        'font-family="system-ui, sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="16" font-size="13" font-weight="600">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#888"/>',
    ]
    for tick in (0.0, peak / 2, peak):
        parts.append(
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" fill="#555">'
            f"{tick:.0f}</text>"
        )
    n = max(1, len(weeks))
    slot = plot_w / n
    bar = max(2.0, slot * 0.6)
    for i, w in enumerate(weeks):
        x = left + i * slot + (slot - bar) / 2
        v = w.get("median_minutes")
        label = escape(str(w.get("week", "")))
        if v is None:
            parts.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - 3}" width="{bar:.1f}" height="3" '
                f'fill="#ccc"><title>{label}: no answers</title></rect>'
            )
        else:
            colour = "#2b7a3d" if v <= sla_minutes else "#c0392b"
            parts.append(
                f'<rect x="{x:.1f}" y="{y(v):.1f}" width="{bar:.1f}" '
                f'height="{top + plot_h - y(v):.1f}" fill="{colour}">'
                f"<title>{label}: median {v:.0f} {escape(unit)}, "
                f"{w.get('answered', 0)} of {w.get('count', 0)} answered</title></rect>"
            )
        if n <= 16 or i % max(1, n // 8) == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 14}" text-anchor="middle" '
                f'fill="#555">{label[5:]}</text>'
            )
    parts.append(
        f'<line x1="{left}" y1="{y(sla_minutes):.1f}" x2="{left + plot_w}" '
        f'y2="{y(sla_minutes):.1f}" stroke="#c0392b" stroke-dasharray="4 3"/>'
    )
    parts.append(
        f'<text x="{left + plot_w}" y="{y(sla_minutes) - 4:.1f}" text-anchor="end" '
        f'fill="#c0392b">SLA {sla_minutes:.0f} {escape(unit)}</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
