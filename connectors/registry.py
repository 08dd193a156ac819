"""Opening a connector for an account row's provider and settings.

Account settings hold connection details; secrets in them are references
(``{"env": NAME}``, ``{"file": PATH}``, ``{"command": CMD}``) resolved here, at the
moment of connecting, and never stored or logged in clear.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from config.settings import SecretRef
from connectors.base import CalendarSource, CalendarWriter, MailSource

CALENDAR_PROVIDERS = ("ics", "caldav")
MAIL_PROVIDERS = ("maildir", "mbox")


class UnknownProvider(ValueError):
    pass


def secret(value: Any) -> str:
    """Resolve a secret reference (or pass an empty value through)."""
    if not value:
        return ""
    if isinstance(value, Mapping):
        return SecretRef(**value).resolve().get_secret_value()
    raise ValueError("secrets must be given by reference: {env=...}, {file=...} or {command=...}")


def open_calendar(
    provider: str, settings: Mapping[str, Any], timeout: float = 30.0
) -> CalendarSource:
    if provider == "ics":
        from connectors.ics_feed import IcsFeed

        return IcsFeed(
            str(settings["location"]),
            username=str(settings.get("username", "")),
            password=secret(settings.get("password")),
            timeout=timeout,
        )
    if provider == "caldav":
        return open_calendar_writer(provider, settings, timeout)  # type: ignore[return-value]
    raise UnknownProvider(f"unknown calendar provider {provider!r}")


def open_calendar_writer(
    provider: str, settings: Mapping[str, Any], timeout: float = 30.0
) -> CalendarWriter:
    if provider == "caldav":
        from connectors.caldav_calendar import CalDavCalendar

        return CalDavCalendar(
            str(settings["url"]),
            username=str(settings.get("username", "")),
            password=secret(settings.get("password")),
            timeout=timeout,
        )
    raise UnknownProvider(f"provider {provider!r} cannot write events")


def open_mailbox(provider: str, settings: Mapping[str, Any]) -> MailSource:
    if provider == "maildir":
        from connectors.mail_archive import MaildirSource

        folders = settings.get("folders")
        return MaildirSource(Path(str(settings["path"])), folders=folders)
    if provider == "mbox":
        from connectors.mail_archive import MboxSource

        return MboxSource(Path(str(settings["path"])))
    raise UnknownProvider(f"unknown mail provider {provider!r}")
