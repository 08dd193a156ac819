"""Small iCalendar feeds written to a file, for tests that sync an ICS account."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path


def vevent(uid: str, start: datetime, summary: str) -> str:
    """A one-hour UTC VEVENT."""
    end = start + timedelta(hours=1)
    return (
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20261101T000000Z\r\n"
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}\r\nDTEND:{end:%Y%m%dT%H%M%SZ}\r\n"
        f"SUMMARY:{summary}\r\nEND:VEVENT\r\n"
    )


def write_feed(path: Path, *events: str) -> None:
    """A VCALENDAR holding ``events`` at ``path``."""
    path.write_text("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n" + "".join(events)
                    + "END:VCALENDAR\r\n")  # fmt: skip
