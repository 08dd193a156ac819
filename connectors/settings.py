"""What every provider's typed settings model shares, and how a model reads an account.

An account's settings are stored as a JSON object; each provider reads it through one
pydantic model (``connectors/<provider>/settings.py``): frozen, unknown keys refused,
ports whole numbers in range, addresses http(s) URLs, secrets references
(``config.settings.SecretRef``: env, file, command or encrypted), never values.

The same model serves three callers: the registry (opening a connector for a stored
account: a model that refuses it raises ``InvalidSettings``, a ``ConnectorError``, which
the sync records on the account), and the CLI and the web form (adding an account: with
``Adding`` as the validation context, required files must exist, and for an account a
user adds (``Adding.policy``), addresses are checked against ``network`` now, as its
connector checks them again at every connection).

Errors name the field and the reason, never a value (a value may be a secret or hold one).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
)

from config.sealed import UNREADABLE
from config.settings import ConfigError, SecretRef
from connectors.base import AuthExpired, ConnectorError
from connectors.netguard import NetPolicy, with_url_secret

Resolver = Callable[[Any], str]  # a secret reference (a dict) -> its value
M = TypeVar("M", bound="AccountSettings")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class InvalidSettings(ConnectorError, ValueError):
    """An account's settings that its provider's model refuses.

    ``problems`` lists ``(field, reason)``; the message names each, never a value."""

    def __init__(self, provider: str, problems: list[tuple[str, str]]) -> None:
        self.provider = provider
        self.problems = problems
        listed = "; ".join(f"{field}: {reason}" for field, reason in problems)
        super().__init__(f"settings of the {provider} account: {listed}")

    @property
    def missing(self) -> list[str]:
        return [field for field, reason in self.problems if reason == REQUIRED]


REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class Adding:
    """The validation context of an account being added.

    ``policy`` None: the operator adds it (CLI, configuration): it may name local files
    and any host. A policy: a user adds it (the web app), and its addresses are checked
    against the policy (scheme and literal addresses here; names when it is stored and at
    every connection)."""

    policy: NetPolicy | None = None

    @property
    def by_user(self) -> bool:
        return self.policy is not None and not self.policy.operator


def adding(info: ValidationInfo) -> Adding | None:
    context = info.context
    if isinstance(context, Mapping):
        found = context.get("adding")
        if isinstance(found, Adding):
            return found
    return None


# ----------------------------------------------------------------------- field types


def _reference(value: Any) -> Any:
    """Secrets are references: an empty value is none, a string is refused."""
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, str):
        raise ValueError("must be a reference (env, file, command or encrypted), not a value")
    return value


Secret = Annotated[SecretRef | None, BeforeValidator(_reference)]
Port = Annotated[int, Field(ge=1, le=65535)]


def check_url(value: str, info: ValidationInfo) -> str:
    """An http(s) address with a host; for an account a user adds, one ``network`` allows
    (https unless ``network.allow_http``; no literal address that is not public)."""
    value = value.strip()
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise ValueError("not an http(s) URL (https://host/...)")
    check_address(parts.scheme.lower(), host, info)
    return value


def check_address(scheme: str, host: str, info: ValidationInfo) -> None:
    context = adding(info)
    if context is None or not context.by_user or context.policy is None:
        return
    policy = context.policy
    if scheme == "http" and not policy.allow_http:
        raise ValueError(
            "only https:// addresses can be used for accounts added here (network.allow_http)"
        )
    try:
        policy.check_host(host)
    except ConnectorError as exc:
        raise ValueError(str(exc)) from None


Url = Annotated[str, AfterValidator(check_url)]


def _none_if_empty(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


OptionalUrl = Annotated[Url | None, BeforeValidator(_none_if_empty)]


def _local_path(value: Path, info: ValidationInfo) -> Path:
    context = adding(info)
    if context is not None and context.by_user:
        raise ValueError("local files and folders are only for accounts added with the CLI")
    return value


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    value = _local_path(value, info)
    if adding(info) is not None and not value.expanduser().is_file():
        raise ValueError("no such file")
    return value


def _existing_folder(value: Path, info: ValidationInfo) -> Path:
    value = _local_path(value, info)
    if adding(info) is not None and not value.expanduser().is_dir():
        raise ValueError("no such folder")
    return value


ExistingFile = Annotated[Path, AfterValidator(_existing_file)]
ExistingFolder = Annotated[Path, AfterValidator(_existing_folder)]


def url_or_file(value: str, info: ValidationInfo, schemes: tuple[str, ...]) -> str:
    """An address (``schemes``) or, for the operator's accounts, a local file."""
    value = value.strip()
    if not value:
        raise ValueError(REQUIRED)
    if not _SCHEME.match(value):
        _existing_file(Path(value), info)
        return value
    scheme = value.split("://", 1)[0].lower()
    if scheme not in schemes:
        raise ValueError(f"not an address this account can read ({', '.join(schemes)})")
    if scheme in ("http", "https"):
        return check_url(value, info)
    host = urlsplit(value).hostname or ""
    if not host:
        raise ValueError("not a valid URL")
    check_address("https", host, info)
    return value


def non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError(REQUIRED)
    return value


def _zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not a time zone (an IANA name like Europe/Berlin)") from None
    return value


def _email(value: str) -> str:
    value = non_empty(value).strip()
    if not re.match(r"^[^@\s]+@[^@\s]+$", value):
        raise ValueError("not an email address")
    return value


Text = Annotated[str, AfterValidator(non_empty)]  # a required text that may not be blank
Zone = Annotated[str, AfterValidator(_zone)]
Email = Annotated[str, AfterValidator(_email)]


# ----------------------------------------------------------------------------- models


class AccountSettings(BaseModel):
    """What every account's settings may hold besides its provider's fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    # netguard.OPERATOR_KEY, written only by add_account; strict: true, not "true"
    added_by_operator: Annotated[bool, Strict()] = False

    def stored(self) -> dict[str, Any]:
        """The settings as stored: only what was given, secrets as reference objects."""
        return self.model_dump(mode="json", exclude_unset=True, exclude_none=True)


def parse(model: type[M], provider: str, data: Mapping[str, Any], check: Adding | None) -> M:
    """``data`` read through ``model``; InvalidSettings names each refused field."""
    try:
        return model.model_validate(dict(data), context={"adding": check} if check else None)
    except ValidationError as exc:
        raise InvalidSettings(provider, problems(exc)) from None


def problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(field, reason) of each error; the input (maybe a secret) is never part of it."""
    found: list[tuple[str, str]] = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(p) for p in error["loc"]) or "settings"
        kind = error["type"]
        if kind == "missing" or (kind == "value_error" and error["msg"].endswith(REQUIRED)):
            reason = REQUIRED
        elif kind == "extra_forbidden":
            reason = "not a setting of this provider"
        else:
            reason = str(error["msg"]).removeprefix("Value error, ")
        found.append((field, reason))
    return found


def resolve(secret: Resolver, ref: SecretRef | None) -> str:
    """A secret's value through ``secret`` (given the reference as stored); none: ""."""
    if ref is None:
        return ""
    return secret(ref.model_dump(exclude_none=True))


def secret(value: Any) -> str:
    """Resolve a secret reference (or pass an empty value through)."""
    if not value:
        return ""
    if isinstance(value, Mapping):
        if "encrypted" in value:  # obtained by the service: unreadable means reconnect
            try:
                return SecretRef(**value).resolve().get_secret_value()
            except (ConfigError, ValueError):
                raise AuthExpired(UNREADABLE) from None
        return SecretRef(**value).resolve().get_secret_value()
    raise ValueError("secrets must be given by reference: {env=...}, {file=...} or {command=...}")


def location(url: str, sealed: SecretRef | None) -> str:
    """An account's address with its sealed URL secrets (``?token=...``) put back."""
    return with_url_secret(url, resolve(secret, sealed))
