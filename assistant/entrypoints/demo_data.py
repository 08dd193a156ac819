"""The demo's data and clock: the sample week and mail of ``examples/``, moved into the
week the demo is run in, and the story's clock (see ``assistant.entrypoints.demo``)."""

from __future__ import annotations

import time
import tomllib
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar

ZONE = "Europe/Berlin"
MANAGER = ("Alex Morgan", "alex.morgan@example.com")
ASSISTANT = ("Sam Lee", "sam.lee@example.com")
SAMPLE_MONDAY = date(2026, 1, 5)
STORY_START = dtime(8)  # the story begins on the week's Monday at this local time


def examples_dir() -> Path:
    """``examples/`` beside the package (a source checkout) or shipped inside it."""
    here = Path(__file__).resolve().parents[2] / "examples"
    if here.is_dir():
        return here
    return Path(str(resources.files("assistant") / "examples"))


def week_monday(today: date) -> date:
    """The Monday of ``today``'s week (a Sunday belongs to the week before it)."""
    return today - timedelta(days=today.weekday())


class StoryClock:
    """The demo's clock: ``start`` plus the real time elapsed since the demo began."""

    def __init__(self, start: datetime) -> None:
        self.start = start.astimezone(UTC)
        self.t0 = time.monotonic()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.t0)


def shifted_week(text: str, target_monday: date) -> list[tuple[str, str]]:
    """The sample week moved to ``target_monday``, one (uid, iCalendar) per event."""
    weeks = (target_monday - SAMPLE_MONDAY).days // 7
    delta = timedelta(weeks=weeks)
    cal = icalendar.Calendar.from_ical(text)
    out = []
    for event in cal.walk("VEVENT"):
        for key in ("DTSTART", "DTEND"):
            if key in event:
                prop: Any = event[key]
                value = prop.dt + delta
                params = dict(prop.params)
                del event[key]
                event.add(key, value)
                for pk, pv in params.items():
                    if pk != "VALUE":
                        event[key].params[pk] = pv
        single = icalendar.Calendar()
        single.add("PRODID", "-//exec-assistant//demo//EN")
        single.add("VERSION", "2.0")
        single.add_component(event)
        single.add_missing_timezones()
        out.append((str(event["UID"]), single.to_ical().decode()))
    return out


def write_sample_maildir(folder: Path, monday: date) -> int:
    """The messages of ``examples/messages.toml`` as a Maildir, in the week of ``monday``."""
    import mailbox

    spec = tomllib.loads((examples_dir() / "messages.toml").read_text())
    people = {
        "manager": (MANAGER[0], spec["manager"]),
        "assistant": (ASSISTANT[0], spec["assistant"]),
    }
    base = datetime.combine(monday, dtime(9), ZoneInfo(ZONE))
    box = mailbox.Maildir(str(folder), create=True)
    ids: dict[str, str] = {}
    for m in spec["message"]:
        sender = people[m["from"]]
        receiver = people["assistant" if m["from"] == "manager" else "manager"]
        msg = EmailMessage()
        msg["From"] = f"{sender[0]} <{sender[1]}>"
        msg["To"] = f"{receiver[0]} <{receiver[1]}>"
        msg["Subject"] = m["subject"]
        msg["Date"] = format_datetime(base + timedelta(minutes=m["at"]))
        ids[m["id"]] = make_msgid(domain="example.com")
        msg["Message-ID"] = ids[m["id"]]
        if "reply_to" in m:
            msg["In-Reply-To"] = ids[m["reply_to"]]
            msg["References"] = ids[m["reply_to"]]
        msg.set_content(f"{m['subject']}\n")
        box.add(msg)
    return len(spec["message"])
