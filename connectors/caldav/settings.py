"""The settings of a CalDAV account and of an ICS feed (both iCalendar over HTTP).

The ICS feed's model lives here while ``connectors/ics/`` is being reworked; it reads
the feed's ``location``: an http(s) or webcal address, or (the operator's accounts only)
a local file.
"""

from __future__ import annotations

from pydantic import ValidationInfo, field_validator

from connectors.settings import AccountSettings, Secret, Url, url_or_file


class CalDavSettings(AccountSettings):
    """``url``: the calendar collection; ``username`` and ``password`` (a reference)."""

    url: Url
    username: str = ""
    password: Secret = None
    url_secret: Secret = None  # netguard.URL_SECRET_KEY: the URL's secret query, sealed


class IcsSettings(AccountSettings):
    """``location``: the feed's address (http, https, webcal) or a local file."""

    location: str
    username: str = ""
    password: Secret = None
    url_secret: Secret = None

    @field_validator("location")
    @classmethod
    def _location(cls, value: str, info: ValidationInfo) -> str:
        return url_or_file(value, info, ("http", "https", "webcal"))
