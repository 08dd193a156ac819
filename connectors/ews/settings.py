"""The settings of an Exchange (EWS) account: a calendar (``ews``) or a mailbox (``ews-mail``).

``service_endpoint`` (``https://mail.example.com/EWS/Exchange.asmx``) or, for the
operator's accounts, ``autodiscover = true``; ``auth`` basic, ntlm (username
``DOMAIN\\user``) or oauth2 (``client_id``, ``client_secret``, ``tenant_id``, or an
``access_token``); ``access`` delegate or impersonation; ``version`` (e.g.
``Exchange2016``) skips the version probe. ``connectors.ews.account.ews_settings`` turns
it into the connection's ``EwsSettings`` with the secrets resolved.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from connectors.settings import (
    REQUIRED,
    AccountSettings,
    Email,
    Secret,
    Zone,
    adding,
    check_url,
)


class EwsAccountSettings(AccountSettings):
    """What both EWS connectors read (the mail sender too)."""

    mailbox: Email
    autodiscover: bool = False
    service_endpoint: Annotated[str, Field(validate_default=True)] = ""
    auth: Literal["basic", "ntlm", "oauth2"] = "basic"
    username: str = ""
    password: Secret = None
    client_id: str = ""
    client_secret: Secret = None
    tenant_id: str = ""
    access_token: Secret = None
    access: Literal["delegate", "impersonation"] = "delegate"
    version: str = ""
    url_secret: Secret = None  # netguard.URL_SECRET_KEY
    send_mail: bool = False  # the pair's mail to the assistant leaves through this account

    @field_validator("autodiscover")
    @classmethod
    def _autodiscover(cls, value: bool, info: ValidationInfo) -> bool:
        context = adding(info)
        if value and context is not None and context.by_user:
            raise ValueError("autodiscover is only for accounts added with the CLI")
        return value

    @field_validator("service_endpoint")
    @classmethod
    def _endpoint(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            if info.data.get("autodiscover"):
                return ""
            raise ValueError(REQUIRED)
        return check_url(value, info)


class EwsCalendarSettings(EwsAccountSettings):
    """``zone``: the manager's zone (all-day events); ``send_invitations`` to attendees
    of the checkpoints we write."""

    zone: Zone = "UTC"
    send_invitations: bool = False


class EwsMailSettings(EwsAccountSettings):
    """``folders``: which of inbox and sentitems are read (both by default)."""

    folders: list[Literal["inbox", "sentitems"]] | None = None
