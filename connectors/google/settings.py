"""The settings of a Google account: a calendar (``google``) or Gmail (``gmail``).

``auth = "oauth"`` (the default): ``client_id`` and the secrets ``client_secret`` and
``refresh_token``. ``auth = "service_account"``: the secret ``service_account_key`` (the
key file's JSON) and ``subject``, the user it acts as. ``api_root`` and ``token_uri``
point elsewhere than Google (tests). ``connectors.google.common`` builds the credentials
and the API client from it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from config.settings import SecretRef
from connectors.settings import REQUIRED, AccountSettings, OptionalUrl, Secret

Auth = Literal["oauth", "service_account"]


def _auth(value: Any) -> Any:
    if value not in ("oauth", "service_account"):
        raise ValueError("unknown Google auth (oauth or service_account)")
    return value


class GoogleSettings(AccountSettings):
    """What the Calendar and Gmail connectors (and the Gmail sender) share."""

    auth: Annotated[Auth, BeforeValidator(_auth)] = "oauth"
    client_id: Annotated[str, Field(validate_default=True)] = ""
    client_secret: Secret = None
    refresh_token: Secret = None
    service_account_key: Annotated[Secret, Field(validate_default=True)] = None
    subject: Annotated[str, Field(validate_default=True)] = ""
    token_uri: OptionalUrl = None
    api_root: OptionalUrl = None
    identity: str = ""  # who signed in (the web app's connect flow)
    send_mail: bool = False  # the pair's mail to the assistant leaves through this account

    @field_validator("client_id")
    @classmethod
    def _client(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("auth") == "oauth" and not value.strip():
            raise ValueError(REQUIRED)
        return value

    @field_validator("service_account_key")
    @classmethod
    def _key(cls, value: SecretRef | None, info: ValidationInfo) -> SecretRef | None:
        if info.data.get("auth") == "service_account" and value is None:
            raise ValueError(REQUIRED)
        return value

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("auth") == "service_account" and not value.strip():
            raise ValueError(REQUIRED)
        return value


class GoogleCalendarSettings(GoogleSettings):
    calendar_id: str = "primary"


class GmailSettings(GoogleSettings):
    """``labels`` (label ids) and ``query`` (a Gmail search) choose the mail read;
    ``scopes`` the OAuth scopes of reading, ``send_scopes`` those of sending."""

    user_id: str = "me"
    labels: list[str] | None = None
    query: str = ""
    scopes: list[str] | None = None
    send_scopes: list[str] | None = None
