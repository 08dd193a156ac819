"""A pair's working time: weekly hours, time zone and public holidays.

The pair's ``working_hours`` holds the week (``{"mon": [["09:00", "18:00"]], ...}``) and,
optionally, ``"holidays": {"country": "DE", "subdivision": "BE"}``; the holidays come from
the ``holidays`` package for the years asked about.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from functools import lru_cache
from typing import Any

import holidays as holidays_lib

from assistant.domain.worktime import WorkingHours
from assistant.store.tables import Pair

HOLIDAYS_KEY = "holidays"


@lru_cache(maxsize=256)
def public_holidays(country: str, subdivision: str, years: tuple[int, ...]) -> frozenset[date]:
    try:
        found = holidays_lib.country_holidays(country, subdiv=subdivision or None, years=years)
    except NotImplementedError:
        raise ValueError(f"no public holidays known for country {country!r}") from None
    return frozenset(found.keys())


def holiday_setting(cfg: Mapping[str, Any]) -> tuple[str, str]:
    value = cfg.get(HOLIDAYS_KEY) or {}
    if isinstance(value, str):
        return value.upper(), ""
    return str(value.get("country", "")).upper(), str(value.get("subdivision", ""))


def hours_for(
    working_hours: Mapping[str, Any], zone: str, years: range | tuple[int, ...] = ()
) -> WorkingHours:
    week = {k: v for k, v in working_hours.items() if k != HOLIDAYS_KEY}
    country, subdivision = holiday_setting(working_hours)
    days: frozenset[date] = frozenset()
    if country and years:
        days = public_holidays(country, subdivision, tuple(years))
    return WorkingHours.from_config(week, zone, days)


def pair_hours(pair: Pair, first_year: int, last_year: int) -> WorkingHours:
    return hours_for(pair.working_hours, pair.timezone, range(first_year, last_year + 1))
