"""A pair's settings (working hours, zones, SLA, quiet hours, digest, channels, locale)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from assistant.services.hours import HOLIDAYS_KEY, holiday_setting, hours_for, public_holidays
from assistant.services.pairs import NotFoundError, check_zone
from assistant.store.tables import Pair

if TYPE_CHECKING:
    from assistant.services.deps import Deps

CHANNELS = ("smtp", "webhook", "chat")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
FIELDS = (
    "timezone",
    "assistant_timezone",
    "working_hours",
    "sla_minutes",
    "quiet_hours",
    "digest_time",
    "notify_channels",
    "locale",
    "share_private_details",
    "holidays_country",  # kept inside working_hours["holidays"]
)


@dataclass(frozen=True, slots=True)
class PairSettings:
    """A pair's settings as the settings page and the API show them (``FIELDS`` and the
    pair's name; the holidays' country out of ``working_hours``)."""

    timezone: str
    assistant_timezone: str
    working_hours: dict[str, Any] = field(hash=False)
    sla_minutes: int
    quiet_hours: dict[str, Any] = field(hash=False)
    digest_time: str
    notify_channels: list[str] = field(hash=False)
    locale: str
    share_private_details: bool
    name: str
    holidays_country: str

    def to_json(self) -> dict[str, Any]:
        """The API's (and the page's) JSON object, keys as before the view was typed."""
        return asdict(self)


def pair_settings(deps: Deps, pair_id: int) -> PairSettings:
    with deps.uow.read() as session:
        pair = session.get(Pair, pair_id)
        if pair is None:
            raise NotFoundError(f"no pair {pair_id}")
        country, _ = holiday_setting(pair.working_hours)
        return PairSettings(
            timezone=pair.timezone,
            assistant_timezone=pair.assistant_timezone,
            working_hours=pair.working_hours,
            sla_minutes=pair.sla_minutes,
            quiet_hours=pair.quiet_hours,
            digest_time=pair.digest_time,
            notify_channels=list(pair.notify_channels),
            locale=pair.locale,
            share_private_details=pair.share_private_details,
            name=pair.name,
            holidays_country=country,
        )


def _clock(value: Any, what: str) -> str:
    text = str(value or "").strip()
    if text and not _CLOCK.match(text):
        raise ValueError(f"{what} must be a time like 08:00")
    return text


def validate(changes: dict[str, Any], current_zone: str) -> dict[str, Any]:
    """Checked values ready to store; ValueError names the first wrong field."""
    out: dict[str, Any] = {}
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    if "timezone" in changes:
        out["timezone"] = check_zone(str(changes["timezone"]).strip())
    if "assistant_timezone" in changes:
        zone = str(changes["assistant_timezone"] or "").strip()
        out["assistant_timezone"] = check_zone(zone) if zone else ""
    if "working_hours" in changes:
        hours = changes["working_hours"]
        if not isinstance(hours, dict):
            raise ValueError("working hours must map days to ranges")
        hours_for(hours, out.get("timezone", current_zone))  # validates (holidays aside)
        out["working_hours"] = hours
    if "holidays_country" in changes:
        country = str(changes["holidays_country"] or "").strip().upper()
        if country:
            public_holidays(country, "", (2026,))  # ValueError names an unknown country
        out["holidays_country"] = country
    if "sla_minutes" in changes:
        sla = _whole_minutes(changes["sla_minutes"])
        if not 0 < sla <= 10080:
            raise ValueError("the SLA must be between 1 and 10080 minutes")
        out["sla_minutes"] = sla
    if "quiet_hours" in changes:
        q = changes["quiet_hours"] or {}
        if not isinstance(q, dict):
            raise ValueError("quiet hours must be {start, end, high_breaks_through}")
        start, end = (
            _clock(q.get("start"), "quiet hours start"),
            _clock(q.get("end"), "quiet hours end"),
        )
        if bool(start) != bool(end):
            raise ValueError("quiet hours need both a start and an end")
        out["quiet_hours"] = (
            {"start": start, "end": end, "high_breaks_through": bool(q.get("high_breaks_through"))}
            if start
            else {}
        )
    if "digest_time" in changes:
        out["digest_time"] = _clock(changes["digest_time"], "the digest time")
    if "notify_channels" in changes:
        channels = list(changes["notify_channels"] or [])
        bad = [c for c in channels if c not in CHANNELS]
        if bad or not channels:
            raise ValueError(f"channels are one or more of {', '.join(CHANNELS)}")
        out["notify_channels"] = channels
    if "locale" in changes:
        if changes["locale"] not in ("en", "ru"):
            raise ValueError("locale must be en or ru")
        out["locale"] = changes["locale"]
    if "share_private_details" in changes:
        out["share_private_details"] = bool(changes["share_private_details"])
    return out


def update_pair_settings(deps: Deps, pair_id: int, changes: dict[str, Any]) -> PairSettings:
    """Validate and store; returns the settings after the change."""
    with deps.uow.begin() as session:
        pair = session.get(Pair, pair_id)
        if pair is None:
            raise NotFoundError(f"no pair {pair_id}")
        valid = validate(changes, pair.timezone)
        country = valid.pop("holidays_country", None)
        hours = dict(valid.pop("working_hours", pair.working_hours))
        old = pair.working_hours.get(HOLIDAYS_KEY)
        if country is not None:
            hours.pop(HOLIDAYS_KEY, None)
            if country:
                hours[HOLIDAYS_KEY] = {"country": country}
        elif old is not None and HOLIDAYS_KEY not in hours:
            hours[HOLIDAYS_KEY] = old  # a form that only edits the week keeps the holidays
        valid["working_hours"] = hours
        for name, value in valid.items():
            setattr(pair, name, value)
    return pair_settings(deps, pair_id)


def parse_hours(text_by_day: dict[str, str]) -> dict[str, Any]:
    """Form fields ("09:00-13:00, 14:00-18:00" per day; empty = day off) → config."""
    hours: dict[str, Any] = {}
    for day in DAYS:
        text = (text_by_day.get(day) or "").strip()
        if not text:
            continue
        ranges = []
        for part in text.split(","):
            bits = [b.strip() for b in part.split("-")]
            if len(bits) != 2:
                raise ValueError(f"{day}: write ranges like 09:00-18:00")
            ranges.append([_clock(bits[0], day), _clock(bits[1], day)])
        hours[day] = ranges
    return hours


def format_hours(hours: dict[str, Any]) -> dict[str, str]:
    return {day: ", ".join(f"{a}-{b}" for a, b in hours.get(day, [])) for day in DAYS}


def _whole_minutes(value: object) -> int:
    """A whole number of minutes from JSON (an integer) or a form ("45"); never a bool,
    a fraction or a float that only looks whole."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    raise ValueError("the SLA must be a whole number of minutes")
