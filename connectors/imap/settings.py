"""The settings of an IMAP mailbox (``imap``).

``host``, ``port`` (993 with ``security = "ssl"``, 143 otherwise), ``security`` ssl,
starttls or none (none only for the operator's accounts or with ``network.allow_http``),
``username`` and the secret ``password``; ``folders`` to read (default: the inbox and the
sent folder found by their special use), ``timeout`` in seconds.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from connectors.base import ConnectorError
from connectors.settings import AccountSettings, Port, Secret, Text, adding


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class ImapSettings(AccountSettings):
    host: Text
    port: Port | None = None
    security: Literal["ssl", "starttls", "none"] = "ssl"
    username: Text
    password: Secret = None
    folders: list[str] | None = None
    timeout: Annotated[float, Field(gt=0, le=3600)] | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        bare = value.strip("[]")
        if (
            any(c in value for c in "/ @?#")
            or value.startswith(".")
            or (":" in bare and not _is_address(bare))
        ):
            raise ValueError("give the server's host name only (no scheme, port or path)")
        context = adding(info)
        if context is not None and context.by_user and context.policy is not None:
            try:
                context.policy.check_host(value)
            except ConnectorError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("security")
    @classmethod
    def _plaintext(cls, value: str, info: ValidationInfo) -> str:
        context = adding(info)
        if value == "none" and context is not None and context.by_user:
            assert context.policy is not None
            if not context.policy.allow_http:
                raise ValueError(
                    "a connection without TLS is not allowed for accounts added here "
                    "(network.allow_http)"
                )
        return value
