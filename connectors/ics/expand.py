"""What the service reads in an ICS feed, occurrence by occurrence (``assistant ics expand``).

The feed is read as an operator's ICS account reads it: by ``connectors.ics.feed.IcsFeed``
with the operator's network policy (``connectors.netguard``: only http(s) addresses,
the response bounded by ``network.max_response_bytes`` and ``network.max_read_seconds``)
and the parse limits of the settings; every occurrence in the window and every problem
(what was left out or cut, and why) comes back. Times are shown in the window's zone:
timed values as ISO 8601 with their offset, all-day events as ISO dates (the end
exclusive), floating times as wall-clock times without an offset.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from assistant.domain.model import EventData
from connectors.base import DEFAULT_LIMITS, ParseLimits, Window
from connectors.ics.feed import IcsFeed
from connectors.ics.ical_event import floating_keys, zoneinfo_for
from connectors.netguard import NetPolicy, operator_policy

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_FEED_SCHEMES = ("http://", "https://", "webcal://")


@dataclass(frozen=True, slots=True)
class Occurrence:
    uid: str
    recurrence_id: str
    start: str
    end: str
    kind: str  # "timed", "all-day" or "floating"
    summary: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Expansion:
    source: str
    occurrences: tuple[Occurrence, ...]
    problems: tuple[str, ...]


def expand(
    location: str,
    start: datetime,
    end: datetime,
    zone: str = "UTC",
    *,
    policy: NetPolicy | None = None,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> Expansion:
    """Every occurrence of the feed at ``location`` (a file or URL) in [start, end)."""
    policy = (policy or operator_policy()).as_operator()
    if _SCHEME.match(location) and not location.lower().startswith(_FEED_SCHEMES):
        policy.check_url(location)  # refuses file://, ftp:// … as an account would
    tz = zoneinfo_for(zone)
    feed = IcsFeed(location, policy=policy, limits=limits)
    with floating_keys() as floating:
        delta = feed.changes(None, Window(start, end, zone))
    events = sorted(
        (e for r in delta.resources for e in r.events),
        key=lambda e: (e.start, e.end, e.uid, e.recurrence_id),
    )
    shown = tuple(_occurrence(e, tz, e.key in floating) for e in events)
    problems = (*delta.skipped, *(n for r in delta.resources for n in r.notes))
    return Expansion(feed.label(), shown, problems)


def _occurrence(event: EventData, tz: Any, floating: bool) -> Occurrence:
    if event.all_day and event.start_date is not None and event.end_date is not None:
        start, end, kind = event.start_date.isoformat(), event.end_date.isoformat(), "all-day"
    elif floating:
        start = event.start.astimezone(tz).replace(tzinfo=None).isoformat()
        end = event.end.astimezone(tz).replace(tzinfo=None).isoformat()
        kind = "floating"
    else:
        start, end = event.start.astimezone(tz).isoformat(), event.end.astimezone(tz).isoformat()
        kind = "timed"
    return Occurrence(event.uid, event.recurrence_id, start, end, kind, event.summary)
